package runtime_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// counter is a stateful test stage: for each input it counts how often its key was
// seen and emits the count; "reject" values are rejected, "panic" values panic and
// "flaky" values fail transiently on their first attempt.
type counter struct {
	out   string
	mu    sync.Mutex
	flaky map[int64]bool
}

func (c *counter) Process(_ context.Context, in *stage.Record, st stage.Store, out stage.Emitter) error {
	switch string(in.Value) {
	case "reject":
		return stage.Reject("bad-value", "Test.value", "value says reject")
	case "panic":
		var nums []int
		_ = nums[len(in.Value)] // an index out of range: a real runtime panic
	case "flaky":
		c.mu.Lock()
		seen := c.flaky[in.Offset]
		c.flaky[in.Offset] = true
		c.mu.Unlock()
		if !seen {
			return errors.New("dependency unavailable")
		}
	}
	n := 0
	if v, ok := st.Get(in.Key); ok {
		n, _ = strconv.Atoi(string(v))
	}
	n++
	st.Put(in.Key, []byte(strconv.Itoa(n)))
	out.Emit(stage.Record{Topic: c.out, Key: in.Key, Value: []byte(strconv.Itoa(n)), Headers: in.Headers})
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor reads topic until it holds n records or the deadline passes.
func waitFor(t *testing.T, c *testkafka.Cluster, n int, topic string) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs := c.ReadAll(t, topic)
		if len(recs) >= n || time.Now().After(deadline) || t.Failed() {
			return recs
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestIntegrationRuntimeStateRejectPanicRetry(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".counted"
	c.CreateTopics(t, 3, in, out)
	proc := &counter{out: out, flaky: map[int64]bool{}}
	def := runtime.Definition{Name: "count", Group: c.Group("count"), Input: topics.LayerPattern(schemas.LayerRaw),
		State: "count", Topics: topics, NewProcessor: func() (stage.Processor, error) { return proc, nil }}
	opts := runtime.Options{Logger: quiet(), RetryBackoff: time.Millisecond, TopicRefresh: time.Second}

	produce := func(values map[string][]string) {
		cl := c.Client(t)
		for key, vs := range values {
			for _, v := range vs {
				r := &kgo.Record{Topic: in, Key: []byte(key), Value: []byte(v),
					Headers: []kgo.RecordHeader{{Key: schemas.HeaderSourceLine, Value: []byte("1")}}}
				if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			err := runtime.Run(ctx, c.Config(), def, opts)
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			done <- err
		}()
		return func() {
			cancel()
			<-done
		}
	}

	produce(map[string][]string{"T/a": {"x", "x", "reject", "x"}, "T/b": {"flaky", "panic", "x"}, "T/c": {"x"}})
	stop := run()
	got := waitFor(t, c, 6, out)
	stop()
	last := map[string]string{}
	for _, r := range got {
		last[string(r.Key)] = string(r.Value)
	}
	if len(got) != 6 || last["T/a"] != "3" || last["T/b"] != "2" || last["T/c"] != "1" {
		t.Fatalf("outputs %d, last counts %v; want 6 outputs, a=3 b=2 c=1", len(got), last)
	}
	dl := c.ReadAll(t, topics.DLQ())
	classes := map[string]int{}
	for _, r := range dl {
		dc, ok := deadletter.Parse(r.Headers)
		if !ok || dc.Stage != "count" || dc.SourceTopic != in || dc.Offset < 0 {
			t.Fatalf("dead letter without proper context: %+v", dc)
		}
		if string(r.Value) != dc.Class && !(dc.Class == "bad-value" && string(r.Value) == "reject") {
			t.Errorf("dead letter %q has class %q", r.Value, dc.Class)
		}
		classes[dc.Class]++
	}
	if len(dl) != 2 || classes["bad-value"] != 1 || classes["panic"] != 1 {
		t.Fatalf("dead letters by class %v, want one bad-value and one panic", classes)
	}

	// A second run, a fresh process as far as the stage knows, continues the counts
	// from the state restored from the changelog.
	produce(map[string][]string{"T/a": {"x"}, "T/c": {"x", "x"}})
	stop = run()
	got = waitFor(t, c, 9, out)
	stop()
	for _, r := range got {
		last[string(r.Key)] = string(r.Value)
	}
	if len(got) != 9 || last["T/a"] != "4" || last["T/c"] != "3" {
		t.Fatalf("after restart: %d outputs, last counts %v; want 9, a=4 c=3", len(got), last)
	}
}
