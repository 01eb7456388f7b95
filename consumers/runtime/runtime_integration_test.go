package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/internal/testwait"
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

// producer is a client for feeding a topic just created: on a busy broker the new
// topic may take a moment to show in its metadata, which franz-go by default reports
// as UNKNOWN_TOPIC_OR_PARTITION after a few tries instead of waiting.
func producer(t *testing.T, c *testkafka.Cluster) *kgo.Client {
	return c.Client(t, kgo.UnknownTopicRetries(-1), kgo.RecordDeliveryTimeout(time.Minute))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor reads topic until it holds n records or the deadline passes.
func waitFor(t *testing.T, c *testkafka.Cluster, n int, topic string) []*kgo.Record {
	t.Helper()
	var recs []*kgo.Record
	testwait.Until(t, 60*time.Second, fmt.Sprintf("%d records on %s", n, topic), func() bool {
		recs = c.ReadAll(t, topic)
		return len(recs) >= n
	})
	return recs
}

func TestIntegrationRuntimeStateRejectPanicRetry(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".counted"
	c.CreateTopics(t, 3, in, out)
	proc := &counter{out: out, flaky: map[int64]bool{}}
	def := testDefinition(topics, "count", c.Group("count"), topics.LayerTopics(schemas.LayerRaw), out, "count", proc)
	opts := runtime.Options{Logger: quiet(), RetryBackoff: time.Millisecond, TopicRefresh: time.Second}

	produce := func(values map[string][]string) {
		cl := producer(t, c)
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

// TestIntegrationCountCommitted: counts a stage makes with runtime.CountCommitted reach
// the counter only for records of committed batches: not for a rejected record, not
// for a record whose transient failure aborted its batch (it is counted once, when the
// batch is processed again and commits), and they match what the output holds.
func TestIntegrationCountCommitted(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".counted"
	c.CreateTopics(t, 3, in, out)
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_decisions_total", Help: "test"}, []string{"topic", "value"})
	var mu sync.Mutex
	failed := map[int64]bool{}
	proc := stage.ProcessorFunc(func(ctx context.Context, rec *stage.Record, _ stage.Store, em stage.Emitter) error {
		stage.CountCommitted(ctx, decisions, rec.Topic, string(rec.Value))
		switch string(rec.Value) {
		case "reject":
			return stage.Reject("bad-value", "", "value says reject")
		case "flaky":
			mu.Lock()
			seen := failed[rec.Offset]
			failed[rec.Offset] = true
			mu.Unlock()
			if !seen {
				return errors.New("dependency unavailable") // with MaxAttempts 1: the batch aborts
			}
		}
		em.Emit(stage.Record{Topic: out, Key: rec.Key, Value: rec.Value})
		return nil
	})
	def := testDefinition(topics, "tally", c.Group("tally"), schemas.SingleTopic(in), out, "", proc)
	def.ConcurrentPartitions = true
	cl := producer(t, c)
	values := []string{"a", "b", "reject", "flaky", "a", "flaky", "c", "reject", "a"}
	for i, v := range values {
		r := &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("T/%d", i)), Value: []byte(v)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runtime.Run(ctx, c.Config(), def, runtime.Options{Logger: quiet(), MaxAttempts: 1, RetryBackoff: time.Millisecond})
	}()
	got := waitFor(t, c, 7, out)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("%d outputs, want 7", len(got))
	}
	for v, want := range map[string]float64{"a": 3, "b": 1, "c": 1, "flaky": 2, "reject": 0} {
		if n := testutil.ToFloat64(decisions.WithLabelValues(in, v)); n != want {
			t.Errorf("counted %v of %q, want %v", n, v, want)
		}
	}
}

// countedKeys and countedPerKey are the input of runCounting: countedPerKey records of
// each of countedKeys keys.
const countedKeys, countedPerKey = 20, 5

// runCounting feeds in with the counting stage's input, runs def until out holds an
// output for each input record, stops it and returns what Run returned. With
// transactional, each round of keys is produced in a transaction of its own, as a
// stage's input is: a marker then follows each round's records in every partition.
func runCounting(t *testing.T, c *testkafka.Cluster, def stage.Definition, opts runtime.Options, in, out string, transactional bool) error {
	t.Helper()
	var cl *kgo.Client
	if transactional {
		cl = c.Client(t, kgo.TransactionalID(c.Prefix+"-feed"), kgo.UnknownTopicRetries(-1))
	} else {
		cl = producer(t, c)
	}
	ctx := context.Background()
	for range countedPerKey {
		if transactional {
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
		}
		for k := range countedKeys {
			r := &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("T/%d", k)), Value: []byte("x")}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if transactional {
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runtime.Run(ctx, c.Config(), def, opts) }()
	waitFor(t, c, countedKeys*countedPerKey, out)
	cancel()
	return <-done
}

// assertCountedOnce checks, once the counting stage has stopped, that out holds every
// key counted 1..countedPerKey exactly once and nothing else: a batch processed again
// after its commit shows counts twice (from a rolled-back state) or past countedPerKey
// (from the committed one), and a lost state change restarts a count at 1.
func assertCountedOnce(t *testing.T, c *testkafka.Cluster, out string) {
	t.Helper()
	all := c.ReadAll(t, out)
	seen := map[string]map[string]int{}
	for _, r := range all {
		if seen[string(r.Key)] == nil {
			seen[string(r.Key)] = map[string]int{}
		}
		seen[string(r.Key)][string(r.Value)]++
	}
	if len(all) != countedKeys*countedPerKey || len(seen) != countedKeys {
		t.Fatalf("%d outputs for %d keys, want %d for %d", len(all), len(seen), countedKeys*countedPerKey, countedKeys)
	}
	for key, counts := range seen {
		for n := 1; n <= countedPerKey; n++ {
			if counts[strconv.Itoa(n)] != 1 {
				t.Fatalf("key %s: counts %v, want each of 1..%d once", key, counts, countedPerKey)
			}
		}
	}
}

// TestSessionRestartAfterFailedCommit: when ending a transaction fails (here kfake
// answers one EndTxn with INVALID_TXN_STATE; on a real cluster, a broker restart
// mid-commit), the stage starts a new transactional session instead of exiting, and
// its outputs and state still come out exactly once. kfake only: a real broker cannot
// be made to fail one request. (It takes the transaction timeout: kfake releases the
// broken transaction's pending offset commit only then, and the new session's stable
// offset fetch waits for that.)
func TestSessionRestartAfterFailedCommit(t *testing.T) {
	c := testkafka.New(t)
	if c.Fake == nil {
		t.Skip("needs kfake to fail a request")
	}
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".counted"
	c.CreateTopics(t, 3, in, out)
	proc := &counter{out: out, flaky: map[int64]bool{}}
	def := testDefinition(topics, "restart", c.Group("restart"), topics.LayerTopics(schemas.LayerRaw), out, "restart", proc)
	// A short transaction timeout: kfake releases the broken transaction's pending
	// offset commit only when it times out.
	opts := runtime.Options{Logger: quiet(), RetryBackoff: time.Millisecond, TopicRefresh: time.Second,
		TransactionTimeout: 3 * time.Second}

	var failed atomic.Int32
	c.Fake.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || failed.Load() > 0 {
			return nil, nil, false
		}
		failed.Add(1)
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})

	if err := runCounting(t, c, def, opts, in, out, false); err != nil {
		t.Fatalf("Run ended with %v; want it to recover from the failed commit", err)
	}
	if failed.Load() != 1 {
		t.Fatalf("the EndTxn failure was injected %d times, want 1", failed.Load())
	}
	assertCountedOnce(t, c, out)
}

