package rows

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// BenchmarkFHIRChange measures the silver and bronze layers' Change per record, on
// generated resources with the fetcher's provenance headers, each row in a buffer of
// its table's width as the sink gives it: go test -run '^$' -bench FHIRChange ./consumers/sink/rows
func BenchmarkFHIRChange(b *testing.B) {
	topics := schemas.MustTopics("fhir")
	var recs []*stage.Record
	line := 0
	err := synth.Generate(context.Background(), synth.Config{Patients: 20, Seed: 7}, func(rt string, v []byte) error {
		line++
		recs = append(recs, &stage.Record{Topic: topics.Unique(rt), Key: []byte(rt + "/" + idOf(v)), Value: append([]byte(nil), v...),
			Timestamp: time.Unix(1700000000, 0), Headers: []stage.Header{
				{Key: schemas.ContentTypeHeader, Value: []byte(schemas.ContentTypeFHIR)},
				{Key: schemas.HeaderExportID, Value: []byte("http://127.0.0.1:8080/status/0123456789abcdef01234567")},
				{Key: schemas.HeaderTransactionTime, Value: []byte("2026-12-06T12:00:00Z")},
				{Key: schemas.HeaderSourceURL, Value: []byte("http://127.0.0.1:8080/files/" + rt + ".ndjson")},
				{Key: schemas.HeaderSourceLine, Value: []byte(strconv.Itoa(line))},
			}})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, layer := range []*fhirLayer{newFHIR(topics, topics.LayerPattern(schemas.LayerUnique)), newBronze(topics, topics.LayerPattern(schemas.LayerUnique))} {
		b.Run(layer.name, func(b *testing.B) {
			ctx := context.Background()
			var slab []parquet.Value
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				r := recs[n%len(recs)]
				n++
				l, err := layer.Table(r.Topic)
				if err != nil {
					b.Fatal(err)
				}
				if cap(slab)-len(slab) < len(l.Columns) {
					slab = make([]parquet.Value, 0, 64<<10)
				}
				dst := slab[len(slab) : len(slab) : len(slab)+len(l.Columns)]
				slab = slab[:len(slab)+len(l.Columns)]
				if _, err := layer.Change(ctx, r, l, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
