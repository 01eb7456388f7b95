package sink

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// Benchmarks: the sink end to end over the test broker (decode, write, commit, publish)
// beside parquet-go writing the same decoded rows straight to a file, per table. Both
// report rows/s and MB/s of input (Avro bytes); peak_rss_MB is the process high-water mark.
//
//	go test -run '^$' -bench . -benchtime 1x ./consumers/sink/

const benchRows = 50_000

var benchTables = []string{"person", "measurement", "condition_occurrence"}

func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func report(b *testing.B, rows, bytes int64, d time.Duration) {
	b.ReportMetric(float64(rows)/d.Seconds(), "rows/s")
	b.ReportMetric(float64(bytes)/d.Seconds()/1e6, "MB/s")
	b.ReportMetric(peakRSSMB(), "peak_rss_MB")
}

func BenchmarkSink(b *testing.B) {
	codec, err := schemas.NewCodecs()
	if err != nil {
		b.Fatal(err)
	}
	for _, table := range benchTables {
		b.Run(table, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				c := testkafka.New(b)
				topics := schemas.MustTopics(c.Prefix)
				c.CreateTopics(b, 3, topics.OMOP(table), topics.DLQ())
				recs := omopRecords(b, codec, topics, table, benchRows, 1000, time.Now())
				var bytes int64
				for _, r := range recs {
					bytes += int64(len(r.Value))
				}
				cl := c.Client(b)
				if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
					b.Fatal(err)
				}
				s, err := New(context.Background(), c.Config(), Config{Layer: LayerOMOP, Out: b.TempDir(), Group: c.Group("bench"), FlushRows: 20_000, FlushInterval: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				b.StartTimer()
				start := time.Now()
				go func() { done <- s.Run(ctx) }()
				for s.Stats().TotalRows() < benchRows {
					select {
					case err := <-done:
						b.Fatalf("sink stopped: %v", err)
					case <-time.After(5 * time.Millisecond):
					}
				}
				d := time.Since(start)
				b.StopTimer()
				cancel()
				<-done
				report(b, benchRows, bytes, d)
			}
		})
	}
}

func BenchmarkDirectParquet(b *testing.B) {
	codec, err := schemas.NewCodecs()
	if err != nil {
		b.Fatal(err)
	}
	for _, table := range benchTables {
		b.Run(table, func(b *testing.B) {
			topics := schemas.MustTopics("bench")
			recs := omopRecords(b, codec, topics, table, benchRows, 1000, time.Now())
			ds, err := omopDatasetOf(table)
			if err != nil {
				b.Fatal(err)
			}
			cfg, _ := (&Config{Layer: LayerOMOP, Out: "x"}).withDefaults()
			opts := writerOptions(ds.dataset, &cfg, &parquet.Zstd)
			var bytes int64
			for _, r := range recs {
				bytes += int64(len(r.Value))
			}
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				f, err := os.Create(b.TempDir() + "/direct.parquet")
				if err != nil {
					b.Fatal(err)
				}
				w := parquet.NewWriter(f, opts...)
				var row parquet.Row
				for _, r := range recs {
					_, m, err := codec.Decode(context.Background(), r.Value)
					if err != nil {
						b.Fatal(err)
					}
					row, err = appendOMOPRow(row[:0], ds, m, &kgo.Record{Partition: r.Partition, Offset: r.Offset})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				f.Close()
				report(b, benchRows, bytes, time.Since(start))
			}
		})
	}
}