// TestCommitReportedAbortedIsNotRepeated: when the broker commits a transaction but its
// EndTxn answer is UNKNOWN_SERVER_ERROR, franz-go reports the batch aborted (it cannot
// confirm the commit) and rewinds to the offsets it last saw committed. The stage must
// learn the outcome from the broker instead of processing the batch again: otherwise
// its outputs come out twice and its state counts them twice. The input is produced in
// transactions, as a stage's is (markers between its records). kfake only: the control has kfake commit the transaction (through a second EndTxn)
// and answers the stage's own EndTxn with the error, which a real broker cannot be made
// to do.
func TestCommitReportedAbortedIsNotRepeated(t *testing.T) {
	c := testkafka.New(t)
	if c.Fake == nil {
		t.Skip("needs kfake to answer a request that it carried out with an error")
	}
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".counted"
	c.CreateTopics(t, 3, in, out)
	proc := &counter{out: out, flaky: map[int64]bool{}}
	def := testDefinition(topics, "unconfirmed", c.Group("unconfirmed"), topics.LayerTopics(schemas.LayerRaw), out, "unconfirmed", proc)
	opts := runtime.Options{Logger: quiet(), RetryBackoff: time.Millisecond, TopicRefresh: time.Second}

	raw := c.Client(t)
	const (
		ctlWaiting    = iota
		ctlCommitting // the control's own EndTxn, which kfake carries out
		ctlDone
	)
	var state atomic.Int32
	var rawErr atomic.Value
	c.Fake.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || end.TransactionalID == c.Prefix+"-feed" || !state.CompareAndSwap(ctlWaiting, ctlCommitting) {
			return nil, nil, false
		}
		c.Fake.SleepControl(func() {
			commit := kmsg.NewPtrEndTxnRequest()
			commit.TransactionalID, commit.ProducerID, commit.ProducerEpoch, commit.Commit = end.TransactionalID, end.ProducerID, end.ProducerEpoch, true
			resp, err := commit.RequestWith(context.Background(), raw)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			if err != nil {
				rawErr.Store(err)
			}
		})
		state.Store(ctlDone)
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})

	if err := runCounting(t, c, def, opts, in, out, true); err != nil {
		t.Fatalf("Run ended with %v; want it to go on after the unconfirmed commit", err)
	}
	if state.Load() != ctlDone {
		t.Fatal("no commit was answered with UNKNOWN_SERVER_ERROR")
	}
	if err := rawErr.Load(); err != nil {
		t.Fatalf("the control's EndTxn, which should have committed the transaction: %v", err)
	}
	assertCountedOnce(t, c, out)
}

