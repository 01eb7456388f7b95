package bench

import (
	"bytes"
	"strings"
	"testing"
)

// The text report of a processes-mode run shows each stage's process figures, "-" where a
// figure was not measured, and says when the counts do not add up.
func TestWriteTextProcesses(t *testing.T) {
	r := &Report{
		Mode: ModeProcesses, Patients: 2, Resources: 300, NDJSONBytes: 2e6, Broker: "kfake", Partitions: 3, TopicPrefix: "fhir-bench-x",
		Stages: []Stage{
			{Name: "fetch", RecordsIn: 300, RecordsOut: 300, Batches: -1, BytesIn: -1,
				Process: &Process{CPUMicrosPerResource: 12.5, PeakRSSBytes: 40e6, GoHeapPeakBytes: 9e6}},
			{Name: "validate", RecordsIn: 300, RecordsOut: 299, DeadLetters: 1, Batches: 4, BytesIn: 2e6, MBPerSecond: 1.5},
		},
		Commits:    []Commit{{Stage: "sink-omop", Table: "omop.person", Commits: 3, Seconds: 0.3, MeanSeconds: 0.1}},
		CPU:        CPU{WallSeconds: 2, Cores: 2, ProcessSeconds: 1.5, HarnessSeconds: 0.2},
		Consistent: false,
		Mismatches: []string{"validate read 300, fetch wrote 301"},
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"fhirstream bench (processes): 2 patients, 300 resources (2.0 MB NDJSON), broker kfake, 3 partitions",
		"µs/RES", "12.5", "40", // the fetcher's process figures
		"omop.person", "bench and EHR simulator 0.2 s",
		"COUNTS INCONSISTENT:\n  validate read 300, fetch wrote 301",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "(GC ") || strings.Contains(out, "counts consistent") {
		t.Errorf("processes-mode report shows in-process figures or a wrong verdict:\n%s", out)
	}
}
