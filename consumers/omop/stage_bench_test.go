package omop_test

// BenchmarkOMOPStage measures the mapping stage on the stage runtime beside the
// pass-through stage reading the same fhir.unique layer in the same run (the issue's
// target: omop/passthrough >= 0.7). Run it on the real broker for figures worth
// reporting (kfake runs in the test process and competes with it for the CPU):
//
//	flock /tmp/fhirstream-bench.lock env FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 \
//	    go test -run '^$' -bench BenchmarkOMOPStage -benchtime 1x -v ./consumers/omop
//
// Like consumers/passthrough's BenchmarkStages, it runs a warm-up round, not counted, and
// FHIRSTREAM_BENCH_ROUNDS rounds (default 5) of both stages, in alternating order, each a new consumer group reading the
// whole layer; it reports the medians of the rates, of each round's ratio and of this
// process's CPU time per input record (omop-cpu-µs/rec, passthrough-cpu-µs/rec; the
// broker's not included). A round's rate runs from the first commit seen to the last
// (testkafka.WaitCommitted), so the one-time start does not count. One slow round (a
// broker pause weighs a lot on a run of one or two seconds) moves a median little, where
// it moved the sums this benchmark used to report by up to half. With the broker on this
// machine, FHIRSTREAM_BENCH_BROKER_PID=<its pid> adds <stage>-broker-cpu-µs/rec, the
// broker's CPU time per input record during each stage's runs.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/passthrough"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

const stageBenchPatients = 1000 // about 350k resources: enough batches that the first one does not dominate

func BenchmarkOMOPStage(b *testing.B) {
	c := testkafka.New(b)
	topics := schemas.MustTopics(c.Prefix)
	ctx := context.Background()

	var recs []*kgo.Record
	typeSet := map[string]bool{}
	err := synth.Generate(ctx, synth.Config{Patients: stageBenchPatients, Seed: 1}, func(rt string, line []byte) error {
		typeSet[rt] = true
		recs = append(recs, &kgo.Record{Topic: topics.Unique(rt), Key: schemas.Key(rt, fastjson.GetString(line, "id")), Value: append([]byte(nil), line...),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderResourceType, Value: []byte(rt)}}})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var all []string
	for rt := range typeSet {
		all = append(all, topics.Unique(rt), c.Prefix+"."+passthrough.Layer+"."+rt)
	}
	for _, tb := range schemas.OMOPTables() {
		all = append(all, topics.OMOP(tb))
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
	var inputs []string
	for rt := range typeSet {
		inputs = append(inputs, topics.Unique(rt))
	}
	ends := testkafka.EndOffsets(b, adm, inputs...)
	rounds := testkafka.PositiveEnv(b, "FHIRSTREAM_BENCH_ROUNDS", 5)

	// run labels the stage's goroutines (franz-go's included: they inherit it) with its
	// name, so that a -cpuprofile tells the two apart: pprof -tagfocus stage=omop.
	run := func(b *testing.B, name string, def stage.Definition, group string) testkafka.CommitProgress {
		def = def.WithGroup(group)
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
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
		def  func() stage.Definition
	}{
		{"passthrough", func() stage.Definition { return passthrough.Definition(topics, schemas.LayerUnique) }},
		{"omop", func() stage.Definition {
			p, err := omop.New(omop.Config{Topics: topics})
			if err != nil {
				b.Fatal(err)
			}
			return omop.Definition(p, topics.Topology(schemas.TopologyOptions{}))
		}},
	}
	rates := map[string][]float64{}
	cpus := map[string][]float64{}
	brokerCPUs := map[string][]float64{} // with FHIRSTREAM_BENCH_BROKER_PID
	var ratios, starts []float64
	// Round -1 warms up and is not counted: on a broker started minutes before, the first
	// stage to run was twice as slow as in later rounds (the broker's JIT, page cache).
	for round := -1; round < rounds*b.N; round++ {
		rate := map[string]float64{}
		for k := range stages {
			st := stages[(k+round+len(stages))%len(stages)]
			cpu0 := testkafka.ProcessCPU()
			broker0, withBroker := testkafka.BrokerCPU()
			m := run(b, st.name, st.def(), c.Group(fmt.Sprintf("%s-%d", st.name, round)))
			cpu := (testkafka.ProcessCPU() - cpu0).Seconds() * 1e6 / float64(m.Total)
			b.Logf("round %d %-12s %8.0f records/s (%d records in %v after a start of %v), %.1f CPU-µs/record%s", round, st.name, m.Rate(),
				m.Records, m.Steady.Round(time.Millisecond), m.Start.Round(time.Millisecond), cpu, testkafka.WarmUpNote(round))
			if round < 0 {
				continue
			}
			if broker1, ok := testkafka.BrokerCPU(); withBroker && ok {
				brokerCPUs[st.name] = append(brokerCPUs[st.name], (broker1-broker0).Seconds()*1e6/float64(m.Total))
			}
			rate[st.name] = m.Rate()
			rates[st.name] = append(rates[st.name], m.Rate())
			cpus[st.name] = append(cpus[st.name], cpu)
			starts = append(starts, m.Start.Seconds())
		}
		if round >= 0 {
			ratios = append(ratios, rate["omop"]/rate["passthrough"])
		}
	}
	for _, st := range stages {
		b.ReportMetric(testkafka.Median(rates[st.name]), st.name+"-records/s")
		b.ReportMetric(testkafka.Median(cpus[st.name]), st.name+"-cpu-µs/rec")
		if len(brokerCPUs[st.name]) > 0 {
			b.ReportMetric(testkafka.Median(brokerCPUs[st.name]), st.name+"-broker-cpu-µs/rec")
		}
	}
	b.ReportMetric(testkafka.Median(ratios), "omop/passthrough")
	b.ReportMetric(testkafka.Median(starts), "start-s")
	b.Logf("omop/passthrough per round: %.2f", ratios)
}
