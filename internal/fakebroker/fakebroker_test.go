package fakebroker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/fakebroker"
)

// committedRead counts the records a read_committed consumer reads from topic t of c
// with fetches of at most fetchMax bytes, until it has read want or stops finding more.
func committedRead(t *testing.T, c *kfake.Cluster, fetchMax int32, want int) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("t"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(fetchMax), kgo.FetchMaxPartitionBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	for idle := 0; idle < 3 && got <= want; {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if n := fs.NumRecords(); n > 0 {
			got += n
			idle = 0
		} else {
			idle++
		}
	}
	return got
}

// exportWithAbort writes to topic t of c: a committed transaction of 200 records of 1 KB
// into each of its 8 partitions, an aborted one of as many, and a committed one again,
// in batches of 16 KiB (so that fetches end between an aborted transaction's batches).
// It returns the committed records.
func exportWithAbort(t *testing.T, c *kfake.Cluster) int {
	t.Helper()
	ctx := context.Background()
	value := make([]byte, 1000)
	committed := 0
	for txn, commit := range []bool{true, false, true} {
		p, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("fetcher"),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(16<<10))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for part := range int32(8) {
			for i := range 200 {
				p.Produce(ctx, &kgo.Record{Topic: "t", Partition: part, Key: []byte(fmt.Sprintf("%d-%d-%d", txn, part, i)), Value: value}, nil)
			}
		}
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		if commit {
			committed += 8 * 200
		}
		p.Close()
	}
	return committed
}

// A read_committed consumer whose fetches end inside partitions reads exactly the
// committed records from the fake broker: none of the aborted transaction's. (From
// kfake.NewCluster itself it reads 3,400 of 3,200: the aborted records of a partition
// where a fetch ended.)
func TestFetchesEndingInsideAPartitionLeaveAbortedRecordsOut(t *testing.T) {
	c, err := fakebroker.New(kfake.NumBrokers(1), kfake.SeedTopics(8, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := exportWithAbort(t, c)
	// 256 KiB fetches: each ends inside a partition that holds 600 KB.
	if got := committedRead(t, c, 256<<10, want); got != want {
		t.Fatalf("read %d records, want the %d committed", got, want)
	}
}
