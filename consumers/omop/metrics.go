package omop

import (
	"context"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/keycount"
	"github.com/fhirstream/fhirstream/internal/obs"
)

// Process-wide metrics, registered once with obs.Registry; every Processor adds to them.
// Those counted with stage.CountCommitted count records of committed batches only, so
// an aborted and reprocessed batch is counted once (outside the runtime, e.g. in unit
// tests, they count at once).
var (
	metricRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_records_total",
		Help: "Input records in committed batches by what became of them: outcome mapped (rows written), deleted (a tombstone's retraction rows) or dropped (no row on purpose, reason says why). With the runtime's dead letters they add up to the records read (omop.Reconcile).",
	}, []string{"resource_type", "outcome", "reason"})
	metricReferences = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_references_total",
		Help: "References to persons, visits, providers and care sites in committed batches, by target type and how they resolved (literal, identifier, unresolvable, other-type).",
	}, []string{"target", "outcome"})
	metricRows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_rows_total",
		Help: "OMOP rows emitted, by table (retraction rows included).",
	}, []string{"table"})
	metricUnmapped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_unmapped_codes_total",
		Help: "Codes written with concept_id 0 (code kept in *_source_value) in committed batches, by source vocabulary and table.",
	}, []string{"vocabulary", "table"})
	metricSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_skipped_total",
		Help: "Resources in committed batches that deliberately give no row or no further row (entered-in-error, cancelled, unmapped type, a death without date, ...), by resource type and reason.",
	}, []string{"resource_type", "reason"})
	metricTruncated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_truncated_total",
		Help: "String values cut to their CDM varchar length, by table and column.",
	}, []string{"table", "column"})
	metricCollisions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fhirstream_omop_id_collisions_total",
		Help: "Distinct keys seen hashing to the same OMOP id within this process.",
	})
)

func init() {
	obs.Registry.MustRegister(metricRecords, metricReferences, metricRows, metricUnmapped, metricSkipped, metricTruncated, metricCollisions)
}

// Summary is what a Processor did, counted at every Process call (also of a batch that
// later aborts): for tests and single runs. Reports of a running stage come from the
// committed-batch metrics instead (Reconcile).
type Summary struct {
	// Records counts the records mapped, deleted or dropped, by "<ResourceType>: mapped",
	// "<ResourceType>: deleted" and "<ResourceType>: dropped: <reason>"; rejections are
	// in Rejected.
	Records    map[string]int64
	References map[string]int64 // "<target type>: <outcome>" → references (refOutcome)
	Rows       map[string]int64 // table → rows emitted (retractions included)
	Unmapped   []UnmappedCount  // sorted by vocabulary, then table
	Skipped    map[string]int64 // "<ResourceType>: <reason>" → resources
	Truncated  map[string]int64 // "<table>.<column>" → values cut
	Collisions int64
	Rejected   map[string]int64 // "<ResourceType>: <class>" → resources rejected
}

// UnmappedCount is the number of codes of one vocabulary written with concept_id 0 to
// one table.
type UnmappedCount struct {
	Vocabulary, Table string
	Count             int64
}

// tally collects one Processor's counts; the metrics above carry the same numbers for
// the whole process. Every record adds to it under one lock, and counts keys of a
// handful of values, so the counters compare recent keys before hashing (keycount).
type tally struct {
	mu         sync.Mutex
	records    keycount.Counter[[3]string] // resource type, outcome, reason
	references keycount.Counter[[2]string] // target type, refOutcome
	rows       keycount.Counter[*tableInfo]
	unmapped   keycount.Counter[[2]string] // vocabulary, table
	skipped    keycount.Counter[[2]string] // resource type, reason
	truncated  keycount.Counter[[2]string] // table, column
	rejected   keycount.Counter[[2]string] // resource type, class
	collisions int64
}

// counts is the per-record scratch merged into the tally once per record, so a record
// takes the lock once however many rows it yields.
type counts struct {
	refs       [][2]string // target type, refOutcome
	rows       []*tableInfo
	unmapped   [][2]string
	truncated  [][2]string
	skipped    string // reason, when the resource gave no row on purpose
	collisions int
}

