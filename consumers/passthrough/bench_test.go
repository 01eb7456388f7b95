package passthrough_test

// Throughput benchmarks of the stages on the stage runtime, beside the identity stage on
// the same runtime and a bare franz-go consume-produce loop without transactions. They
// are not part of the default test run. Run them on the real broker for figures worth
// reporting (kfake runs in the test process and competes with it for the CPU):
//
//	FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 go test -run '^$' -bench BenchmarkStages \
//	    -benchtime 1x ./consumers/passthrough
//
// FHIRSTREAM_BENCH_PATIENTS sets the input size (default 300 patients, about 115k
// resources); FHIRSTREAM_BENCH_MAX_POLL sets runtime.Options.MaxPollRecords;
// FHIRSTREAM_BENCH_LOG=info (or debug) shows the runtime's logs;
// FHIRSTREAM_BENCH_CASES=dedupe,passthrough runs only those cases (for profiling).
//
// Each case reads the same input: generated Synthea-like resources (internal/synth),
// produced once to the raw and valid layers (3 partitions per topic). Every case, the
// bare loop included, is timed by the same observer: it watches the case's consumer
// group commit its way to the end offsets of the input, and takes records/s from the
// first commit it sees to the last, so the one-time start (topic checks, producer id,
// group join) does not count; start-s reports that start separately. The cases run in
// turn for a warm-up round, not counted, and FHIRSTREAM_BENCH_ROUNDS rounds (default 3); the medians are reported:
// <case>-rec/s, and the ratios passthrough/bare, validate/passthrough and
// dedupe/passthrough (medians of each round's ratio), and <case>-cpu-µs/rec, this
// process's CPU time per input record (the broker's not included), which a loaded
// machine distorts less than records/s. -v logs every run.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/passthrough"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

const defaultBenchPatients = 300