// TestIntegrationAbortRollsBackState: state changes of records processed before a batch
// aborts are undone, so the records processed again count from the committed state and
// every output comes out once with the right count; a restart restores the same state
// from the changelog.
func TestIntegrationAbortRollsBackState(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".counted"
	c.CreateTopics(t, 1, in, out)
	var mu sync.Mutex
	var attempts []string // key=count as computed, in processing order, across attempts
	inner := &counter{out: out, flaky: map[int64]bool{}}
	proc := stage.ProcessorFunc(func(ctx context.Context, rec *stage.Record, st stage.Store, em stage.Emitter) error {
		err := inner.Process(ctx, rec, st, spy{em, func(r stage.Record) {
			mu.Lock()
			attempts = append(attempts, string(r.Key)+"="+string(r.Value))
			mu.Unlock()
		}})
		return err
	})
	def := testDefinition(topics, "count", c.Group("count"), schemas.SingleTopic(in), out, "count", proc)
	opts := runtime.Options{Logger: quiet(), MaxAttempts: 1, RetryBackoff: time.Millisecond}
	cl := producer(t, c)
	// One partition, produced before the stage starts: the first batch holds all of it,
	// changes a's and b's state, then aborts at the flaky record (MaxAttempts 1).
	for _, kv := range [][2]string{{"T/a", "x"}, {"T/b", "x"}, {"T/a", "x"}, {"T/a", "flaky"}, {"T/b", "x"}} {
		r := &kgo.Record{Topic: in, Key: []byte(kv[0]), Value: []byte(kv[1])}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	runOnce := func(want int) []*kgo.Record {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runtime.Run(ctx, c.Config(), def, opts) }()
		got := waitFor(t, c, want, out)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := runOnce(5)
	var values []string
	for _, r := range got {
		values = append(values, string(r.Key)+"="+string(r.Value))
	}
	if want := "T/a=1 T/b=1 T/a=2 T/a=3 T/b=2"; strings.Join(values, " ") != want {
		t.Fatalf("outputs %q, want %q", values, want)
	}
	mu.Lock()
	seq := strings.Join(attempts, " ")
	mu.Unlock()
	if want := "T/a=1 T/b=1 T/a=2 T/a=1 T/b=1 T/a=2 T/a=3 T/b=2"; seq != want {
		t.Fatalf("processing sequence %q, want %q (the first batch aborted after changing state, then processed again from the committed state)", seq, want)
	}

	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: in, Key: []byte("T/a"), Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got = runOnce(6)
	if len(got) != 6 || string(got[5].Value) != "4" {
		t.Fatalf("after restart: %d outputs, last %q; want 6, T/a=4", len(got), got[len(got)-1].Value)
	}
}

// spy is an Emitter that reports each output to seen before passing it on.
type spy struct {
	stage.Emitter
	seen func(stage.Record)
}

func (s spy) Emit(r stage.Record) {
	s.seen(r)
	s.Emitter.Emit(r)
}

// TestIntegrationRecordOverPartitionFetchSize: a record larger than the consumer's
// per-partition fetch size (256 KiB, kafkaclient.Config.Opts) but within the record limit
// still reaches the stage, whole, while other partitions keep every fetch busy: Kafka
// returns an oversized first batch of a partition rather than none (KIP-74), so the
// fetch size spreads batches over partitions without stranding large resources.
func TestIntegrationRecordOverPartitionFetchSize(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Binary"), c.Prefix+".copied"
	limit := strconv.Itoa(int(c.Config().MaxRecordBytes))
	ctx := context.Background()
	resp, err := c.Admin(t).CreateTopics(ctx, 3, 1, map[string]*string{"max.message.bytes": &limit}, in, out)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := kafkaclient.WaitTopicsVisible(ctx, c.Admin(t), []string{in, out}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	cl := producer(t, c)
	promise := kgo.AbortingFirstErrPromise(cl)
	const small = 3000 // per partition, about 1.5 MiB each: more than one fetch's worth
	filler := []byte(strings.Repeat("x", 500))
	for p := range int32(3) {
		for i := range small {
			if p == 0 && i == small/2 {
				cl.Produce(ctx, &kgo.Record{Topic: in, Partition: p, Key: []byte("Binary/big"), Value: big}, promise.Promise())
			}
			cl.Produce(ctx, &kgo.Record{Topic: in, Partition: p, Key: []byte(fmt.Sprintf("Binary/%d-%d", p, i)), Value: filler}, promise.Promise())
		}
	}
	if err := promise.Err(); err != nil {
		t.Fatal(err)
	}
	proc := stage.ProcessorFunc(func(_ context.Context, rec *stage.Record, _ stage.Store, em stage.Emitter) error {
		em.Emit(stage.Record{Topic: out, Key: rec.Key, Value: rec.Value})
		return nil
	})
	def := testDefinition(topics, "copy", c.Group("copy"), schemas.SingleTopic(in), out, "", proc)
	def.ConcurrentPartitions = true
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runtime.Run(rctx, c.Config(), def, runtime.Options{Logger: quiet()}) }()
	want := 3*small + 1
	got := waitFor(t, c, want, out)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != want {
		t.Fatalf("%d records copied, want %d", len(got), want)
	}
	found := false
	for _, r := range got {
		if string(r.Key) == "Binary/big" {
			found = true
			if !bytes.Equal(r.Value, big) {
				t.Fatalf("the large record arrived with %d bytes, want its %d bytes unchanged", len(r.Value), len(big))
			}
		}
	}
	if !found {
		t.Fatal("the large record was not copied")
	}
}

// testDefinition declares a test stage reading in, writing out (and dead letters), with
// the changelog topics.State(state) unless state is "".
func testDefinition(topics schemas.Topics, name, group string, in schemas.TopicSet, out, state string, proc stage.Processor) stage.Definition {
	var states []schemas.TopicSet
	if state != "" {
		states = append(states, schemas.SingleTopic(topics.State(state)))
	}
	node := topics.StageNode(name, "test stage", in, schemas.SingleTopic(out), states...)
	def := stage.Definition{Node: node, Topics: topics, NewProcessor: func() (stage.Processor, error) { return proc, nil }}
	return def.WithGroup(group)
}

// TestIntegrationUndeclaredOutputIsRefused: a record to a topic the stage's node does not
// declare is never produced; its input is dead-lettered as a stage bug, and records to
// the declared output flow on.
func TestIntegrationUndeclaredOutputIsRefused(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out, stray := topics.Raw("Thing"), c.Prefix+".declared", c.Prefix+".stray"
	c.CreateTopics(t, 1, in, out, stray)
	proc := stage.ProcessorFunc(func(_ context.Context, rec *stage.Record, _ stage.Store, em stage.Emitter) error {
		topic := out
		if string(rec.Value) == "stray" {
			topic = stray
		}
		em.Emit(stage.Record{Topic: topic, Key: rec.Key, Value: rec.Value})
		return nil
	})
	def := testDefinition(topics, "declared", c.Group("declared"), schemas.SingleTopic(in), out, "", proc)
	cl := producer(t, c)
	ctx := context.Background()
	for i, v := range []string{"a", "stray", "b"} {
		rec := &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("Thing/%d", i)), Value: []byte(v)}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runtime.Run(rctx, c.Config(), def, runtime.Options{Logger: quiet()}) }()
	got := waitFor(t, c, 2, out)
	dead := waitFor(t, c, 1, topics.DLQ())
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Value) != "a" || string(got[1].Value) != "b" {
		t.Fatalf("declared output holds %v, want a and b", got)
	}
	dc, ok := deadletter.Parse(dead[0].Headers)
	if !ok || dc.Class != schemas.ClassStageBug || !strings.Contains(dc.Message, stray) || string(dead[0].Value) != "stray" {
		t.Fatalf("dead letter %q with context %+v, want the stray input as a stage bug naming %s", dead[0].Value, dc, stray)
	}
	if n := len(waitFor(t, c, 0, stray)); n != 0 {
		t.Fatalf("%d records reached the undeclared topic", n)
	}
}

