package omop

import (
	"context"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
)

type discard struct{ n int }

func (d *discard) Emit(stage.Record) { d.n++ }

// BenchmarkProcess measures the mapper alone (parse, map, Avro-encode; no broker) over a
// generated export's mix of resources, reporting records/s and rows/s.
func BenchmarkProcess(b *testing.B) {
	var recs []*stage.Record
	err := synth.Generate(context.Background(), synth.Config{Patients: 20, Seed: 7}, func(rt string, line []byte) error {
		recs = append(recs, &stage.Record{Topic: testTopics.Unique(rt), Value: append([]byte(nil), line...)})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	p := newTestProcessor(b, nil)
	out := &discard{}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if err := p.Process(ctx, recs[n%len(recs)], nil, out); err != nil {
			if _, ok := stage.AsRejection(err); !ok {
				b.Fatal(err)
			}
		}
		n++
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)/secs, "records/s")
	b.ReportMetric(float64(out.n)/secs, "rows/s")
}
