package producer_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/schemas"
)

// benchPatients is the export size of BenchmarkFetchVsBare: the acceptance size, 1,000
// patients, on a real broker; 50 on kfake, which only checks the benchmark runs.
// FHIRSTREAM_BENCH_PATIENTS overrides it.
func benchPatients(b *testing.B) int {
	n := 50
	if testkafka.Real() {
		n = 1000
	}
	return testkafka.PositiveEnv(b, "FHIRSTREAM_BENCH_PATIENTS", n)
}

// BenchmarkFetchVsBare measures, in the same run against the same broker, the fetcher
// (serve-ehr → HTTP → gzip, parse, check, headers, transactions with checkpoints → Kafka)
// and a bare transactional franz-go producer publishing the same records from memory:
// the records the fetcher published, read back from its raw topics (same keys, same
// provenance headers, same values), into fresh topics of the same partition count, in
// transactions of the fetcher's size, with the fetcher's producer settings (linger,
// compression, buffer). So the bare side does the Kafka work the contract asks for, and
// nothing else: the ratio prices the fetcher's own work (HTTP, gzip, parsing,
// checkpoints). It reports resources/s of each and their ratio (the acceptance target is
// fetch/bare ≥ 0.8), and CPU per line of each, the broker's too with
// FHIRSTREAM_BENCH_BROKER_PID. Run it with
//
//	FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 go test -run '^$' -bench FetchVsBare -benchtime 1x ./producer
func BenchmarkFetchVsBare(b *testing.B) {
	dir := b.TempDir()
	_, err := synth.WriteDir(context.Background(), synth.Config{Patients: benchPatients(b), Seed: 3}, dir)
	if err != nil {
		b.Fatal(err)
	}
	// FHIRSTREAM_BENCH_PER_FILE splits the export into files of at most that many
	// resources, as most EHRs do; by default each type is one file, and the Observation
	// file, over half the export, is the longest path. The split is written before the
	// server starts, so that it serves every file from a gzip copy made in advance: the
	// server's ResourcesPerFile would compress each file while serving it, and the
	// benchmark counts the simulator's CPU as the fetch's.
	if perFile, _ := strconv.Atoi(os.Getenv("FHIRSTREAM_BENCH_PER_FILE")); perFile > 0 {
		splitExport(b, dir, perFile)
	}
	srv, err := ehrsim.New(ehrsim.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var resources int64
	var types []string
	for t, n := range srv.Types() {
		resources += n
		types = append(types, t)
	}
	var fetchTime, bareTime, fetchCPU, bareCPU, fetchBroker, bareBroker time.Duration
	var fetchBytes int64
	var records []*kgo.Record // what the fetcher published, read back after its first run
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order, so neither side always meets a broker warmed by the other.
		// CPU is the whole process's, user plus system: during the fetch that includes
		// the simulator serving it, which sends precompressed files and so costs little.
		runs := []func(){
			func() {
				c, bc := testkafka.ProcessCPU(), brokerCPU()
				var d time.Duration
				var n int64
				var cl *testkafka.Cluster
				// The label lets a CPU profile (-cpuprofile) tell the two sides apart:
				// goroutines started inside inherit it (franz-go's, the HTTP client's),
				// the simulator's do not (pprof -tagfocus side=fetch).
				pprof.Do(context.Background(), pprof.Labels("side", "fetch"), func(context.Context) { d, n, cl = benchFetch(b, srv.URL, resources) })
				fetchTime, fetchBytes, fetchCPU, fetchBroker = fetchTime+d, fetchBytes+n, fetchCPU+testkafka.ProcessCPU()-c, fetchBroker+brokerCPU()-bc
				if records == nil {
					b.StopTimer()
					records = readRaw(b, cl, types, resources)
					b.StartTimer()
				}
			},
			func() {
				c, bc := testkafka.ProcessCPU(), brokerCPU()
				var d time.Duration
				pprof.Do(context.Background(), pprof.Labels("side", "bare"), func(context.Context) { d = benchBare(b, records, types) })
				bareTime, bareCPU, bareBroker = bareTime+d, bareCPU+testkafka.ProcessCPU()-c, bareBroker+brokerCPU()-bc
			},
		}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			run()
		}
	}
	b.StopTimer()
	n := float64(b.N)
	fetchRate, bareRate := float64(resources)*n/fetchTime.Seconds(), float64(resources)*n/bareTime.Seconds()
	b.ReportMetric(fetchRate, "fetch-resources/s")
	b.ReportMetric(bareRate, "bare-resources/s")
	b.ReportMetric(float64(fetchBytes)/1e6/fetchTime.Seconds(), "fetch-MB/s")
	b.ReportMetric(fetchRate/bareRate, "fetch/bare")
	lines := float64(resources) * n
	b.ReportMetric(float64(fetchCPU.Nanoseconds())/lines, "fetch-cpu-ns/line")
	b.ReportMetric(float64(bareCPU.Nanoseconds())/lines, "bare-cpu-ns/line")
	if _, ok := testkafka.BrokerCPU(); ok {
		b.ReportMetric(float64(fetchBroker.Nanoseconds())/lines, "fetch-broker-cpu-ns/line")
		b.ReportMetric(float64(bareBroker.Nanoseconds())/lines, "bare-broker-cpu-ns/line")
	}
	b.ReportMetric(float64(resources), "resources")
}

func brokerCPU() time.Duration {
	d, _ := testkafka.BrokerCPU()
	return d
}