func BenchmarkStages(b *testing.B) {
	patients := testkafka.PositiveEnv(b, "FHIRSTREAM_BENCH_PATIENTS", defaultBenchPatients)
	level := slog.LevelWarn
	if v := os.Getenv("FHIRSTREAM_BENCH_LOG"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			b.Fatalf("FHIRSTREAM_BENCH_LOG=%q: %v", v, err)
		}
	}
	rounds := testkafka.PositiveEnv(b, "FHIRSTREAM_BENCH_ROUNDS", 3)
	var ropts runtime.Options
	ropts.MaxPollRecords = testkafka.PositiveEnv(b, "FHIRSTREAM_BENCH_MAX_POLL", 0) // 0: the runtime's default
	ropts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	c := testkafka.New(b)
	topics := schemas.MustTopics(c.Prefix)
	ctx := context.Background()

	var recs []*kgo.Record
	typeSet := map[string]bool{}
	err := synth.Generate(ctx, synth.Config{Patients: patients, Seed: 1}, func(rt string, line []byte) error {
		typeSet[rt] = true
		recs = append(recs, &kgo.Record{Key: schemas.Key(rt, fastjson.GetString(line, "id")), Value: append([]byte(nil), line...),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderResourceType, Value: []byte(rt)}}})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// dedupe reads its own copy of the valid layer: validate writes to topics.Valid, and
	// its outputs would otherwise grow dedupe's input from round to round.
	dtopics := schemas.MustTopics(c.Prefix + "-dd")
	var all []string
	for rt := range typeSet {
		all = append(all, dtopics.Valid(rt), dtopics.Unique(rt))
		all = append(all, topics.Raw(rt), topics.Valid(rt), topics.Unique(rt),
			c.Prefix+"."+passthrough.Layer+"."+rt, c.Prefix+".bare."+rt)
	}
	// Topics as the runtime creates them: room for the largest record (and batch) a
	// client may produce; the broker default of 1 MB would reject a full batch.
	maxBytes := strconv.Itoa(int(c.Config().MaxRecordBytes))
	created, err := c.Admin(b).CreateTopics(ctx, 3, 1, map[string]*string{"max.message.bytes": &maxBytes}, all...)
	if err == nil {
		err = created.Error()
	}
	if err != nil {
		b.Fatal(err)
	}
	cl := c.Client(b, kgo.ProducerLinger(10*time.Millisecond), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	produced := kgo.AbortingFirstErrPromise(cl)
	for _, layer := range []func(string) string{topics.Raw, topics.Valid, dtopics.Valid} {
		for _, r := range recs {
			rt, _, _ := strings.Cut(string(r.Key), "/")
			cl.Produce(ctx, &kgo.Record{Topic: layer(rt), Key: r.Key, Value: r.Value, Headers: r.Headers}, produced.Promise())
		}
	}
	if err := produced.Err(); err != nil {
		b.Fatal(err)
	}
	adm := c.Admin(b)
	ends := map[string]kadm.ListedOffsets{}
	for _, layer := range []string{schemas.LayerRaw, schemas.LayerValid, "dedupe-input"} {
		var names []string
		for rt := range typeSet {
			if layer == "dedupe-input" {
				names = append(names, dtopics.Valid(rt))
			} else {
				names = append(names, c.Prefix+"."+layer+"."+rt)
			}
		}
		lo := testkafka.EndOffsets(b, adm, names...)
		ends[layer] = lo
		var total int64
		lo.Each(func(o kadm.ListedOffset) { total += o.Offset })
		b.Logf("%s layer: %d records in %d topics", layer, total, len(names))
	}
	b.Logf("input: %d patients, %d resources per layer", patients, len(recs))

	// stage runs def until its group has committed the input layer to its end.
	runStage := func(def stage.Definition, input string) func(b *testing.B, group string) testkafka.CommitProgress {
		return func(b *testing.B, group string) testkafka.CommitProgress {
			def = def.WithGroup(group)
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- runtime.Run(ctx, c.Config(), def, ropts) }()
			m := testkafka.WaitCommitted(b, adm, group, ends[input], done)
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			return m
		}
	}
	type benchCase struct {
		name string
		run  func(b *testing.B, group string, round int) testkafka.CommitProgress
	}
	dedupeDef := dedupe.Definition(dtopics.Topology(schemas.TopologyOptions{}))
	cases := []benchCase{
		{"bare", func(b *testing.B, group string, _ int) testkafka.CommitProgress {
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- bareLoop(ctx, c, topics, group) }()
			m := testkafka.WaitCommitted(b, adm, group, ends[schemas.LayerRaw], done)
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			return m
		}},
		{"passthrough", func(b *testing.B, group string, _ int) testkafka.CommitProgress {
			return runStage(passthrough.Definition(topics, schemas.LayerRaw), schemas.LayerRaw)(b, group)
		}},
		{"validate", func(b *testing.B, group string, _ int) testkafka.CommitProgress {
			return runStage(validate.Definition(topics.Topology(schemas.TopologyOptions{}), validate.Options{}), schemas.LayerRaw)(b, group)
		}},
		{"dedupe", func(b *testing.B, group string, round int) testkafka.CommitProgress {
			def := dedupeDef
			// Every round starts with no state: a changelog of its own.
			def.Node.State = []schemas.TopicSet{schemas.SingleTopic(dtopics.State(fmt.Sprintf("dedupe-%d", round)))}
			return runStage(def, "dedupe-input")(b, group)
		}},
	}
	// Rounds run every case in turn, so that each round's figures share the machine's
	// load of the moment; the medians over rounds are reported, the ratios as medians
	// of each round's ratio.
	rates := map[string][]float64{}
	cpus := map[string][]float64{} // CPU time of this process per input record, start included
	ratios := map[string][]float64{}
	var starts []float64
	if only := os.Getenv("FHIRSTREAM_BENCH_CASES"); only != "" {
		cases = slices.DeleteFunc(cases, func(c benchCase) bool { return !slices.Contains(strings.Split(only, ","), c.name) })
	}
	// Round -1 warms up and is not counted: on a broker started minutes before, the first
	// case to run was twice as slow as in later rounds (the broker's JIT, page cache).
	for round := -1; round < rounds*b.N; round++ {
		rate := map[string]float64{}
		for _, tc := range cases {
			cpu0 := testkafka.ProcessCPU()
			m := tc.run(b, c.Group(fmt.Sprintf("%s-%d", tc.name, round)), round)
			cpu := (testkafka.ProcessCPU() - cpu0).Seconds() * 1e6 / float64(m.Total)
			b.Logf("round %d %-12s %8.0f records/s (%d records in %v after a start of %v), %.1f CPU-µs/record%s", round, tc.name, m.Rate(),
				m.Records, m.Steady.Round(time.Millisecond), m.Start.Round(time.Millisecond), cpu, testkafka.WarmUpNote(round))
			if round < 0 {
				continue
			}
			cpus[tc.name] = append(cpus[tc.name], cpu)
			rate[tc.name] = m.Rate()
			rates[tc.name] = append(rates[tc.name], rate[tc.name])
			starts = append(starts, m.Start.Seconds())
		}
		if round < 0 {
			continue
		}
		ratios["passthrough/bare"] = append(ratios["passthrough/bare"], rate["passthrough"]/rate["bare"])
		ratios["validate/passthrough"] = append(ratios["validate/passthrough"], rate["validate"]/rate["passthrough"])
		ratios["dedupe/passthrough"] = append(ratios["dedupe/passthrough"], rate["dedupe"]/rate["passthrough"])
	}
	for _, tc := range cases {
		b.ReportMetric(testkafka.Median(rates[tc.name]), tc.name+"-rec/s")
		b.ReportMetric(testkafka.Median(cpus[tc.name]), tc.name+"-cpu-µs/rec")
	}
	for name, rs := range ratios {
		b.ReportMetric(testkafka.Median(rs), name)
	}
	b.ReportMetric(testkafka.Median(starts), "start-s")
}

// bareLoop is the baseline: the at-least-once consume-produce loop one would write
// without transactions, with the same connection and fetch settings as the runtime. It
// polls up to 5000 records (the runtime's batch size), produces each to
// <prefix>.bare.<Type> asynchronously, waits for the produce acknowledgements and
// commits the batch's offsets: the least a loop can do without losing records.
func bareLoop(ctx context.Context, c *testkafka.Cluster, t schemas.Topics, group string) error {
	cfg := c.Config()
	cl, err := cfg.NewClient(kgo.ConsumerGroup(group), kgo.ConsumeTopics(t.LayerPattern(schemas.LayerRaw)), kgo.ConsumeRegex(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(ctx, 5000)
		if ctx.Err() != nil {
			return nil
		}
		if err := fs.Err0(); err != nil {
			return err
		}
		var failed error
		fs.EachRecord(func(r *kgo.Record) {
			_, rt, _ := t.ParseLayerTopic(r.Topic)
			cl.Produce(ctx, &kgo.Record{Topic: t.Prefix + ".bare." + rt, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp},
				func(_ *kgo.Record, err error) {
					if err != nil {
						failed = err
					}
				})
		})
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if failed != nil {
			return failed
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
}
