package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// errCommittedUnreported is the session failure of a batch that franz-go reported
// aborted although the broker committed it.
var errCommittedUnreported = errors.New("the broker committed a transaction the client reported aborted")

// committedAfterAll tells whether the batch's transaction committed after
// GroupTransactSession.End reported it aborted without an error, when it had been asked
// to commit. End reports so both for a real abort (the group rebalanced or a heartbeat
// failed, so it aborted instead) and for a commit whose outcome it could not confirm
// (EndTxn answered UNKNOWN_SERVER_ERROR: franz-go then aborts what is left, which does
// nothing to a transaction the coordinator already committed, and rewinds the session
// to the offsets it last saw committed). Processing the batch again after a commit
// would produce its outputs twice and count its state changes twice, so the outcome is
// read from the broker: the group's committed offsets, fetched stable (after the
// transaction's markers), are at the batch's end (franz-go commits the offset after the
// last record polled) on every partition this instance still owns when the transaction
// committed, and at or before the batch's first records when it aborted. Anything else
// is an error, and the session restarts. Revoked partitions are left out: their store
// is dropped and their new owner reads the committed offsets itself.
func (r *runner) committedAfterAll(ctx context.Context, fetches kgo.Fetches) (bool, error) {
	type span struct{ first, next int64 }
	batch := map[tp]span{}
	r.mu.Lock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		k := tp{p.Topic, p.Partition}
		if len(p.Records) == 0 || r.revoked[k] {
			return
		}
		s, seen := batch[k] // a lingering batch may hold several fetches of a partition
		if !seen {
			s.first = p.Records[0].Offset
		}
		s.next = p.Records[len(p.Records)-1].Offset + 1
		batch[k] = s
	})
	r.mu.Unlock()
	if len(batch) == 0 {
		return false, nil
	}
	for {
		resp, err := r.adm.FetchOffsets(kadm.RequireStable(ctx), r.def.Node.Group)
		unstable := false
		if err == nil {
			committed, aborted := 0, 0
			for k, s := range batch {
				o, ok := resp.Lookup(k.topic, k.partition)
				switch {
				case ok && errors.Is(o.Err, kerr.UnstableOffsetCommit):
					unstable = true
				case ok && o.Err != nil:
					err = fmt.Errorf("%s/%d: %w", k.topic, k.partition, o.Err)
				case ok && o.At >= s.next:
					committed++
				case !ok || o.At <= s.first:
					aborted++
				}
			}
			switch {
			case err != nil || unstable:
			case committed == len(batch):
				return true, nil
			case aborted == len(batch):
				return false, nil
			default:
				return false, fmt.Errorf("the group's committed offsets are past the batch on %d of its %d partitions, before it on %d",
					committed, len(batch), aborted)
			}
		}
		if err != nil && !errors.Is(err, kerr.UnstableOffsetCommit) {
			return false, fmt.Errorf("committed offsets of group %s: %w", r.def.Node.Group, err)
		}
		// The transaction's markers are still being written (or were lost: then this
		// waits until ctx ends, and the session restarts).
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("committed offsets of group %s stay unstable: %w", r.def.Node.Group, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
