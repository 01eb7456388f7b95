package omop

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/internal/obs"
)

// Process-wide metrics, registered once with obs.Registry; every Processor adds to them.
var (
	metricRows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_rows_total",
		Help: "OMOP rows emitted, by table (retraction rows included).",
	}, []string{"table"})
	metricUnmapped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_unmapped_codes_total",
		Help: "Codes written with concept_id 0 (code kept in *_source_value), by source vocabulary and table.",
	}, []string{"vocabulary", "table"})
	metricSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_omop_skipped_total",
		Help: "Resources that deliberately give no row (entered-in-error, cancelled, unmapped type, ...), by resource type and reason.",
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
	obs.Registry.MustRegister(metricRows, metricUnmapped, metricSkipped, metricTruncated, metricCollisions)
}

// Summary is what a Processor did, for the demo and tests to print or check.
type Summary struct {
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
// the whole process.
type tally struct {
	mu         sync.Mutex
	rows       map[*tableInfo]int64
	unmapped   map[[2]string]*unmappedCount
	skipped    map[string]int64
	truncated  map[string]int64
	rejected   map[string]int64
	collisions int64
}

// unmappedCount is one (vocabulary, table) count with its metric child, looked up once:
// without a vocabulary most rows carry an unmapped code, and WithLabelValues hashes both
// labels on every call.
type unmappedCount struct {
	n      int64
	metric prometheus.Counter
}

func newTally() *tally {
	return &tally{rows: map[*tableInfo]int64{}, unmapped: map[[2]string]*unmappedCount{}, skipped: map[string]int64{},
		truncated: map[string]int64{}, rejected: map[string]int64{}}
}

// counts is the per-record scratch merged into the tally once per record, so a record
// takes the lock once however many rows it yields.
type counts struct {
	rows       []*tableInfo
	unmapped   [][2]string
	truncated  [][2]string
	skipped    string // reason, when the resource gave no row on purpose
	collisions int
}

func (t *tally) merge(resourceType string, c *counts) {
	for _, tb := range c.rows {
		tb.rowsMetric.Inc() // resolved once: WithLabelValues hashes the label per call
	}
	for _, tr := range c.truncated {
		metricTruncated.WithLabelValues(tr[0], tr[1]).Inc()
	}
	if c.skipped != "" {
		metricSkipped.WithLabelValues(resourceType, c.skipped).Inc()
	}
	if c.collisions > 0 {
		metricCollisions.Add(float64(c.collisions))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tb := range c.rows {
		t.rows[tb]++
	}
	for _, u := range c.unmapped {
		uc := t.unmapped[u]
		if uc == nil {
			uc = &unmappedCount{metric: metricUnmapped.WithLabelValues(u[0], u[1])}
			t.unmapped[u] = uc
		}
		uc.n++
		uc.metric.Inc()
	}
	for _, tr := range c.truncated {
		t.truncated[tr[0]+"."+tr[1]]++
	}
	if c.skipped != "" {
		t.skipped[resourceType+": "+c.skipped]++
	}
	t.collisions += int64(c.collisions)
}

func (t *tally) reject(resourceType, class string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rejected[resourceType+": "+class]++
}

func (t *tally) summary() Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Summary{Rows: map[string]int64{}, Skipped: map[string]int64{}, Truncated: map[string]int64{},
		Rejected: map[string]int64{}, Collisions: t.collisions}
	for k, v := range t.rows {
		s.Rows[k.name] = v
	}
	for k, v := range t.skipped {
		s.Skipped[k] = v
	}
	for k, v := range t.truncated {
		s.Truncated[k] = v
	}
	for k, v := range t.rejected {
		s.Rejected[k] = v
	}
	for k, v := range t.unmapped {
		s.Unmapped = append(s.Unmapped, UnmappedCount{Vocabulary: k[0], Table: k[1], Count: v.n})
	}
	sort.Slice(s.Unmapped, func(i, j int) bool {
		a, b := s.Unmapped[i], s.Unmapped[j]
		if a.Vocabulary != b.Vocabulary {
			return a.Vocabulary < b.Vocabulary
		}
		return a.Table < b.Table
	})
	return s
}
