package acl

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/schemas"
)

func TestWriteScriptPrintsKafkaACLsLines(t *testing.T) {
	topo := schemas.MustTopics("site-a").Topology(schemas.TopologyOptions{})
	set, err := ForCommands(topo, Request{Commands: []string{"validate", "status-resolve-hanging"}, PrincipalPrefix: "User:fs-"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteScript(&out, set, "k1:9093,k2:9093", "/etc/kafka/admin.properties"); err != nil {
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
	if _, err := ForCommands(topo, Request{Commands: []string{"validate"}, Principal: "fs-validate"}); err == nil {
		t.Error("a principal without a type was accepted")
	}
	all, err := ForCommands(topo, Request{Commands: []string{"all"}, Principal: "User:x"})
	if err != nil || len(all) != len(Commands(topo)) {
		t.Errorf("all: %d commands, %v", len(all), err)
	}
	for _, r := range []Request{{Commands: []string{"validate"}}, {Commands: []string{"validate"}, Principal: "User:x", PrincipalPrefix: "User:y-"}} {
		if _, err := ForCommands(topo, r); err == nil || !strings.Contains(err.Error(), "one of --principal and --principal-prefix") {
			t.Errorf("%+v: %v, want an error asking for one way of naming principals", r, err)
		}
	}
}

func TestShellJoinQuotes(t *testing.T) {
	if got := shellJoin([]string{"a", "b c", "it's", "User:x"}); got != `a 'b c' 'it'\''s' User:x` {
		t.Errorf("got %s", got)
	}
}
