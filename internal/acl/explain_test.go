package acl

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

func TestExplainNamesTheGrant(t *testing.T) {
	topo := topology("")
	kc := kafkaclient.Defaults()
	kc.SASLMechanism, kc.SASLUser = "SCRAM-SHA-512", "fetcher"
	cases := []struct {
		name, command string
		err           error
		want          []string
	}{
		{"unnamed transactional id", schemas.NodeFetch,
			fmt.Errorf("init transactional producer: %w", kerr.TransactionalIDAuthorizationFailed),
			[]string{"User:fetcher lacks an ACL on a transactional-id", "'fhirstream fetch' needs these grants on a transactional-id: Write on transactional-id prefix fhirstream-fetch-"}},
		{"named group", schemas.NodeValidate,
			kafkaclient.ConsumeDenied(kerr.GroupAuthorizationFailed, "", "fhirstream-validate"),
			[]string{"not authorized: Read on group fhirstream-validate (GROUP_AUTHORIZATION_FAILED)", "the grant of 'fhirstream consume validate' that allows it: Read on group fhirstream-validate"}},
		{"described output topic", schemas.NodeOMOP,
			kafkaclient.Denied(kerr.TopicAuthorizationFailed, "Describe", "topic", "omop.person"),
			[]string{"Describe on topic omop.person", "allows it: Write on topic prefix omop."}},
	}
	for _, c := range cases {
		msg := Explain(c.err, kc, topo, c.command).Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message lacks %q:\n%s", c.name, w, msg)
			}
		}
		if !errors.Is(Explain(c.err, kc, topo, c.command), c.err) && !kafkaclient.IsDenied(Explain(c.err, kc, topo, c.command)) {
			t.Errorf("%s: the original error left the chain", c.name)
		}
	}
	plain := errors.New("disk full")
	if got := Explain(plain, kc, topo, schemas.NodeFetch); got != plain {
		t.Errorf("an unrelated error changed: %v", got)
	}
}