// TestIntegrationDrainAndNextBatch: a draining run ends by itself once it has committed
// what its partitions held when it started, and a second run takes only what came later;
// NextBatch stops a run after an exact number of committed records.
func TestIntegrationDrainAndNextBatch(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".drained"
	c.CreateTopics(t, 3, in, out)
	cl := producer(t, c)
	ctx := context.Background()
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			rec := &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("Thing/%d", i)), Value: []byte(strconv.Itoa(i))}
			if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	copied := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "copied"}, []string{"topic"})
	proc := stage.ProcessorFunc(func(ctx context.Context, rec *stage.Record, _ stage.Store, em stage.Emitter) error {
		stage.CountCommitted(ctx, copied, rec.Topic)
		em.Emit(stage.Record{Topic: out, Key: rec.Key, Value: rec.Value})
		return nil
	})
	def := testDefinition(topics, "drain", c.Group("drain"), schemas.SingleTopic(in), out, "", proc)
	run := func(opts runtime.Options) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		opts.Logger = quiet()
		if err := runtime.Run(rctx, c.Config(), def, opts); err != nil || rctx.Err() != nil {
			t.Fatalf("run: %v (context: %v)", err, rctx.Err())
		}
	}
	produce(0, 50)
	run(runtime.Options{Drain: true})
	if n := len(c.ReadAll(t, out)); n != 50 {
		t.Fatalf("first draining run copied %d records, want 50", n)
	}
	produce(50, 80)
	run(runtime.Options{Drain: true})
	if n := len(c.ReadAll(t, out)); n != 80 {
		t.Fatalf("second draining run: %d records copied in all, want 80", n)
	}

	// Exactly 7 more, in batches of at most what is left, counted only once committed.
	produce(80, 100)
	start := testutil.ToFloat64(copied.WithLabelValues(in))
	run(runtime.Options{MaxPollRecords: 3, BatchLinger: -1, NextBatch: func() int {
		return 7 - int(testutil.ToFloat64(copied.WithLabelValues(in))-start)
	}})
	if n := len(c.ReadAll(t, out)); n != 87 {
		t.Fatalf("a run limited to 7 records: %d copied in all, want 87", n)
	}
	lag, err := c.Admin(t).Lag(ctx, def.Node.Group)
	if err != nil {
		t.Fatal(err)
	}
	if got := lag[def.Node.Group].Lag.Total(); got != 13 {
		t.Fatalf("group lag %d after the limited run, want the 13 records left", got)
	}
}

