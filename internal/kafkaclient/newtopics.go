package kafkaclient

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// NewTopicGuard closes a race in franz-go (v1.22.3) that can silently lose a transaction.
//
// The first record a client produces to a topic waits for the topic's metadata. When the
// metadata arrives, franz-go hands the waiting records to the partitions' buffers and only
// then (on return, in a defer) publishes the partitions in the map that EndTransaction
// reads. In between, the records can be sent, acknowledged and flushed, and
// EndTransaction can run against a map in which the topic has no partitions yet. Two things
// then go wrong:
//
//   - EndTransaction does not see that a partition joined the transaction. If no other
//     partition did either (the fetcher's first commit writes one state record), it
//     aborts although asked to commit, and returns nil: the caller believes the records
//     committed.
//   - The epoch bump that ends the transaction does not reset those partitions' sequence
//     numbers, so the next transaction's first batch there fails with
//     OUT_OF_ORDER_SEQUENCE_NUMBER, which fails the producer.
//
// The window is microseconds, but a descheduled goroutine (CPU throttling, a loaded
// machine, the race detector) widens it; CI hit both outcomes.
//
// The guard is told the topics a transaction writes to (Note, before producing) and,
// before EndTransaction, waits until the client's map shows the partitions of each topic
// it had not seen before. A topic is checked once per client: a new client needs a new
// guard.
type NewTopicGuard struct {
	known sync.Map // topic → struct{}: partitions published in the client's map

	mu      sync.Mutex
	pending map[string]struct{} // topics noted since the last Await, not yet known
}

// newTopicWait bounds how long Await waits for one topic: far beyond the microseconds the
// publication takes, so that only a client whose metadata broke meanwhile runs into it.
const newTopicWait = 10 * time.Second

// Note records that the open transaction produces to topic. Only topics actually produced
// to may be noted: Await waits for their partitions. It costs a map lookup once a topic
// is known, so it may be called per record.
func (g *NewTopicGuard) Note(topic string) {
	if _, ok := g.known.Load(topic); ok {
		return
	}
	g.mu.Lock()
	if g.pending == nil {
		g.pending = map[string]struct{}{}
	}
	g.pending[topic] = struct{}{}
	g.mu.Unlock()
}

// Await waits until cl's producer has published the partitions of every topic noted
// since the last Await. Call it after a successful Flush and before EndTransaction. A
// topic it could not confirm stays pending for the next Await.
func (g *NewTopicGuard) Await(ctx context.Context, cl *kgo.Client) error {
	g.mu.Lock()
	pending := g.pending
	g.pending = nil
	g.mu.Unlock()
	for topic := range pending {
		if err := awaitPartitions(ctx, cl, topic); err != nil {
			for topic := range pending {
				g.Note(topic)
			}
			return err
		}
		g.known.Store(topic, struct{}{})
		delete(pending, topic)
	}
	return nil
}

// awaitPartitions polls until cl's producer map holds topic's partitions with a leader
// for the first. Records were just acknowledged on the topic, so its metadata had them.
func awaitPartitions(ctx context.Context, cl *kgo.Client, topic string) error {
	deadline := time.Now().Add(newTopicWait)
	for i := 0; ; i++ {
		if leader, _, _ := cl.PartitionLeader(topic, 0); leader >= 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("partitions of %s not published in the producer after %v; not ending the transaction on a partial view", topic, newTopicWait)
		}
		if i < 10 {
			runtime.Gosched() // the publishing goroutine is usually one step away
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
}
