package runtime_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationConcurrentRecordsKeepPartitionOrder: a stateless stage declaring
// ConcurrentRecords has one partition's records processed by several goroutines, and
// still every output partition and the dead-letter topic receive their records in input
// order, each once. The first record is held until a record of a later run has been
// processed, so later runs finish first and must wait for their turn to be produced.
func TestIntegrationConcurrentRecordsKeepPartitionOrder(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	in, out := topics.Raw("Thing"), c.Prefix+".ordered"
	c.CreateTopics(t, 1, in)
	c.CreateTopics(t, 3, out)
	c.CreateTopics(t, 1, topics.DLQ())
	const n, heldUntil = 3000, 1500
	rejected := func(i int) bool { return i%97 == 5 }

	var inFlight, maxInFlight atomic.Int64
	// Record 0 and the first record from heldUntil on wait for each other, so that when
	// runs are made both are in flight at once whatever the scheduler does: a check of
	// in-flight records alone would depend on the first run's worker being scheduled before
	// the other worker has gone through the later runs.
	zeroStarted, laterDone := make(chan struct{}), make(chan struct{})
	var zeroOnce, laterOnce atomic.Bool
	var held atomic.Bool // the first record waited until a later run's record was processed
	proc := stage.ProcessorFunc(func(_ context.Context, rec *stage.Record, _ stage.Store, em stage.Emitter) error {
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); now > m && !maxInFlight.CompareAndSwap(m, now); m = maxInFlight.Load() {
		}
		i, err := strconv.Atoi(string(rec.Value))
		if err != nil {
			return stage.Reject("bad-value", "", "value %q is not a number", rec.Value)
		}
		switch {
		case i == 0 && zeroOnce.CompareAndSwap(false, true):
			close(zeroStarted)
			select {
			case <-laterDone:
				held.Store(true)
			case <-time.After(20 * time.Second):
				// No later run was processed meanwhile: the assertion on held fails.
			}
		case i >= heldUntil && laterOnce.CompareAndSwap(false, true):
			select {
			case <-zeroStarted:
			case <-time.After(20 * time.Second):
				// Record 0 never started while this one waited: held stays false.
			}
			close(laterDone)
		}
		if rejected(i) {
			return stage.Reject("odd-one", "", "record %d is refused", i)
		}
		em.Emit(stage.Record{Topic: out, Key: rec.Key, Value: rec.Value})
		return nil
	})
	def := testDefinition(topics, "ordered", c.Group("ordered"), schemas.SingleTopic(in), out, "", proc)
	def.ConcurrentPartitions, def.ConcurrentRecords = true, true

	// The whole input is there before the stage starts, so that its first batch is large
	// enough to be split into runs.
	cl := producer(t, c)
	ctx := context.Background()
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("Thing/%d", i%40)), Value: []byte(strconv.Itoa(i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := runtime.Run(rctx, c.Config(), def, runtime.Options{Logger: quiet(), Drain: true, PartitionWorkers: 2, MaxPollRecords: n})
	if err != nil || rctx.Err() != nil {
		t.Fatalf("run: %v (context: %v)", err, rctx.Err())
	}
	if !held.Load() {
		t.Fatal("the first record was not held while a later run was processed: no runs were made")
	}
	if maxInFlight.Load() < 2 {
		t.Fatalf("at most %d records of the one input partition were processed at once, want 2", maxInFlight.Load())
	}

	last := map[int32]int{} // output partition → last value read
	seen := map[int]bool{}
	for _, r := range c.ReadAll(t, out) {
		i, _ := strconv.Atoi(string(r.Value))
		if prev, ok := last[r.Partition]; ok && i <= prev {
			t.Fatalf("output partition %d: %d after %d, out of input order", r.Partition, i, prev)
		}
		last[r.Partition] = i
		if seen[i] || rejected(i) {
			t.Fatalf("record %d on the output twice, or rejected and still output", i)
		}
		seen[i] = true
	}
	dead := c.ReadAll(t, topics.DLQ())
	prev := -1
	for _, r := range dead {
		i, _ := strconv.Atoi(string(r.Value))
		dc, ok := deadletter.Parse(r.Headers)
		if !ok || !rejected(i) || i <= prev || dc.Class != "odd-one" {
			t.Fatalf("dead letter %d (after %d) with context %+v: not a refused record, or out of order", i, prev, dc)
		}
		prev = i
		seen[i] = true
	}
	t.Logf("%d records out, %d dead letters, at most %d at once", len(seen)-len(dead), len(dead), maxInFlight.Load())
	if len(seen) != n {
		t.Fatalf("%d of %d records reached the output or the dead-letter topic", len(seen), n)
	}
}
