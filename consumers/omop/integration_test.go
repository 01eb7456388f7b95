package omop_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationOMOPStage runs the stage on the runtime against a broker (kfake, or the
// real one with FHIRSTREAM_TEST_BROKERS): FHIR records in, Avro rows on omop.<table> and
// a dead letter for the resource that cannot map.
func TestIntegrationOMOPStage(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	var all []string
	for _, rt := range []string{"Patient", "Encounter", "Observation", "Condition"} {
		all = append(all, topics.Unique(rt))
	}
	for _, tb := range schemas.OMOPTables() {
		all = append(all, topics.OMOP(tb))
	}
	all = append(all, topics.DLQ())
	c.CreateTopics(t, 2, all...)

	inputs := []struct{ typ, id, json string }{
		{"Patient", "p1", `{"resourceType":"Patient","id":"p1","gender":"male","birthDate":"1980-01-02","deceasedDateTime":"2020-01-01"}`},
		{"Encounter", "e1", `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"EMER"},"subject":{"reference":"Patient/p1"},"period":{"start":"2019-01-01T10:00:00Z"}}`},
		{"Observation", "bp", `{"resourceType":"Observation","id":"bp","status":"final","code":{"text":"BP"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2019-01-01",
		  "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"code":"mm[Hg]","system":"http://unitsofmeasure.org"}},
		               {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"code":"mm[Hg]","system":"http://unitsofmeasure.org"}}]}`},
		{"Condition", "c1", `{"resourceType":"Condition","id":"c1","code":{"text":"x"},"onsetDateTime":"2019-01-01"}`},
		{"Encounter", "e2", `{"resourceType":"Encounter","id":"e2","status":"cancelled","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2019-01-01"}}`},
		{"Observation", "gone", ""}, // a tombstone
	}
	before, err := omop.Reconcile(obs.Registry, topics)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Client(t)
	for _, in := range inputs {
		r := &kgo.Record{Topic: topics.Unique(in.typ), Key: schemas.Key(in.typ, in.id),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderSourceLine, Value: []byte("1")}}}
		if in.json != "" {
			r.Value = []byte(in.json)
		}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	p, err := omop.New(omop.Config{Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	def := omop.Definition(p, topics.Topology(schemas.TopologyOptions{})).WithGroup(c.Group("omop"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runtime.Run(ctx, c.Config(), def, runtime.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TopicRefresh: time.Second})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	want := map[string]int{"person": 1, "death": 1, "visit_occurrence": 1, "measurement": 2 + 1, "observation": 1} // + the tombstone's retractions
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]int{}
		for tb := range want {
			for _, r := range c.ReadAll(t, topics.OMOP(tb)) {
				table, row, err := codec.Decode(context.Background(), r.Value)
				if err != nil || table != tb {
					t.Fatalf("%s: decode: %v (table %s)", tb, err, table)
				}
				if row[schemas.ColFHIRKey] != string(r.Key) {
					t.Fatalf("%s: key %q, _fhir_key %v", tb, r.Key, row[schemas.ColFHIRKey])
				}
				got[tb]++
			}
		}
		dlq := c.ReadAll(t, topics.DLQ())
		// The committed-batch counters reconcile every record read, by type; the
		// runtime publishes them just after the commit, so they are polled too.
		rec, err := omop.Reconcile(obs.Registry, topics)
		if err != nil {
			t.Fatal(err)
		}
		rec = rec.Minus(before)
		var buf strings.Builder
		rec.Write(&buf, "")
		if len(dlq) == 1 && equalCounts(got, want) && buf.String() == wantReconciliation {
			if string(dlq[0].Key) != "Condition/c1" {
				t.Fatalf("dead letter key %q", dlq[0].Key)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rows %v (want %v), %d dead letters (want 1), reconciliation\n%s\nwant\n%s", got, want, len(dlq), buf.String(), wantReconciliation)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wantReconciliation is TestIntegrationOMOPStage's input, accounted for by hand.
const wantReconciliation = `Condition:    read 1 = mapped 0 + dropped 0 + dead letters 1 (missing-required 1)  ok
Encounter:    read 2 = mapped 1 + dropped 1 (status-cancelled 1) + dead letters 0  ok
Observation:  read 2 = mapped 1 + deleted 1 + dropped 0 + dead letters 0  ok
Patient:      read 1 = mapped 1 + dropped 0 + dead letters 0  ok
every record read is mapped, deleted, dropped by a rule or dead-lettered
`

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
