package kafkaclient_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/testkafka"
)

// A transaction whose records are the client's first to their topic commits, and the
// transaction after it writes there again without a sequence error. Without the guard,
// franz-go v1.22.3 can end such a transaction before it has published the topic's
// partitions, and then aborts it although asked to commit (see NewTopicGuard). The race
// needs the publishing goroutine to be descheduled at the wrong moment, so the test runs
// many such first transactions, each to a new topic; on a loaded machine under the race
// detector that lost some without the guard.
func TestIntegrationFirstProduceToTopicCommits(t *testing.T) {
	c := testkafka.New(t)
	const topics = 40
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("%s.first.%d", c.Prefix, i)
	}
	c.CreateTopics(t, 3, names...)
	cl := c.Client(t, kgo.TransactionalID(c.Prefix+"-first"), kgo.TransactionTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var guard kafkaclient.NewTopicGuard
	commit := func(records ...*kgo.Record) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		// Produce and flush at once, as a commit does: the flush sends the records the
		// moment their partitions are known, which is what opens the race.
		promise := kgo.AbortingFirstErrPromise(cl)
		for _, r := range records {
			guard.Note(r.Topic)
			cl.Produce(ctx, r, promise.Promise())
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := promise.Err(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		if err := guard.Await(ctx, cl); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	for _, name := range names {
		commit(&kgo.Record{Topic: name, Key: []byte("first"), Value: []byte("1")})
	}
	// Every topic again, in one transaction: a partition whose sequence numbers were not
	// reset by the epoch bump fails here with OUT_OF_ORDER_SEQUENCE_NUMBER.
	var again []*kgo.Record
	for _, name := range names {
		again = append(again, &kgo.Record{Topic: name, Key: []byte("first"), Value: []byte("2")})
	}
	commit(again...)

	got := map[string]int{}
	for _, r := range c.ReadAll(t, names...) {
		got[r.Topic]++
	}
	for _, name := range names {
		if got[name] != 2 {
			t.Errorf("%s: %d committed records, want 2 (the first transaction was aborted?)", name, got[name])
		}
	}
}
