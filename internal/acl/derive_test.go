package acl

import (
	"slices"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

func topology(prefix string) schemas.Topology {
	return schemas.MustTopics(prefix).Topology(schemas.TopologyOptions{})
}

// has reports whether grants allow op on the named resource, matching as Kafka does.
func has(grants []Grant, rt ResourceType, name string, op Operation) bool {
	return slices.ContainsFunc(grants, func(g Grant) bool { return g.Covers(rt, name, op) })
}

// TestDeriveStages checks the grants of each stage against the topic names schemas.Topics
// gives (the contract), not against the topology the derivation reads.
func TestDeriveStages(t *testing.T) {
	for _, prefix := range []string{"fhir", "site-a"} {
		topo := topology(prefix)
		tn := schemas.MustTopics(prefix)
		cases := []struct {
			command       string
			reads, writes []string
			group, txn    string
		}{
			{schemas.NodeValidate, []string{tn.Raw("Patient"), tn.Raw("Observation")}, []string{tn.Valid("Patient"), tn.DLQ()}, tn.Group("fhirstream-validate"), tn.Group("fhirstream-validate") + "-host-1"},
			{schemas.NodeDedupe, []string{tn.Valid("Patient"), tn.State("dedupe")}, []string{tn.Unique("Patient"), tn.DLQ(), tn.State("dedupe")}, tn.Group("fhirstream-dedupe"), tn.Group("fhirstream-dedupe") + "-x"},
			{schemas.NodeOMOP, []string{tn.Unique("Condition")}, []string{tn.OMOP("person"), tn.DLQ()}, tn.Group("fhirstream-omop"), tn.Group("fhirstream-omop") + "-x"},
			{schemas.NodeSinkBronze, []string{tn.Unique("Condition")}, []string{tn.DLQ()}, tn.Group("fhirstream-sink-bronze"), ""},
			{schemas.NodeSinkOMOP, []string{tn.OMOP("measurement")}, []string{tn.DLQ()}, tn.Group("fhirstream-sink-omop"), ""},
			{schemas.NodeFetch, []string{tn.State("fetcher")}, []string{tn.Raw("Patient"), tn.DLQ(), tn.State("fetcher")}, "", tn.Group("fhirstream-fetch-") + "abc"},
		}
		for _, c := range cases {
			gs, err := Derive(topo, c.command, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, topic := range c.reads {
				if !has(gs, Topic, topic, Read) {
					t.Errorf("%s/%s: cannot read %s: %v", prefix, c.command, topic, gs)
				}
			}
			for _, topic := range c.writes {
				if !has(gs, Topic, topic, Write) {
					t.Errorf("%s/%s: cannot write %s", prefix, c.command, topic)
				}
				if has(gs, Topic, topic, Create) {
					t.Errorf("%s/%s: may create %s without --create-topics", prefix, c.command, topic)
				}
			}
			if c.group != "" && !has(gs, Group, c.group, Read) {
				t.Errorf("%s/%s: cannot read group %s", prefix, c.command, c.group)
			}
			if c.txn != "" && !has(gs, TransactionalID, c.txn, Write) {
				t.Errorf("%s/%s: cannot write transactional id %s", prefix, c.command, c.txn)
			}
			// Least privilege: nothing beyond the pipeline's own names, no cluster rights,
			// no reading its own outputs, no other stage's group.
			for _, g := range gs {
				if g.Resource == Cluster {
					t.Errorf("%s/%s: cluster grant %s", prefix, c.command, g)
				}
				if g.Resource == Topic && !strings.HasPrefix(g.Name, prefix+".") && !strings.HasPrefix(g.Name, tn.OMOP("")) {
					t.Errorf("%s/%s: grant outside the pipeline's topics: %s", prefix, c.command, g)
				}
				if g.Resource == Group && g.Name != c.group {
					t.Errorf("%s/%s: grant on another group: %s", prefix, c.command, g)
				}
			}
			if c.command == schemas.NodeValidate && has(gs, Topic, tn.Valid("Patient"), Read) {
				t.Errorf("validate may read its own output")
			}
		}
	}
}

func TestDeriveCreateTopicsOption(t *testing.T) {
	tn := schemas.MustTopics("")
	gs, err := Derive(topology(""), schemas.NodeFetch, Options{CreateTopics: true})
	if err != nil {
		t.Fatal(err)
	}
	if !has(gs, Topic, tn.Raw("Specimen"), Create) {
		t.Errorf("fetch --create-topics cannot create raw topics: %v", gs)
	}
}

// TestDeriveCoversContractTopics: topics create may make and align every topic of the
// contract, and no topic outside it.
func TestDeriveCoversContractTopics(t *testing.T) {
	topo := topology("")
	gs, err := Derive(topo, CommandTopicsCreate, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range kafkaclient.ContractTopics(topo.Topics, schemas.BulkResourceTypes, schemas.OMOPTables(), kafkaclient.TopicOptions{}) {
		for _, op := range []Operation{Create, Describe, AlterConfigs} {
			if !has(gs, Topic, s.Name, op) {
				t.Errorf("topics create lacks %s on %s", op, s.Name)
			}
		}
	}
	if has(gs, Topic, "other.topic", Create) {
		t.Error("topics create may create any topic")
	}
}

func TestDeriveStatus(t *testing.T) {
	topo := topology("")
	plain, _ := Derive(topo, CommandStatus, Options{})
	resolve, _ := Derive(topo, CommandStatusResolve, Options{})
	if has(plain, Cluster, ClusterName, ClusterAction) || !has(resolve, Cluster, ClusterName, ClusterAction) {
		t.Errorf("ClusterAction: status %v, status --resolve-hanging %v", has(plain, Cluster, ClusterName, ClusterAction), has(resolve, Cluster, ClusterName, ClusterAction))
	}
	for _, n := range topo.Consumers() {
		if !has(plain, Group, n.Group, Describe) {
			t.Errorf("status cannot describe group %s", n.Group)
		}
		if has(plain, Group, n.Group, Read) {
			t.Errorf("status may join group %s", n.Group)
		}
	}
	for _, g := range plain {
		if g.Operation == Write || g.Operation == Create {
			t.Errorf("status may change things: %s", g)
		}
	}
}

func TestDeriveUnknownCommand(t *testing.T) {
	if _, err := Derive(topology(""), "consume", Options{}); err == nil || !strings.Contains(err.Error(), "commands:") {
		t.Fatalf("err = %v", err)
	}
}

func TestKafkaACLsArgs(t *testing.T) {
	g := Grant{Resource: Topic, Pattern: Prefixed, Name: "fhir.raw.", Operation: Read}
	got := strings.Join(g.KafkaACLsArgs("User:v"), " ")
	want := "--add --allow-principal User:v --operation Read --topic fhir.raw. --resource-pattern-type prefixed"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	c := Grant{Resource: Cluster, Pattern: Literal, Name: ClusterName, Operation: ClusterAction}
	if got := strings.Join(c.KafkaACLsArgs("User:o"), " "); got != "--add --allow-principal User:o --operation ClusterAction --cluster" {
		t.Errorf("cluster: %s", got)
	}
	for _, g := range []Grant{g, c, {Resource: Group, Pattern: Literal, Name: "g", Operation: Describe},
		{Resource: TransactionalID, Pattern: Prefixed, Name: "t-", Operation: Write}} {
		if _, err := g.builder("User:x"); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	if _, err := (Grant{Resource: Topic, Name: "x", Operation: "Fly"}).builder("User:x"); err == nil {
		t.Error("unknown operation accepted")
	}
}

func TestCommandOf(t *testing.T) {
	for path, want := range map[string]string{
		"fhirstream consume validate":  schemas.NodeValidate,
		"fhirstream consume sink-omop": schemas.NodeSinkOMOP,
		"fhirstream fetch":             schemas.NodeFetch,
		"fhirstream dlq replay":        schemas.NodeDLQReplay,
		"fhirstream topics create":     CommandTopicsCreate,
		"fhirstream status":            CommandStatus,
		"fhirstream topics list":       "",
		"fhirstream demo":              "",
	} {
		if got := CommandOf(path, false); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	if got := CommandOf("fhirstream status", true); got != CommandStatusResolve {
		t.Errorf("status --resolve-hanging: %q", got)
	}
}

func TestValidPrincipal(t *testing.T) {
	for p, ok := range map[string]bool{"User:a": true, "User:": false, "a": false, ":a": false} {
		if (ValidPrincipal(p) == nil) != ok {
			t.Errorf("%q: ok=%v", p, !ok)
		}
	}
}
