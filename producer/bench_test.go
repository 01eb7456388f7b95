package producer_test

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
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
// (serve-ehr → HTTP → parse, check, headers, transactions with checkpoints → Kafka) and a
// bare franz-go producer publishing the same lines from the same files (no HTTP, no
// parsing, no transactions). It reports resources/s and MB/s of each and their ratio;
// the acceptance target is fetch/bare ≥ 0.8 in resources/s. Run it with
//
//	FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 go test -run '^$' -bench FetchVsBare -benchtime 1x ./producer
func BenchmarkFetchVsBare(b *testing.B) {
	dir := b.TempDir()
	_, err := synth.WriteDir(context.Background(), synth.Config{Patients: benchPatients(b), Seed: 3}, dir)
	if err != nil {
		b.Fatal(err)
	}
	// FHIRSTREAM_BENCH_PER_FILE splits the server's output files at that many resources,
	// as most EHRs do; by default each type is one file, and the Observation file, over
	// half the export, is the longest path.
	perFile, _ := strconv.Atoi(os.Getenv("FHIRSTREAM_BENCH_PER_FILE"))
	srv, err := ehrsim.New(ehrsim.Config{Dir: dir, ResourcesPerFile: perFile})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var resources int64
	for _, n := range srv.Types() {
		resources += n
	}
	var fetchTime, bareTime, bareSetup, fetchCPU, bareCPU time.Duration
	var fetchBytes, bareBytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order, so neither side always meets a broker warmed by the other.
		// CPU is the whole process's, user plus system: during the fetch that includes
		// the simulator serving it, which sends precompressed files and so costs little.
		runs := []func(){
			func() {
				c := testkafka.ProcessCPU()
				var d time.Duration
				var n int64
				// The label lets a CPU profile (-cpuprofile) tell the two sides apart:
				// goroutines started inside inherit it (franz-go's, the HTTP client's),
				// the simulator's do not (pprof -tagfocus side=fetch).
				pprof.Do(context.Background(), pprof.Labels("side", "fetch"), func(context.Context) { d, n = benchFetch(b, srv.URL, resources) })
				fetchTime, fetchBytes, fetchCPU = fetchTime+d, fetchBytes+n, fetchCPU+testkafka.ProcessCPU()-c
			},
			func() {
				c := testkafka.ProcessCPU()
				var d time.Duration
				var n int64
				var setup time.Duration
				pprof.Do(context.Background(), pprof.Labels("side", "bare"), func(context.Context) { d, setup, n = benchBare(b, dir, resources) })
				bareTime, bareSetup, bareBytes, bareCPU = bareTime+d, bareSetup+setup, bareBytes+n, bareCPU+testkafka.ProcessCPU()-c
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
	b.ReportMetric(float64(bareBytes)/1e6/bareTime.Seconds(), "bare-MB/s")
	b.ReportMetric(fetchRate/bareRate, "fetch/bare")
	// The fetcher's time runs from its start, so it includes creating its topics (and the
	// kickoff and polls); the bare producer's starts once its topics exist. This ratio
	// times the bare producer's topic creation too, so both sides go from fresh topics
	// to flushed records.
	b.ReportMetric(fetchRate/(float64(resources)*n/(bareTime+bareSetup).Seconds()), "fetch/bare-with-topics")
	lines := float64(resources) * n
	b.ReportMetric(float64(fetchCPU.Nanoseconds())/lines, "fetch-cpu-ns/line")
	b.ReportMetric(float64(bareCPU.Nanoseconds())/lines, "bare-cpu-ns/line")
	b.ReportMetric(float64(resources), "resources")
}

// benchFetch runs one export into fresh topics and returns its duration and NDJSON bytes.
func benchFetch(b *testing.B, base string, resources int64) (time.Duration, int64) {
	c := testkafka.New(b)
	cfg := producer.Config{Kafka: c.Config(), Partitions: 3, Export: bulk.Request{Base: base}, MinPoll: 5 * time.Millisecond}
	// FHIRSTREAM_BENCH_COMMIT_BYTES sets Config.CommitBytes: each commit drains the
	// producer, so the commit size trades throughput against work redone after a crash.
	if v, err := strconv.ParseInt(os.Getenv("FHIRSTREAM_BENCH_COMMIT_BYTES"), 10, 64); err == nil {
		cfg.CommitBytes = v
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
	return d, sum.Bytes
}

// benchBare publishes every line of dir's files with a plain idempotent franz-go producer
// into fresh topics of the same partition count, and returns its duration, the time it
// took to create the topics before that, and its bytes.
func benchBare(b *testing.B, dir string, resources int64) (time.Duration, time.Duration, int64) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	c := testkafka.New(b)
	topics := schemas.MustTopics(c.Prefix)
	typeOf := func(f string) string { t, _, _ := strings.Cut(filepath.Base(f), "."); return t }
	var names []string
	for _, f := range files {
		// With FHIRSTREAM_BENCH_PER_FILE a type has several files, and a create request
		// naming a topic twice fails.
		if t := topics.Raw(typeOf(f)); !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	// The same record limit as the topics the fetcher creates, so batches are sized alike.
	maxBytes := strconv.Itoa(int(c.Config().MaxRecordBytes))
	setupStart := time.Now()
	resp, err := c.Admin(b).CreateTopics(context.Background(), 3, 1, map[string]*string{"max.message.bytes": &maxBytes}, names...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		b.Fatalf("create topics: %v", err)
	}
	cl := c.Client(b, kgo.ProducerLinger(20*time.Millisecond))
	var bytes, lines int64
	start := time.Now()
	setup := start.Sub(setupStart)
	for _, f := range files {
		topic := topics.Raw(typeOf(f))
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			v := append([]byte(nil), sc.Bytes()...)
			bytes += int64(len(v)) + 1
			lines++
			cl.Produce(context.Background(), &kgo.Record{Topic: topic, Value: v}, func(_ *kgo.Record, err error) {
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
	d := time.Since(start)
	if lines != resources {
		b.Fatalf("bare producer sent %d lines, want %d", lines, resources)
	}
	return d, setup, bytes
}
