package omop

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
	counter := &batchCounter{}
	ctx := stage.WithCommitCounter(context.Background(), counter)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if err := p.Process(ctx, recs[n%len(recs)], nil, out); err != nil {
			if _, ok := stage.AsRejection(err); !ok {
				b.Fatal(err)
			}
		}
		counter.keep()
		if n++; n%20_000 == 0 {
			counter.counts = nil // a batch committed (publishing, once per batch, is left out)
		}
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)/secs, "records/s")
	b.ReportMetric(float64(out.n)/secs, "rows/s")
}

// batchCounter holds the counts the stage makes with stage.CountCommitted for a batch, as
// the stage runtime does (consumers/runtime tally: a slice of pending counts per record,
// kept in a map per batch with the last key remembered), so that the benchmark pays what
// a running stage pays for its counts rather than a counter increment per count.
type batchCounter struct {
	pending   []counterKey
	counts    map[counterKey]*float64
	last      counterKey
	lastCount *float64
}

type counterKey struct {
	vec    *prometheus.CounterVec
	labels [stage.MaxCountLabels]string
	n      int
}

func (c *batchCounter) CountOnCommit(vec *prometheus.CounterVec, labels [stage.MaxCountLabels]string, n int) {
	c.pending = append(c.pending, counterKey{vec: vec, labels: labels, n: n})
}

func (c *batchCounter) keep() {
	for _, k := range c.pending {
		if c.lastCount == nil || k != c.last || c.counts == nil {
			if c.counts == nil {
				c.counts = map[counterKey]*float64{}
			}
			v := c.counts[k]
			if v == nil {
				v = new(float64)
				c.counts[k] = v
			}
			c.last, c.lastCount = k, v
		}
		*c.lastCount++
	}
	c.pending = c.pending[:0]
}
