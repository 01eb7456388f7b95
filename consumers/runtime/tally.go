package runtime

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

type tallyKey struct {
	vec    *prometheus.CounterVec
	labels [stage.MaxCountLabels]string
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

// CountOnCommit notes a count of the record being processed (stage.CountCommitted).
func (t *tally) CountOnCommit(vec *prometheus.CounterVec, labels [stage.MaxCountLabels]string, n int) {
	t.pending = append(t.pending, tallyKey{vec: vec, labels: labels, n: n})
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
