package main

import (
	"testing"

	"github.com/fhirstream/fhirstream/schemas"
)

// Every long-running command of the topology can run on one host with its defaults: the
// metrics ports differ, and none listens beyond the host.
func TestDefaultMetricsAddrsDistinctAndLocal(t *testing.T) {
	seen := map[int]string{}
	for name, port := range metricsPorts {
		if other, dup := seen[port]; dup {
			t.Errorf("%s and %s share metrics port %d", name, other, port)
		}
		seen[port] = name
		if port == 9100 {
			t.Errorf("%s defaults to node_exporter's port 9100", name)
		}
	}
	for _, n := range schemas.MustTopics("fhir").Topology(schemas.TopologyOptions{Deidentify: true}).Consumers() {
		if addr := defaultMetricsAddr(n.Name); addr[:10] != "127.0.0.1:" {
			t.Errorf("%s listens on %s by default", n.Name, addr)
		}
	}
}