// TestIntegrationOutputWithASmallerRecordLimitStopsTheStage: an output topic someone
// created with the broker's default max.message.bytes would refuse the producer's larger
// batches (MESSAGE_TOO_LARGE), so every transaction would abort and be redone; the stage
// stops instead, with an error naming the topic and its limit, before producing a record.
func TestIntegrationOutputWithASmallerRecordLimitStopsTheStage(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".small"
	c.CreateTopics(t, 1, in)
	ctx := context.Background()
	limit := "1048588" // Kafka's default message.max.bytes
	resp, err := c.Admin(t).CreateTopics(ctx, 1, 1, map[string]*string{"max.message.bytes": &limit}, out)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := kafkaclient.WaitTopicsVisible(ctx, c.Admin(t), []string{out}); err != nil {
		t.Fatal(err)
	}
	cl := producer(t, c)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: in, Key: []byte("Thing/1"), Value: []byte(`{}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	proc := stage.ProcessorFunc(func(_ context.Context, rec *stage.Record, _ stage.Store, em stage.Emitter) error {
		em.Emit(stage.Record{Topic: out, Key: rec.Key, Value: rec.Value})
		return nil
	})
	def := testDefinition(topics, "copy", c.Group("copy"), schemas.SingleTopic(in), out, "", proc)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = runtime.Run(rctx, c.Config(), def, runtime.Options{Logger: quiet()})
	if !errors.Is(err, kafkaclient.ErrTopicRecordLimit) || !strings.Contains(err.Error(), out+" accepts record batches of at most 1048588 bytes") {
		t.Fatalf("Run returned %v, want the output topic's limit named", err)
	}
	if n := len(c.ReadAll(t, out)); n != 0 {
		t.Fatalf("%d records reached the topic", n)
	}
}
