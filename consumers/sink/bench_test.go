package sink

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// Benchmarks: the sink end to end over the test broker (fetch, decode, write, commit,
// publish) at the default flush settings, into a directory and into a file:// lake (the
// object-store code path), per table; and, in the same iteration on the same rows,
// parquet-go writing them straight to one file with the same writer options (decode
// included, no Kafka). Each reports rows/s, MB/s of input (Avro values) and of Parquet
// written, the direct write's rows/s and the ratio sink/direct; peak_rss_MB is the
// process high-water mark (the whole test binary, not only the sink).
//
//	FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 flock /tmp/fhirstream-bench.lock \
//	    go test -run '^$' -bench . -benchtime 3x ./consumers/sink/

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

// treeBytes is the size of the .parquet files under dir.
func treeBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, dataSuffix) && !strings.HasSuffix(p, schemaFileName) {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func BenchmarkSink(b *testing.B) {
	codec, err := schemas.NewCodecs()
	if err != nil {
		b.Fatal(err)
	}
	for _, table := range benchTables {
		for _, newLake := range []func(testing.TB) testLake{newDirLake, newFileBlobLake} {
			b.Run(table+"/"+newLake(b).name, func(b *testing.B) {
				var sinkTime, directTime time.Duration
				var inBytes, outBytes int64
				for range b.N {
					b.StopTimer()
					c := testkafka.New(b)
					topics := schemas.MustTopics(c.Prefix)
					c.CreateTopics(b, 3, topics.OMOP(table), topics.DLQ())
					recs := omopRecords(b, codec, topics, table, benchRows, 1000, time.Now())
					for _, r := range recs {
						inBytes += int64(len(r.Value))
					}
					cl := c.Client(b)
					if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
						b.Fatal(err)
					}
					directTime += writeDirect(b, codec, table, recs)

					lake := newLake(b)
					s, err := New(context.Background(), c.Config(), lake.config(Config{Layer: LayerOMOP, Group: c.Group("bench"), Logger: slog.New(slog.DiscardHandler)}))
					if err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					b.StartTimer()
					start := time.Now()
					go func() { done <- s.Run(ctx) }()
					// The default flush interval (5 s) would end the last batch long after the
					// rows are in; the sink is stopped once it has every row, and its shutdown
					// flush (write, commit, publish) is part of the time.
					for st := s.Stats(); st.TotalRows()+st.OpenRows < benchRows; st = s.Stats() {
						select {
						case err := <-done:
							b.Fatalf("sink stopped: %v", err)
						case <-time.After(2 * time.Millisecond):
						}
					}
					cancel()
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					sinkTime += time.Since(start)
					b.StopTimer()
					if got := s.Stats().TotalRows(); got != benchRows {
						b.Fatalf("sink committed %d rows, want %d", got, benchRows)
					}
					outBytes += treeBytes(lake.localDir(b))
				}
				rows := float64(benchRows * b.N)
				b.ReportMetric(rows/sinkTime.Seconds(), "rows/s")
				b.ReportMetric(float64(inBytes)/sinkTime.Seconds()/1e6, "in_MB/s")
				b.ReportMetric(float64(outBytes)/sinkTime.Seconds()/1e6, "parquet_MB/s")
				b.ReportMetric(rows/directTime.Seconds(), "direct_rows/s")
				b.ReportMetric(directTime.Seconds()/sinkTime.Seconds(), "x_direct")
				b.ReportMetric(peakRSSMB(), "peak_rss_MB")
			})
		}
	}
}

// writeDirect writes the rows of recs to one Parquet file with parquet-go, with the
// sink's writer options and the same decoding, and returns the time it took.
func writeDirect(b *testing.B, codec *schemas.Codec, table string, recs []*kgo.Record) time.Duration {
	b.Helper()
	ds, err := omopDatasetOf(table)
	if err != nil {
		b.Fatal(err)
	}
	cfg, _ := (&Config{Layer: LayerOMOP, Out: "x"}).withDefaults()
	opts := writerOptions(ds.dataset, &cfg, &parquet.Zstd)
	start := time.Now()
	f, err := os.Create(filepath.Join(b.TempDir(), "direct.parquet"))
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
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