// Outcomes of a record, the outcome label of fhirstream_omop_records_total.
const (
	outcomeMapped  = "mapped"
	outcomeDeleted = "deleted"
	outcomeDropped = "dropped"
)

// outcome says what became of a record that was not rejected: deleted (a tombstone),
// mapped (it wrote a row that is not a retraction; a partial skip such as a death
// without date does not change that), or dropped with the skip's reason.
func (c *counts) outcome(tombstone bool, dataRows int) (outcome, reason string) {
	switch {
	case tombstone:
		return outcomeDeleted, ""
	case dataRows > 0:
		return outcomeMapped, ""
	case c.skipped != "":
		return outcomeDropped, c.skipped
	}
	return outcomeDropped, "no-rows" // a mapper that wrote nothing and said nothing: counted, never lost
}

func (t *tally) merge(ctx context.Context, resourceType string, c *counts, outcome, reason string) {
	for _, tb := range c.rows {
		tb.rowsMetric.Inc() // resolved once: WithLabelValues hashes the label per call
	}
	for _, tr := range c.truncated {
		metricTruncated.WithLabelValues(tr[0], tr[1]).Inc()
	}
	stage.CountCommitted(ctx, metricRecords, resourceType, outcome, reason)
	if c.skipped != "" {
		stage.CountCommitted(ctx, metricSkipped, resourceType, c.skipped)
	}
	for _, r := range c.refs {
		stage.CountCommitted(ctx, metricReferences, r[0], r[1])
	}
	for _, u := range c.unmapped {
		stage.CountCommitted(ctx, metricUnmapped, u[0], u[1])
	}
	if c.collisions > 0 {
		metricCollisions.Add(float64(c.collisions))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.records.Add([3]string{resourceType, outcome, reason}, 1)
	for _, r := range c.refs {
		t.references.Add(r, 1)
	}
	for _, tb := range c.rows {
		t.rows.Add(tb, 1)
	}
	for _, u := range c.unmapped {
		t.unmapped.Add(u, 1)
	}
	for _, tr := range c.truncated {
		t.truncated.Add(tr, 1)
	}
	if c.skipped != "" {
		t.skipped.Add([2]string{resourceType, c.skipped}, 1)
	}
	t.collisions += int64(c.collisions)
}

func (t *tally) reject(resourceType, class string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rejected.Add([2]string{resourceType, class}, 1)
}

func (t *tally) summary() Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Summary{Records: map[string]int64{}, References: map[string]int64{}, Rows: map[string]int64{},
		Skipped: map[string]int64{}, Truncated: map[string]int64{}, Rejected: map[string]int64{}, Collisions: t.collisions}
	t.records.Each(func(k [3]string, n int64) {
		key := k[0] + ": " + k[1]
		if k[2] != "" {
			key += ": " + k[2]
		}
		s.Records[key] = n
	})
	t.references.Each(func(k [2]string, n int64) { s.References[k[0]+": "+k[1]] = n })
	t.rows.Each(func(k *tableInfo, n int64) { s.Rows[k.name] = n })
	t.skipped.Each(func(k [2]string, n int64) { s.Skipped[k[0]+": "+k[1]] = n })
	t.truncated.Each(func(k [2]string, n int64) { s.Truncated[k[0]+"."+k[1]] = n })
	t.rejected.Each(func(k [2]string, n int64) { s.Rejected[k[0]+": "+k[1]] = n })
	t.unmapped.Each(func(k [2]string, n int64) {
		s.Unmapped = append(s.Unmapped, UnmappedCount{Vocabulary: k[0], Table: k[1], Count: n})
	})
	sort.Slice(s.Unmapped, func(i, j int) bool {
		a, b := s.Unmapped[i], s.Unmapped[j]
		if a.Vocabulary != b.Vocabulary {
			return a.Vocabulary < b.Vocabulary
		}
		return a.Table < b.Table
	})
	return s
}
