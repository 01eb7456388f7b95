package stage

import (
	"context"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxCountLabels is the most label values CountCommitted keeps for later.
const MaxCountLabels = 4

// CommitCounter holds counts until the batch of the record being processed ends: it
// adds them to their counters when the batch commits and drops them when it aborts or
// the record is rejected or retried. The stage runtime installs one in the context it
// passes to Process.
type CommitCounter interface {
	// CountOnCommit notes one count of vec's counter with the label values labels[:n].
	CountOnCommit(vec *prometheus.CounterVec, labels [MaxCountLabels]string, n int)
}

type commitCounterKey struct{}

// WithCommitCounter returns ctx carrying c, for the runtime.
func WithCommitCounter(ctx context.Context, c CommitCounter) context.Context {
	return context.WithValue(ctx, commitCounterKey{}, c)
}

// CountCommitted adds one to vec's counter with the label values labels, once the
// transaction of the record being processed commits: call it from Process for counts that
// must match what the output topics hold (a stage's decisions by reason, say), so that an
// aborted and reprocessed batch is counted once. Outside a runtime (a unit test calling
// Process directly), or with more than MaxCountLabels values, it counts at once.
func CountCommitted(ctx context.Context, vec *prometheus.CounterVec, labels ...string) {
	c, _ := ctx.Value(commitCounterKey{}).(CommitCounter)
	if c == nil || len(labels) > MaxCountLabels {
		// A copy, so that labels does not escape: the caller's argument slice then stays
		// on its stack instead of costing an allocation per record.
		vec.WithLabelValues(slices.Clone(labels)...).Inc()
		return
	}
	var l [MaxCountLabels]string
	copy(l[:], labels)
	c.CountOnCommit(vec, l, len(labels))
}
