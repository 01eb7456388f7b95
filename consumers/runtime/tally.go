package runtime

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/keycount"
)

type tallyKey struct {
	vec    *prometheus.CounterVec
	labels [stage.MaxCountLabels]string
	n      int
}

// tally holds a stage's own counts for one partition of one batch: those of the record
// being processed (pending) and those of the records processed so far (counts). The
// runtime adds them to their counters only when the batch commits, like its own
// records in/out counts, so an aborted and reprocessed batch is counted once. A record
// counts a few keys out of a handful (omop: its outcome and its references' kinds), so
// counts compares recent keys before hashing (keycount).
type tally struct {
	pending []tallyKey
	counts  keycount.Counter[tallyKey]
}

// CountOnCommit notes a count of the record being processed (stage.CountCommitted).
func (t *tally) CountOnCommit(vec *prometheus.CounterVec, labels [stage.MaxCountLabels]string, n int) {
	t.pending = append(t.pending, tallyKey{vec: vec, labels: labels, n: n})
}

// keep moves the pending counts of the record just processed to the batch's counts.
func (t *tally) keep() {
	for _, k := range t.pending {
		t.counts.Add(k, 1)
	}
	t.pending = t.pending[:0]
}

// drop forgets the pending counts of the record just processed.
func (t *tally) drop() { t.pending = t.pending[:0] }

// publish adds the batch's counts to their counters.
func (t *tally) publish() {
	t.counts.Each(func(k tallyKey, n int64) {
		k.vec.WithLabelValues(k.labels[:k.n]...).Add(float64(n))
	})
}
