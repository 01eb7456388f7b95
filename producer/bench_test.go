package producer_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/schemas"
)

// benchPatients is the export size of the benchmarks; compare resources/s of
// BenchmarkFetch (ehrsim → fetcher → Kafka) with BenchmarkBareProducer (the same lines
// from disk, produced by a plain idempotent franz-go client, no parsing, no checkpoints).
const benchPatients = 50

func BenchmarkFetch(b *testing.B) {
	srv, err := ehrsim.New(ehrsim.Config{Synth: benchPatients, Seed: 3})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var total int64
	for _, n := range srv.Types() {
		total += n
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := testkafka.New(b)
		cfg := fastConfig(c, srv.URL)
		sum, err := producer.Fetch(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(sum.Bytes)
	}
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

func BenchmarkBareProducer(b *testing.B) {
	dir := b.TempDir()
	if _, err := synth.WriteDir(context.Background(), synth.Config{Patients: benchPatients, Seed: 3}, dir); err != nil {
		b.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	typeOf := regexp.MustCompile(`^([A-Za-z]+)`)
	var total int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := testkafka.New(b)
		topics := schemas.MustTopics(c.Prefix)
		var names []string
		for _, f := range files {
			names = append(names, topics.Raw(typeOf.FindString(filepath.Base(f))))
		}
		c.CreateTopics(b, 3, names...)
		cl := c.Client(b, kgo.ProducerLinger(20e6))
		var bytes int64
		for _, f := range files {
			typ := typeOf.FindString(filepath.Base(f))
			fh, _ := os.Open(f)
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				v := append([]byte(nil), sc.Bytes()...)
				bytes += int64(len(v)) + 1
				total++
				cl.Produce(context.Background(), &kgo.Record{Topic: topics.Raw(typ), Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			fh.Close()
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(bytes)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "resources/s")
}
