package deid_test

// BenchmarkApply measures the de-identification of one resource (the Safe Harbor
// preset with per-patient date shifting) on generated Synthea-like resources of 300
// patients (so that ids, as in a stream, rarely repeat), without Kafka, in wall and
// CPU time per resource. BenchmarkDeidStage measures the stage on the stage runtime
// beside the pass-through stage reading the same fhir.unique layer in the same run (the
// issue's target: deid/passthrough >= 0.7). Run the stage benchmark on the real broker
// for figures worth reporting (kfake runs in the test process and competes for the CPU):
//
//	FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 go test -run '^$' -bench BenchmarkDeidStage \
//	    -benchtime 1x -v ./consumers/deid
//
// FHIRSTREAM_BENCH_PATIENTS sets the input size (default 300 patients, about 115k
// resources) and FHIRSTREAM_BENCH_ROUNDS the rounds (default 3), run as
// consumers/omop's BenchmarkOMOPStage runs them: a warm-up round not counted, then both
// stages in alternating order, each a new consumer group reading the whole layer; the
// medians of the rates, of each round's ratio and of this process's CPU time per record
// are reported. Each stage runs under the profile label stage=<name> (with -cpuprofile,
// go tool pprof -tagfocus stage=deid shows the deid stage's own share).

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/consumers/passthrough"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

var benchKeys = deid.Keys{CryptoHash: []byte("bench-crypto-hash-key"), DateShift: []byte("bench-date-shift-key")}

func benchConfig(b *testing.B) *deid.Config {
	cfg, err := deid.Preset("safe-harbor-dateshift")
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

func BenchmarkApply(b *testing.B) {
	var lines [][]byte
	var size int64
	err := synth.Generate(context.Background(), synth.Config{Patients: 300, Seed: 1}, func(_ string, line []byte) error {
		lines = append(lines, append([]byte(nil), line...))
		size += int64(len(line))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	e, err := deid.New(benchConfig(b), benchKeys)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size / int64(len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testkafka.ProcessCPU()
	var buf []byte
	for i := range b.N {
		res, err := e.Apply(buf[:0], lines[i%len(lines)])
		if err != nil {
			b.Fatal(err)
		}
		buf = res.JSON
	}
	// CPU time (this process's, the garbage collector's included) moves less than wall
	// time on a machine shared with other work.
	b.ReportMetric(float64(testkafka.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// gcCPU is the CPU time the garbage collector has spent in this process, in seconds
// (runtime/metrics' estimate).
func gcCPU() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return s[0].Value.Float64()
}

func BenchmarkDeidStage(b *testing.B) {
	c := testkafka.New(b)
	topics := schemas.MustTopics(c.Prefix)
	ctx := context.Background()
	patients := testkafka.PositiveEnv(b, "FHIRSTREAM_BENCH_PATIENTS", 300)
	var recs []*kgo.Record
	typeSet := map[string]bool{}
	err := synth.Generate(ctx, synth.Config{Patients: patients, Seed: 1}, func(rt string, line []byte) error {
		typeSet[rt] = true
		recs = append(recs, &kgo.Record{Topic: topics.Unique(rt), Key: schemas.Key(rt, fastjson.GetString(line, "id")), Value: append([]byte(nil), line...),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderResourceType, Value: []byte(rt)}}})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var all, inputs []string
	for rt := range typeSet {
		all = append(all, topics.Unique(rt), c.Prefix+"."+passthrough.Layer+"."+rt, deid.OutputTopic(topics, rt))
		inputs = append(inputs, topics.Unique(rt))
	}
	all = append(all, topics.DLQ())
	c.CreateTopics(b, 3, all...)
	cl := c.Client(b, kgo.ProducerLinger(10*time.Millisecond))
	for _, r := range recs {
		cl.Produce(ctx, r, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	adm := c.Admin(b)
	ends := testkafka.EndOffsets(b, adm, inputs...)
	rounds := testkafka.PositiveEnv(b, "FHIRSTREAM_BENCH_ROUNDS", 3)
	run := func(b *testing.B, name string, def stage.Definition, group string) testkafka.CommitProgress {
		def = def.WithGroup(group)
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		// Labelled, so that a profile splits by stage: go tool pprof -tagfocus stage=deid.
		go pprof.Do(ctx, pprof.Labels("stage", name), func(ctx context.Context) {
			done <- runtime.Run(ctx, c.Config(), def, runtime.Options{Logger: quiet})
		})
		m := testkafka.WaitCommitted(b, adm, group, ends, done)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return m
	}
	stages := []struct {
		name string
		def  stage.Definition
	}{
		{"passthrough", passthrough.Definition(topics, schemas.LayerUnique)},
		{"deid", deid.Definition(topics.Topology(schemas.TopologyOptions{Deidentify: true}), benchConfig(b), benchKeys)},
	}
	rates, cpus := map[string][]float64{}, map[string][]float64{}
	var ratios []float64
	for round := -1; round < rounds*b.N; round++ {
		rate := map[string]float64{}
		for k := range stages {
			st := stages[(k+round+len(stages))%len(stages)]
			cpu0, gc0 := testkafka.ProcessCPU(), gcCPU()
			m := run(b, st.name, st.def, c.Group(fmt.Sprintf("%s-%d", st.name, round)))
			cpu := (testkafka.ProcessCPU() - cpu0).Seconds() * 1e6 / float64(m.Total)
			gc := (gcCPU() - gc0) * 1e6 / float64(m.Total)
			b.Logf("round %d %-12s %8.0f records/s (%d records in %v after a start of %v), %.1f CPU-µs/record (%.1f in the garbage collector)%s", round, st.name, m.Rate(),
				m.Records, m.Steady.Round(time.Millisecond), m.Start.Round(time.Millisecond), cpu, gc, testkafka.WarmUpNote(round))
			if round < 0 {
				continue
			}
			rate[st.name] = m.Rate()
			rates[st.name] = append(rates[st.name], m.Rate())
			cpus[st.name] = append(cpus[st.name], cpu)
		}
		if round >= 0 {
			ratios = append(ratios, rate["deid"]/rate["passthrough"])
		}
	}
	for _, st := range stages {
		b.ReportMetric(testkafka.Median(rates[st.name]), st.name+"-records/s")
		b.ReportMetric(testkafka.Median(cpus[st.name]), st.name+"-cpu-µs/rec")
	}
	b.ReportMetric(testkafka.Median(ratios), "deid/passthrough")
	b.Logf("deid/passthrough per round: %.2f", ratios)
}
