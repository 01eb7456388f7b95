package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// settleTimeout bounds how long ReadCommitted waits for open transactions to end. A
// transaction left open by a dead producer ends when the broker aborts it: after the
// transaction timeout of the stages and the fetcher (30 s), at the broker's next check
// for timed-out transactions, which runs every 10 s by default
// (transaction.abort.timed.out.transaction.cleanup.interval.ms). Waiting only the 30 s
// failed CI's dedupe kill test: a killed instance's transaction was aborted after the
// reader had given up.
const settleTimeout = 30*time.Second + 10*time.Second + 5*time.Second

// ReadCommitted reads every committed record of topics, from the start up to each
// partition's end, and calls each for every data record (transaction markers are
// skipped). Missing topics read as empty. It is how the demo and the tests count what a
// stage wrote, independently of the stage.
//
// It first waits until no partition has an open transaction (its last stable offset has
// reached its end): a producer's commit returns before the broker has written the commit
// markers into every partition, and until then a committed read would stop short of
// records that are, in fact, committed. An open transaction still there after
// settleTimeout is an error naming the partition.
func ReadCommitted(ctx context.Context, cfg Config, topics []string, each func(*kgo.Record)) error {
	if len(topics) == 0 {
		return nil
	}
	admCl, err := cfg.NewClient()
	if err != nil {
		return err
	}
	defer admCl.Close()
	ends, err := settledEnds(ctx, kadm.NewClient(admCl), topics)
	if err != nil {
		return err
	}
	until := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset <= 0 {
			return // a missing topic or an empty partition
		}
		if until[o.Topic] == nil {
			until[o.Topic] = map[int32]int64{}
		}
		until[o.Topic][o.Partition] = o.Offset
	})
	err = ReadPartitions(ctx, cfg, nil, until, func(r *kgo.Record) (bool, error) {
		if !r.Attrs.IsControl() {
			each(r)
		}
		return true, nil
	}, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return fmt.Errorf("reading %v up to their stable offsets: %w", topics, err)
	}
	return nil
}

// ReadPartitions reads each partition in until from its offset in from (from the log
// start when from is nil or has no offset for it) up to its offset in until, and calls
// each for every record in between, transaction markers included: a partition ending in
// a marker is only seen to be read to its end through the marker. opts add to the
// reading client's options, such as the isolation level (read_uncommitted by default).
// each returns false to end the read early, or an error to end it with that error. The
// read also ends when ctx does, with an error naming how many partitions were not read
// to their end.
func ReadPartitions(ctx context.Context, cfg Config, from, until map[string]map[int32]int64,
	each func(*kgo.Record) (bool, error), opts ...kgo.Opt) error {
	remaining := map[string]map[int32]int64{}
	assign := map[string]map[int32]kgo.Offset{}
	n := 0
	for topic, parts := range until {
		for p, end := range parts {
			start, ok := from[topic][p] // 0 without one: the log start is at or after it
			if end <= start {
				continue
			}
			if remaining[topic] == nil {
				remaining[topic], assign[topic] = map[int32]int64{}, map[int32]kgo.Offset{}
			}
			remaining[topic][p] = end
			if ok {
				assign[topic][p] = kgo.NewOffset().At(start)
			} else {
				assign[topic][p] = kgo.NewOffset().AtStart()
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	cl, err := cfg.NewClient(append([]kgo.Opt{kgo.ConsumePartitions(assign), kgo.KeepControlRecords()}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for n > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%d partitions not read to their end: %w", n, err)
		}
		var fetchErr error
		fs.EachError(func(topic string, p int32, err error) {
			fetchErr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
		})
		if fetchErr != nil {
			return fetchErr
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			end, ok := remaining[r.Topic][r.Partition]
			if !ok {
				continue
			}
			if r.Offset < end {
				if more, err := each(r); err != nil || !more {
					return err
				}
			}
			if r.Offset+1 >= end {
				delete(remaining[r.Topic], r.Partition)
				n--
			}
		}
	}
	return nil
}

// settledEnds returns the last stable offsets of topics once each equals its partition's
// end offset, polling until then (at most settleTimeout).
func settledEnds(ctx context.Context, adm *kadm.Client, topics []string) (kadm.ListedOffsets, error) {
	deadline := time.Now().Add(settleTimeout)
	for {
		stable, err1 := adm.ListCommittedOffsets(ctx, topics...)
		ends, err2 := adm.ListEndOffsets(ctx, topics...)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("list offsets: %w", err)
		}
		open := ""
		ends.Each(func(e kadm.ListedOffset) {
			if s, ok := stable.Lookup(e.Topic, e.Partition); e.Err == nil && (!ok || s.Offset < e.Offset) {
				open = fmt.Sprintf("%s/%d", e.Topic, e.Partition)
			}
		})
		if open == "" {
			return stable, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("partition %s still has an open transaction after %s", open, settleTimeout)
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for open transactions on %s to end: %w", open, ctx.Err())
		case <-t.C:
		}
	}
}
