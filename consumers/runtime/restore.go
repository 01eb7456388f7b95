package runtime

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

// restoreTimeout bounds one restore.
const restoreTimeout = 2 * time.Minute

// restoreMissing restores the store of every partition in fetches that has none yet,
// and with them those of every other partition assigned to this instance that has none:
// input topics share changelog partitions, so restoring them together reads each
// changelog partition once instead of once per input partition as its records arrive.
//
// The changelog partition is read with read_committed up to its high watermark at the
// start of the restore; records of open transactions below that mark (a previous
// owner's last batch) are waited for, so the restore never stops short at a last stable
// offset held back by another transaction, and sees the previous owner's final state.
// (A partition is assigned here only after its previous owner's session has ended the
// transaction it was in, or been fenced out of the group, which aborts it.)
func (r *runner) restoreMissing(ctx context.Context, fetches kgo.Fetches) error {
	missing := map[int32]map[string]stage.Store{} // changelog partition → input topic → store
	var keys []tp
	r.mu.Lock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		k := tp{p.Topic, p.Partition}
		if len(p.Records) == 0 || r.stores[k] != nil {
			return
		}
		keys = append(keys, k)
	})
	if len(keys) > 0 {
		for k := range r.assigned {
			if r.stores[k] == nil && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	r.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	start := time.Now()
	// A restore that cannot reach the end (a broker problem) fails the batch, which is
	// retried, rather than hanging the stage.
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	newStore := r.def.NewStore
	if newStore == nil {
		newStore = NewMapStore
	}
	stores := map[tp]stage.Store{}
	for _, k := range keys {
		cp := k.partition % r.changelogParts
		if missing[cp] == nil {
			missing[cp] = map[string]stage.Store{}
		}
		s := newStore()
		missing[cp][k.topic] = s
		stores[k] = s
	}
	n, err := r.readChangelog(ctx, missing)
	if err != nil {
		return err
	}
	r.mu.Lock()
	for k, s := range stores {
		r.stores[k] = s
	}
	r.mu.Unlock()
	mRestoreSeconds.WithLabelValues(r.def.Name()).Observe(time.Since(start).Seconds())
	mRestoredEntries.WithLabelValues(r.def.Name()).Add(float64(n))
	r.opts.Logger.Info("restored state", "stage", r.def.Name(), "partitions", len(keys), "changelog_records", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// readChangelog replays changelog partitions into the stores of want and returns the
// number of records read.
func (r *runner) readChangelog(ctx context.Context, want map[int32]map[string]stage.Store) (int, error) {
	starts, err := r.adm.ListStartOffsets(ctx, r.changelog)
	if err != nil {
		return 0, fmt.Errorf("changelog %s start offsets: %w", r.changelog, err)
	}
	ends, err := r.adm.ListEndOffsets(ctx, r.changelog)
	if err != nil {
		return 0, fmt.Errorf("changelog %s end offsets: %w", r.changelog, err)
	}
	until := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	for cp := range want {
		end, ok := ends.Lookup(r.changelog, cp)
		if !ok || end.Err != nil {
			return 0, fmt.Errorf("changelog %s partition %d: no end offset (%v)", r.changelog, cp, errOf(end))
		}
		st, ok := starts.Lookup(r.changelog, cp)
		if ok && st.Err == nil && st.Offset >= end.Offset {
			continue // empty
		}
		until[cp] = end.Offset
		assign[cp] = kgo.NewOffset().AtStart()
	}
	if len(until) == 0 {
		return 0, nil
	}
	// Control records are kept so that a partition ending in a transaction marker is
	// seen to be read to its end.
	cl, err := r.cfg.NewClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.changelog: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	n := 0
	for len(until) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if err := fs.Err(); err != nil {
			return n, fmt.Errorf("read changelog %s: %w", r.changelog, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			end, reading := until[rec.Partition]
			if !reading {
				return
			}
			if !rec.Attrs.IsControl() {
				n++
				if topic, key, ok := splitChangelogKey(rec.Key); ok {
					if s := want[rec.Partition][topic]; s != nil {
						if rec.Value == nil {
							s.Delete(key)
						} else {
							s.Put(key, rec.Value)
						}
					}
				}
			}
			if rec.Offset+1 >= end {
				delete(until, rec.Partition)
			}
		})
	}
	return n, nil
}

func errOf(o kadm.ListedOffset) error { return o.Err }
