package schemas

import (
	"regexp"
	"strings"
	"testing"
)

func TestTopologyDeclaresEveryStage(t *testing.T) {
	for _, prefix := range []string{"fhir", "site-a"} {
		for _, deid := range []bool{false, true} {
			topics := MustTopics(prefix)
			topo := topics.Topology(TopologyOptions{Deidentify: deid})
			groups := map[string]string{}
			for _, n := range topo.Nodes {
				if n.Group != "" {
					if other, dup := groups[n.Group]; dup {
						t.Errorf("%s: nodes %s and %s share group %s", prefix, other, n.Name, n.Group)
					}
					groups[n.Group] = n.Name
				}
				if prefix != DefaultPrefix && n.Group != "" && !strings.HasPrefix(n.Group, prefix+"-") {
					t.Errorf("%s: group %s of %s does not carry the prefix", prefix, n.Group, n.Name)
				}
				if n.Role != RoleTool && !n.Writes(topics.DLQ()) {
					t.Errorf("%s: %s does not declare the dead-letter topic", prefix, n.Name)
				}
				for _, set := range append(append(append([]TopicSet{}, n.Inputs...), n.Outputs...), n.State...) {
					if _, err := regexp.Compile(set.Pattern); err != nil {
						t.Errorf("%s: %s: pattern %q: %v", prefix, n.Name, set.Pattern, err)
					}
					if !strings.HasPrefix(set.Prefix, prefix+".") && !strings.HasPrefix(set.Prefix, "omop.") {
						t.Errorf("%s: %s: topic set %s is outside the prefix", prefix, n.Name, set.Name)
					}
				}
				if n.Role == RoleStage && n.TransactionalIDPrefix != n.Group+"-" {
					t.Errorf("%s: stage %s: transactional ids %q, want %q", prefix, n.Name, n.TransactionalIDPrefix, n.Group+"-")
				}
			}
			_, err := topo.Node(NodeDeid)
			if (err == nil) != deid {
				t.Errorf("%s deid=%v: deid node present = %v", prefix, deid, err == nil)
			}
		}
	}
}

// TestTopologyEdges checks the graph the architecture describes, topic by topic: each
// concrete topic is written by the node upstream of it and read by the nodes below.
func TestTopologyEdges(t *testing.T) {
	topics := MustTopics("fhir")
	type edge struct{ topic, writer string }
	cases := []struct {
		deid    bool
		edges   []edge
		readers map[string][]string
	}{
		{false, []edge{
			{"fhir.raw.Patient", NodeFetch},
			{"fhir.valid.Patient", NodeValidate},
			{"fhir.unique.Patient", NodeDedupe},
			{"omop.person", NodeOMOP},
			{"fhir.state.dedupe", NodeDedupe},
		}, map[string][]string{
			"fhir.raw.Patient":    {NodeValidate},
			"fhir.valid.Patient":  {NodeDedupe},
			"fhir.unique.Patient": {NodeOMOP, NodeSinkBronze, NodeSinkSilver},
			"omop.person":         {NodeSinkOMOP},
			"fhir.dlq":            {NodeDLQReplay},
		}},
		{true, []edge{
			{"fhir.unique.Patient", NodeDedupe},
			{"fhir.deid.Patient", NodeDeid},
			{"omop.person", NodeOMOP},
		}, map[string][]string{
			"fhir.unique.Patient": {NodeDeid, NodeSinkBronze},
			"fhir.deid.Patient":   {NodeOMOP, NodeSinkSilver},
		}},
	}
	for _, c := range cases {
		topo := topics.Topology(TopologyOptions{Deidentify: c.deid})
		for _, e := range c.edges {
			var writers []string
			for _, n := range topo.Nodes {
				if n.Writes(e.topic) && n.Role != RoleTool {
					writers = append(writers, n.Name)
				}
			}
			if len(writers) != 1 || writers[0] != e.writer {
				t.Errorf("deid=%v: %s written by %v, want [%s]", c.deid, e.topic, writers, e.writer)
			}
		}
		for topic, want := range c.readers {
			var got []string
			for _, n := range topo.Nodes {
				if n.Reads(topic) && !(n.Role == RoleSource) {
					got = append(got, n.Name)
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("deid=%v: %s read by %v, want %v", c.deid, topic, got, want)
			}
		}
	}
}

func TestTopologyUnknownNode(t *testing.T) {
	_, err := MustTopics("fhir").Topology(TopologyOptions{}).Node("sink-gold")
	if err == nil || !strings.Contains(err.Error(), "sink-omop") {
		t.Fatalf("unknown node: %v, want an error listing the nodes", err)
	}
}