// benchFetch runs one export into fresh topics and returns its duration, its NDJSON
// bytes and the cluster (prefix) it published to. Its time runs from its start, so it
// includes creating its topics, the kickoff and the status polls.
func benchFetch(b *testing.B, base string, resources int64) (time.Duration, int64, *testkafka.Cluster) {
	c := testkafka.New(b)
	cfg := producer.Config{Kafka: c.Config(), Partitions: 3, Export: bulk.Request{Base: base}, MinPoll: 5 * time.Millisecond}
	// FHIRSTREAM_BENCH_COMMIT_BYTES sets Config.CommitBytes: each commit drains the
	// producer, so the commit size trades throughput against work redone after a crash.
	if v, err := strconv.ParseInt(os.Getenv("FHIRSTREAM_BENCH_COMMIT_BYTES"), 10, 64); err == nil {
		cfg.CommitBytes = v
	}
	// FHIRSTREAM_BENCH_WORKERS sets Config.Workers, the files published in parallel.
	if v, err := strconv.Atoi(os.Getenv("FHIRSTREAM_BENCH_WORKERS")); err == nil {
		cfg.Workers = v
	}
	if os.Getenv("FHIRSTREAM_BENCH_DEBUG") != "" { // the fetcher's debug log: commit and flush times
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	start := time.Now()
	sum, err := producer.Fetch(context.Background(), cfg)
	d := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if sum.Resources() != resources {
		b.Fatalf("fetch published %d resources, want %d", sum.Resources(), resources)
	}
	return d, sum.Bytes, c
}

// readRaw reads back the records the fetcher published to c's raw topics, keyed and
// with its headers, for the bare producer to publish again.
func readRaw(b *testing.B, c *testkafka.Cluster, types []string, resources int64) []*kgo.Record {
	topics := schemas.MustTopics(c.Prefix)
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = topics.Raw(t)
	}
	recs := c.ReadAll(b, names...)
	if int64(len(recs)) != resources {
		b.Fatalf("read %d records back from the raw topics, want %d", len(recs), resources)
	}
	for _, r := range recs {
		if len(r.Key) == 0 || len(r.Headers) == 0 {
			b.Fatalf("record of %s without key or headers", r.Topic)
		}
		_, t, _ := topics.ParseLayerTopic(r.Topic)
		r.Topic = t // the type; benchBare puts each into its own run's topic
	}
	return recs
}

// benchFetchCommitBytes is the fetcher's default transaction size (producer.Config).
const benchFetchCommitBytes = 32 << 20

// benchBare publishes records (Topic holding the resource type) with a transactional
// franz-go producer set up as the fetcher's, into fresh raw topics of the same partition
// count, committing every benchFetchCommitBytes of keys and values, and returns the time
// from its first record to its last commit. Creating the topics and initialising the
// producer id come before the clock starts; the fetcher's time includes its own.
func benchBare(b *testing.B, records []*kgo.Record, types []string) time.Duration {
	c := testkafka.New(b)
	topics := schemas.MustTopics(c.Prefix)
	names := make([]string, len(types))
	byType := map[string]string{}
	for i, t := range types {
		names[i] = topics.Raw(t)
		byType[t] = names[i]
	}
	// CreateTopics gives them the record limit of the topics the fetcher creates, so
	// batches are sized alike, and returns once their partitions have leaders: the
	// bare side's setup is not on its clock.
	c.CreateTopics(b, 3, names...)
	// The fetcher's producer options (producer/run.go), written out here so that the
	// baseline does not move when the fetcher's settings do.
	cl := c.Client(b,
		kgo.TransactionalID(c.Prefix+"-bare"),
		kgo.TransactionTimeout(time.Minute),
		kgo.ProducerLinger(20*time.Millisecond),
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.MaxBufferedBytes(16<<20),
		kgo.ProducerBatchCompression(kgo.SnappyCompression(), kgo.NoCompression()),
	)
	ctx := context.Background()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		b.Fatalf("init transactional producer: %v", err)
	}
	// Fresh records, so nothing of the read-back (partition, offset) carries over.
	out := make([]kgo.Record, len(records))
	for i, r := range records {
		out[i] = kgo.Record{Topic: byType[r.Topic], Key: r.Key, Value: r.Value, Headers: r.Headers}
	}
	var failed atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, &err)
		}
	}
	commit := func() {
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.Fatalf("commit: %v", err)
		}
	}
	start := time.Now()
	if err := cl.BeginTransaction(); err != nil {
		b.Fatal(err)
	}
	var pending int
	for i := range out {
		r := &out[i]
		cl.Produce(ctx, r, promise)
		if pending += len(r.Key) + len(r.Value); pending >= benchFetchCommitBytes {
			commit()
			if err := cl.BeginTransaction(); err != nil {
				b.Fatal(err)
			}
			pending = 0
		}
	}
	commit()
	d := time.Since(start)
	if e := failed.Load(); e != nil {
		b.Fatalf("produce: %v", *e)
	}
	return d
}

// splitExport replaces each <Type>.ndjson in dir with <Type>.<n>.ndjson files of at most
// perFile lines, which the simulator serves as files of their own.
func splitExport(b *testing.B, dir string, perFile int) {
	names, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		base := strings.TrimSuffix(name, ".ndjson")
		for part := 0; len(data) > 0; part++ {
			end := 0
			for range perFile {
				i := bytes.IndexByte(data[end:], '\n')
				if i < 0 {
					end = len(data)
					break
				}
				if end += i + 1; end == len(data) {
					break
				}
			}
			if err := os.WriteFile(fmt.Sprintf("%s.%d.ndjson", base, part), data[:end], 0o600); err != nil {
				b.Fatal(err)
			}
			data = data[end:]
		}
		if err := os.Remove(name); err != nil {
			b.Fatal(err)
		}
	}
}
