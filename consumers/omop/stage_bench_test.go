package omop_test

// BenchmarkOMOPStage measures the mapping stage on the stage runtime beside the
// pass-through stage reading the same fhir.unique layer in the same run, and reports
// both rates and their ratio (the target: omop/passthrough >= 0.7). Run it on the real broker for figures
// worth reporting (kfake runs in the test process and competes with it for the CPU):
//
//	flock /tmp/fhirstream-bench.lock env FHIRSTREAM_TEST_BROKERS=127.0.0.1:19092 \
//	    go test -run '^$' -bench BenchmarkOMOPStage -benchtime 3x ./consumers/omop
//
// The helpers below (produceSynth, waitCommitted) repeat those of
// consumers/passthrough/bench_test.go; they belong in internal/testkafka.

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

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/passthrough"
	"github.com/fhirstream/fhirstream/consumers/runtime"
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
		recs = append(recs, &kgo.Record{Topic: topics.Unique(rt), Key: schemas.Key(rt, idOf(line)), Value: append([]byte(nil), line...),
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

	runs := 0
	run := func(b *testing.B, def runtime.Definition, group string) (int64, time.Duration) {
		def.Group = group
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- runtime.Run(ctx, c.Config(), def, runtime.Options{Logger: quiet}) }()
		n, took := waitCommitted(b, adm, group, schemas.LayerUnique)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return n, took
	}
	stages := []struct {
		name string
		def  func() runtime.Definition
	}{
		{"passthrough", func() runtime.Definition { return passthrough.Definition(topics, schemas.LayerUnique) }},
		{"omop", func() runtime.Definition {
			p, err := omop.New(omop.Config{Topics: topics})
			if err != nil {
				b.Fatal(err)
			}
			return omop.Definition(p)
		}},
	}
	// The two stages take turns, in alternating order, so that a change in the machine's
	// load during the run weighs on both alike; each run is a new consumer group reading
	// the whole layer from the start.
	var records [2]int64
	var took [2]time.Duration
	for i := 0; i < b.N; i++ {
		for k := range stages {
			j := (k + i) % len(stages)
			runs++
			n, d := run(b, stages[j].def(), c.Group(fmt.Sprintf("%s-%d", stages[j].name, runs)))
			records[j] += n
			took[j] += d
		}
	}
	pass := float64(records[0]) / took[0].Seconds()
	mapped := float64(records[1]) / took[1].Seconds()
	b.ReportMetric(pass, "passthrough-records/s")
	b.ReportMetric(mapped, "omop-records/s")
	b.ReportMetric(mapped/pass, "omop/passthrough")
}

// waitCommitted waits until group has committed every input partition of layer to its
// end. It returns the records committed after the first commit it saw, and the time
// they took, so that the stage's one-time start does not count.
func waitCommitted(b *testing.B, adm *kadm.Client, group, layer string) (int64, time.Duration) {
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	var first time.Time
	var firstCount int64
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the broker's committed offsets
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
