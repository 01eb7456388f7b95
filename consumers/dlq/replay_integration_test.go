package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationReplayExactlyOnce crashes a replay in the middle of a transaction and
// runs it again: the source topic then holds every dead letter exactly once
// (read_committed), repeat offenders are parked once, records of another stage are
// left alone, and a further run finds nothing left to do.
func TestIntegrationReplayExactlyOnce(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	source := topics.Raw("Patient")
	c.CreateTopics(t, 3, source, topics.DLQ())
	ctx := context.Background()

	// 40 dead letters of validate, every tenth already replayed 3 times (so parked),
	// and 5 of another stage that the filter leaves alone.
	const letters, others = 40, 5
	prod := c.Client(t, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.UnknownTopicRetries(-1)) // the topics were just created: wait for them (bounded by pctx)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i := range letters + others {
		stage := "validate"
		if i >= letters {
			stage = "omop"
		}
		orig := &kgo.Record{Topic: source, Key: []byte(fmt.Sprintf("Patient/p%d", i)), Value: []byte(fmt.Sprintf(`{"n":%d}`, i)),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderResourceType, Value: []byte("Patient")}}, Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
		if i < letters && i%10 == 9 {
			orig.Headers = append(orig.Headers, kgo.RecordHeader{Key: schemas.DLQReplayCount, Value: []byte("3")})
		}
		dl := deadletter.Record(topics.DLQ(), orig, deadletter.Context{Stage: stage, SourceTopic: source, Partition: 0,
			Offset: int64(i), Class: "bad-coding", Message: "test", Attempts: 1})
		if err := prod.ProduceSync(pctx, dl).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	opts := ReplayOptions{Filter: Filter{Stages: []string{"validate"}}, Group: c.Group("replay"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// A first run stops after exactly 10 records, and a record of its first batch fails
	// once, which aborts that batch: it is replayed again, once.
	calls := 0
	testHookBeforeEmit = func() error {
		if calls++; calls == 7 {
			return errors.New("simulated failure")
		}
		return nil
	}
	defer func() { testHookBeforeEmit = nil }()
	first := opts
	first.Max = 10
	res1, err := Replay(ctx, c.Config(), topics, first)
	if err != nil {
		t.Fatal(err)
	}
	if res1.Replayed+res1.Parked != 10 {
		t.Fatalf("a replay limited to 10 reports %d replayed + %d parked", res1.Replayed, res1.Parked)
	}
	if calls < 11 {
		t.Fatalf("the failed batch was not processed again (%d emits tried)", calls)
	}
	res2, err := Replay(ctx, c.Config(), topics, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := res1.Replayed + res2.Replayed; got != 36 {
		t.Fatalf("replayed %d in all, want 36", got)
	}
	if got := res1.Parked + res2.Parked; got != 4 {
		t.Fatalf("parked %d in all, want 4", got)
	}
	res3, err := Replay(ctx, c.Config(), topics, opts)
	if err != nil || res3.Replayed+res3.Parked != 0 {
		t.Fatalf("a finished replay run again did %+v, %v; want nothing", res3, err)
	}

	seen := map[string]int{}
	for _, r := range c.ReadAll(t, source) {
		seen[string(r.Key)]++
		if _, ok := deadletter.Parse(r.Headers); ok {
			t.Errorf("%s: dead-letter context not stripped", r.Key)
		}
		n, _ := strconv.Atoi(string(headerValue(r, schemas.DLQReplayCount)))
		if n != 1 {
			t.Errorf("%s: replay count %d, want 1", r.Key, n)
		}
		if string(headerValue(r, schemas.HeaderResourceType)) != "Patient" {
			t.Errorf("%s: original header lost", r.Key)
		}
	}
	for i := range letters + others {
		key := fmt.Sprintf("Patient/p%d", i)
		want := 1
		if i >= letters || i%10 == 9 {
			want = 0
		}
		if seen[key] != want {
			t.Errorf("%s is in the source topic %d times, want %d", key, seen[key], want)
		}
	}
	if parked := c.ReadAll(t, ParkedTopic(topics)); len(parked) != 4 {
		t.Errorf("parked topic holds %d records, want 4", len(parked))
	}
}

// TestReplayRejectsTooSlowRate: a rate whose interval outlasts any transaction timeout
// is refused before anything is read.
func TestReplayRejectsTooSlowRate(t *testing.T) {
	_, err := Replay(context.Background(), testkafka.New(t).Config(), schemas.MustTopics("x"), ReplayOptions{Rate: 0.001})
	if err == nil {
		t.Fatal("a rate of one record per 1000s was accepted")
	}
}

func headerValue(r *kgo.Record, key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// A replay started while the group coordinator is not yet available (a cluster that has
// just started) waits for it instead of failing.
func TestIntegrationReplayWaitsForTheCoordinator(t *testing.T) {
	c := testkafka.New(t)
	if c.Fake == nil {
		t.Skip("injects coordinator errors into the in-process broker")
	}
	topics := schemas.MustTopics(c.Prefix)
	c.CreateTopics(t, 1, topics.DLQ())
	group := c.Group("replay")
	var refused atomic.Int32 // the control runs on the broker's goroutine
	c.Fake.ControlKey(int16(kmsg.FindCoordinator), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.FindCoordinatorRequest)
		if refused.Load() == 3 || req.Version < 4 || req.CoordinatorType != 0 {
			return nil, nil, false
		}
		c.Fake.KeepControl()
		refused.Add(1)
		resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
		resp.Version = req.Version
		for _, key := range req.CoordinatorKeys {
			co := kmsg.NewFindCoordinatorResponseCoordinator()
			co.Key = key
			co.NodeID = -1
			co.ErrorCode = kerr.CoordinatorNotAvailable.Code
			resp.Coordinators = append(resp.Coordinators, co)
		}
		return resp, nil, true
	})
	from, err := runtime.CommittedOffsets(context.Background(), c.Config(), group, topics.DLQ())
	if err != nil {
		t.Fatalf("start offsets: %v", err)
	}
	if n := refused.Load(); n != 3 {
		t.Fatalf("the coordinator refused %d times, want 3", n)
	}
	if from[0] != 0 {
		t.Fatalf("replay would start at %d, want the log start 0", from[0])
	}
}

// TestReplayRoutesOnlyToThePipeline: --to must be a topic the replay node may write, and
// a letter whose source topic is not one of this pipeline's is parked, not sent there.
func TestIntegrationReplayRoutesOnlyToThePipeline(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	ctx := context.Background()
	if _, err := Replay(ctx, c.Config(), topics, ReplayOptions{To: "some.other.topic"}); err == nil || !strings.Contains(err.Error(), "topology") {
		t.Fatalf("--to outside the pipeline: %v, want a refusal pointing at the topology", err)
	}
	c.CreateTopics(t, 1, topics.DLQ(), topics.Valid("Patient"))
	prod := c.Client(t, kgo.UnknownTopicRetries(-1))
	for i, source := range []string{topics.Valid("Patient"), "elsewhere.raw.Patient"} {
		orig := &kgo.Record{Topic: source, Key: []byte(fmt.Sprintf("Patient/%d", i)), Value: []byte("{}")}
		dl := deadletter.Record(topics.DLQ(), orig, deadletter.Context{Stage: "dedupe", SourceTopic: source, Class: "invalid-json"})
		if err := prod.ProduceSync(ctx, dl).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Replay(ctx, c.Config(), topics, ReplayOptions{Group: c.Group("replay"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil || res.Replayed != 1 || res.Parked != 1 {
		t.Fatalf("replay: %+v, %v; want one replayed and the foreign one parked", res, err)
	}
	if got := c.ReadAll(t, topics.Valid("Patient")); len(got) != 1 || string(got[0].Key) != "Patient/0" {
		t.Fatalf("source topic holds %v", got)
	}
	if got := c.ReadAll(t, ParkedTopic(topics)); len(got) != 1 || string(got[0].Key) != "Patient/1" {
		t.Fatalf("parked topic holds %v", got)
	}
}
