package omop

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/schemas"
)

func TestSummaryWrite(t *testing.T) {
	s := Summary{
		Rows:       map[string]int64{"person": 2, "measurement": 5},
		Unmapped:   []UnmappedCount{{Vocabulary: "LOINC", Table: "measurement", Count: 3}},
		Skipped:    map[string]int64{"Encounter: cancelled": 1},
		Rejected:   map[string]int64{"Patient: bad-date": 4, "Condition: no-subject": 1},
		Collisions: 2,
	}
	var b bytes.Buffer
	s.Write(&b, "omop: ")
	want := "omop: measurement            5 rows\n" +
		"omop: person                 2 rows\n" +
		"omop: unmapped LOINC codes in measurement: 3\n" +
		"omop: skipped Encounter: cancelled: 1\n" +
		"omop: rejected Condition: no-subject: 1\n" +
		"omop: rejected Patient: bad-date: 4\n" +
		"omop: 2 id collisions\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// The stage report fails when a type read records that have no outcome.
func TestWriteStageReport(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	reg := prometheus.NewRegistry()
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricStageRecordsIn}, []string{"stage", "topic"})
	outcome := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricOMOPRecordsOutcome}, []string{"resource_type", "outcome", "reason"})
	reg.MustRegister(in, outcome)
	in.WithLabelValues(StageName, topics.Unique("Patient")).Add(3)
	outcome.WithLabelValues("Patient", outcomeMapped, "").Add(3)

	var b bytes.Buffer
	if err := WriteStageReport(&b, Summary{Rows: map[string]int64{"person": 3}}, reg, topics); err != nil {
		t.Fatalf("balanced: %v\n%s", err, b.String())
	}
	if out := b.String(); !strings.Contains(out, "omop: person                 3 rows\n") ||
		!strings.Contains(out, "omop: Patient:  read 3 = mapped 3") || !strings.Contains(out, "every record read is mapped") {
		t.Errorf("report:\n%s", out)
	}

	in.WithLabelValues(StageName, topics.Unique("Patient")).Add(1)
	b.Reset()
	err := WriteStageReport(&b, Summary{}, reg, topics)
	if err == nil || !strings.Contains(err.Error(), "reconciliation FAILED") || !strings.Contains(b.String(), "MISMATCH: 1 records without an outcome") {
		t.Errorf("unbalanced: %v\n%s", err, b.String())
	}
}
