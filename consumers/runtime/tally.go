package runtime

import (
	"context"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// maxTallyLabels is the most label values CountCommitted keeps per counter.
const maxTallyLabels = 4

type tallyKey struct {
	vec    *prometheus.CounterVec
	labels [maxTallyLabels]string
	n      int
}

// tally holds a stage's own counts for one partition of one batch: those of the record
// being processed (pending) and those of the records processed so far (counts). The
// runtime adds them to their counters only when the batch commits, like its own
// records in/out counts, so an aborted and reprocessed batch is counted once.
type tally struct {
	pending []tallyKey
	counts  map[tallyKey]*float64
	// last and lastCount are the most recently kept key and its count: consecutive
	// records mostly count the same thing (one topic, one reason), and comparing keys
	// is cheaper than hashing them into the map.
	last      tallyKey
	lastCount *float64
}

type tallyCtxKey struct{}

// CountCommitted adds one to vec's counter with the label values labels, once the
// transaction of the record being processed commits: call it from Process for counts
// that must match what the output topics hold (e.g. a stage's decisions by reason).
// Counts of a rejected or retried record, and of an aborted batch, are dropped. Outside
// the runtime (ctx not from the runtime, e.g. a unit test calling Process directly), or
// with more than 4 label values, it counts at once.
func CountCommitted(ctx context.Context, vec *prometheus.CounterVec, labels ...string) {
	t, _ := ctx.Value(tallyCtxKey{}).(*tally)
	if t == nil || len(labels) > maxTallyLabels {
		// A copy, so that labels does not escape: the caller's argument slice then
		// stays on its stack instead of costing an allocation per record.
		vec.WithLabelValues(slices.Clone(labels)...).Inc()
		return
	}
	k := tallyKey{vec: vec, n: len(labels)}
	copy(k.labels[:], labels)
	t.pending = append(t.pending, k)
}

// keep moves the pending counts of the record just processed to the batch's counts.
func (t *tally) keep() {
	for _, k := range t.pending {
		if t.lastCount == nil || k != t.last {
			if t.counts == nil {
				t.counts = map[tallyKey]*float64{}
			}
			c := t.counts[k]
			if c == nil {
				c = new(float64)
				t.counts[k] = c
			}
			t.last, t.lastCount = k, c
		}
		*t.lastCount++
	}
	t.pending = t.pending[:0]
}

// drop forgets the pending counts of the record just processed.
func (t *tally) drop() { t.pending = t.pending[:0] }

// publish adds the batch's counts to their counters.
func (t *tally) publish() {
	for k, c := range t.counts {
		k.vec.WithLabelValues(k.labels[:k.n]...).Add(*c)
	}
}
