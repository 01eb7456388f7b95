package passthrough_test

// Throughput benchmarks of the stages on the stage runtime, beside the identity stage on
// the same runtime and a bare franz-go consume-produce loop without transactions. They
// are not part of the default test run. Run them on the real broker for figures worth
// reporting (kfake runs in the test process and competes with it for the CPU):
//
//	FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 go test -run '^$' -bench BenchmarkStages \
//	    -benchtime 1x ./consumers/passthrough
//
// Each reports records/s over the same input: generated Synthea-like resources
// (internal/synth), produced once to the raw and valid layers. The rate is measured
// from the first committed batch to the last, so that the one-time start (topic checks,
// producer id, group join) of a few hundred milliseconds does not dominate.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/passthrough"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

const benchPatients = 100 // about 40k resources

func BenchmarkStages(b *testing.B) {
	c := testkafka.New(b)
	topics := schemas.MustTopics(c.Prefix)
	ctx := context.Background()

	var recs []*kgo.Record
	typeSet := map[string]bool{}
	err := synth.Generate(ctx, synth.Config{Patients: benchPatients, Seed: 1}, func(rt string, line []byte) error {
		typeSet[rt] = true
		id := idOf(line)
		recs = append(recs, &kgo.Record{Key: schemas.Key(rt, id), Value: append([]byte(nil), line...),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderResourceType, Value: []byte(rt)}}})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var all []string
	for rt := range typeSet {
		all = append(all, topics.Raw(rt), topics.Valid(rt), topics.Unique(rt),
			c.Prefix+"."+passthrough.Layer+"."+rt, c.Prefix+".bare."+rt)
	}
	c.CreateTopics(b, 3, all...)
	cl := c.Client(b, kgo.ProducerLinger(10*time.Millisecond))
	for _, layer := range []func(string) string{topics.Raw, topics.Valid} {
		for _, r := range recs {
			rt, _, _ := strings.Cut(string(r.Key), "/")
			cl.Produce(ctx, &kgo.Record{Topic: layer(rt), Key: r.Key, Value: r.Value, Headers: r.Headers}, nil)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	n := len(recs)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	adm := c.Admin(b)

	stage := func(def runtime.Definition, input string) func(b *testing.B, group string) (int64, time.Duration) {
		return func(b *testing.B, group string) (int64, time.Duration) {
			def.Group = group
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- runtime.Run(ctx, c.Config(), def, runtime.Options{Logger: quiet}) }()
			recs, took := waitCommitted(b, adm, group, input)
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			return recs, took
		}
	}
	cases := []struct {
		name string
		run  func(b *testing.B, group string) (int64, time.Duration)
	}{
		{"bare-franz-go", func(b *testing.B, group string) (int64, time.Duration) { return bareLoop(b, c, topics, group, n) }},
		{"passthrough", stage(passthrough.Definition(topics, schemas.LayerRaw), schemas.LayerRaw)},
		{"validate", stage(validate.Definition(topics, validate.Options{}), schemas.LayerRaw)},
		{"dedupe", stage(dedupe.Definition(topics), schemas.LayerValid)},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var total time.Duration
			var records int64
			for i := 0; i < b.N; i++ {
				r, d := tc.run(b, c.Group(fmt.Sprintf("%s-%d", tc.name, i)))
				records += r
				total += d
			}
			b.ReportMetric(float64(records)/total.Seconds(), "records/s")
		})
	}
}

// waitCommitted waits until group has committed every input partition of layer to its
// end: the stage has processed (and, transactionally, published) all of it. It returns
// the records committed after the first commit it saw, and the time they took.
func waitCommitted(b *testing.B, adm *kadm.Client, group, layer string) (int64, time.Duration) {
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	var first time.Time
	var firstCount int64
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		lag, err := adm.Lag(ctx, group)
		if err != nil {
			continue
		}
		gl, ok := lag[group]
		if !ok || gl.FetchErr != nil || len(gl.Lag) == 0 {
			continue
		}
		done, seen := true, 0
		var committed int64
		for topic, parts := range gl.Lag {
			if !strings.Contains(topic, "."+layer+".") {
				continue
			}
			for _, l := range parts {
				seen++
				if l.Commit.At > l.Start.Offset {
					committed += l.Commit.At - l.Start.Offset
				}
				// An empty partition never gets a commit; any other must be committed to its end.
				if l.End.Err != nil || l.End.Offset > l.Start.Offset && l.Commit.At < l.End.Offset {
					done = false
				}
			}
		}
		if committed > 0 && first.IsZero() {
			first, firstCount = time.Now(), committed
		}
		if done && seen > 0 {
			return committed - firstCount, time.Since(first)
		}
	}
	b.Fatalf("group %s did not catch up", group)
	return 0, 0
}

// bareLoop is the baseline: a plain consumer group polling the raw layer and producing
// every record to <prefix>.bare.<Type>, flushing and committing once per poll, with no
// transactions.
func bareLoop(b *testing.B, c *testkafka.Cluster, t schemas.Topics, group string, n int) (int64, time.Duration) {
	cl := c.Client(b, kgo.ConsumerGroup(group), kgo.ConsumeTopics(t.LayerPattern(schemas.LayerRaw)), kgo.ConsumeRegex(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seen := 0
	var first time.Time
	firstCount := 0
	for seen < n {
		fs := cl.PollRecords(ctx, 5000)
		if err := fs.Err0(); err != nil {
			b.Fatalf("bare loop after %d of %d records: %v", seen, n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			_, rt, _ := t.ParseLayerTopic(r.Topic)
			cl.Produce(ctx, &kgo.Record{Topic: t.Prefix + ".bare." + rt, Key: r.Key, Value: r.Value, Headers: r.Headers}, nil)
			seen++
		})
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			b.Fatal(err)
		}
		if first.IsZero() {
			first, firstCount = time.Now(), seen
		}
	}
	took := time.Since(first)
	cl.Close()
	return int64(seen - firstCount), took
}

func idOf(line []byte) string {
	const k = `"id":"`
	s := string(line)
	i := strings.Index(s, k)
	if i < 0 {
		return ""
	}
	s = s[i+len(k):]
	return s[:strings.IndexByte(s, '"')]
}
