package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/acl"
	"github.com/fhirstream/fhirstream/schemas"
)

func TestACLsPrintsKafkaACLsLines(t *testing.T) {
	topo := schemas.MustTopics("site-a").Topology(schemas.TopologyOptions{})
	set, err := aclsFor(topo, []string{"validate", "status-resolve-hanging"}, "", "User:fs-", acl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printACLs(&out, set, "k1:9093,k2:9093", "/etc/kafka/admin.properties"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# validate (fhirstream consume validate) as User:fs-validate\n",
		"kafka-acls.sh --bootstrap-server k1:9093,k2:9093 --command-config /etc/kafka/admin.properties --add --allow-principal User:fs-validate --operation Read --topic site-a.raw. --resource-pattern-type prefixed   # consume its input\n",
		"--allow-principal User:fs-validate --operation Read --group site-a-fhirstream-validate --resource-pattern-type literal",
		"--allow-principal User:fs-status-resolve-hanging --operation ClusterAction --cluster   #",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := aclsFor(topo, []string{"validate"}, "fs-validate", "", acl.Options{}); err == nil {
		t.Error("a principal without a type was accepted")
	}
	all, err := aclsFor(topo, []string{"all"}, "User:x", "", acl.Options{})
	if err != nil || len(all) != len(acl.Commands(topo)) {
		t.Errorf("all: %d commands, %v", len(all), err)
	}
}

func TestShellJoinQuotes(t *testing.T) {
	if got := shellJoin([]string{"a", "b c", "it's", "User:x"}); got != `a 'b c' 'it'\''s' User:x` {
		t.Errorf("got %s", got)
	}
}
