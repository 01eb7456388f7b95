package omop

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fhirstream/fhirstream/schemas"
)

// TypeCounts is what became of the records of one resource type the mapping stage read
// in committed batches: each is mapped (it wrote rows), deleted (a tombstone: retraction
// rows), dropped by a rule (no row on purpose, by reason) or dead-lettered (by error
// class). Read = Mapped + Deleted + ΣDropped + ΣDeadLetters when nothing is lost.
type TypeCounts struct {
	ResourceType string
	Read         int64
	Mapped       int64
	Deleted      int64
	Dropped      map[string]int64 // reason → records
	DeadLetters  map[string]int64 // error class → records
}

// Accounted is the number of records with a known outcome.
func (c TypeCounts) Accounted() int64 {
	n := c.Mapped + c.Deleted
	for _, v := range c.Dropped {
		n += v
	}
	for _, v := range c.DeadLetters {
		n += v
	}
	return n
}

// Balanced reports whether every record read has its outcome.
func (c TypeCounts) Balanced() bool { return c.Read == c.Accounted() }

// Reconciliation is TypeCounts per resource type, sorted by type.
type Reconciliation []TypeCounts

// Balanced reports whether every type balances.
func (r Reconciliation) Balanced() bool {
	for _, c := range r {
		if !c.Balanced() {
			return false
		}
	}
	return true
}

// Type returns the counts of one resource type (zero counts when it has none).
func (r Reconciliation) Type(resourceType string) TypeCounts {
	for _, c := range r {
		if c.ResourceType == resourceType {
			return c
		}
	}
	return TypeCounts{ResourceType: resourceType, Dropped: map[string]int64{}, DeadLetters: map[string]int64{}}
}

// Minus returns the counts added since before, for a caller that shares the process's
// counters with earlier runs (tests).
func (r Reconciliation) Minus(before Reconciliation) Reconciliation {
	out := make(Reconciliation, 0, len(r))
	for _, c := range r {
		b := before.Type(c.ResourceType)
		d := TypeCounts{ResourceType: c.ResourceType, Read: c.Read - b.Read, Mapped: c.Mapped - b.Mapped,
			Deleted: c.Deleted - b.Deleted, Dropped: map[string]int64{}, DeadLetters: map[string]int64{}}
		for k, v := range c.Dropped {
			if v -= b.Dropped[k]; v != 0 {
				d.Dropped[k] = v
			}
		}
		for k, v := range c.DeadLetters {
			if v -= b.DeadLetters[k]; v != 0 {
				d.DeadLetters[k] = v
			}
		}
		if d.Read != 0 || d.Accounted() != 0 {
			out = append(out, d)
		}
	}
	return out
}

// Metric names of the stage runtime (consumers/runtime) that Reconcile reads: records
// read and dead-lettered in committed batches, labelled by stage and input topic.
const (
	metricStageRecordsIn     = "fhirstream_stage_records_in_total"
	metricStageDeadLettered  = "fhirstream_stage_records_dead_lettered_total"
	metricOMOPRecordsOutcome = "fhirstream_omop_records_total"
)

// Reconcile reads the reconciliation of the mapping stage from the committed-batch
// counters in g (obs.Registry): records read and dead-lettered per input topic (counted
// by the runtime), mapped, deleted and dropped per type (counted by the stage with
// stage.CountCommitted). The counters are process-wide, so this is the reconciliation of
// the omop stage the process runs (consume omop, run, demo), over all its runs so far;
// only topics of the given prefix count.
func Reconcile(g prometheus.Gatherer, topics schemas.Topics) (Reconciliation, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	byType := map[string]*TypeCounts{}
	get := func(rt string) *TypeCounts {
		c := byType[rt]
		if c == nil {
			c = &TypeCounts{ResourceType: rt, Dropped: map[string]int64{}, DeadLetters: map[string]int64{}}
			byType[rt] = c
		}
		return c
	}
	// typeOf returns the resource type of an omop input topic of this prefix: unique, or
	// deid when the pipeline de-identifies (omop reads one of the two).
	typeOf := func(labels map[string]string) (string, bool) {
		if labels["stage"] != StageName {
			return "", false
		}
		layer, rt, ok := topics.ParseLayerTopic(labels["topic"])
		return rt, ok && (layer == schemas.LayerUnique || layer == schemas.LayerDeid)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := labelMap(m)
			n := int64(m.GetCounter().GetValue())
			switch f.GetName() {
			case metricStageRecordsIn:
				if rt, ok := typeOf(labels); ok {
					get(rt).Read += n
				}
			case metricStageDeadLettered:
				if rt, ok := typeOf(labels); ok {
					get(rt).DeadLetters[labels["reason"]] += n
				}
			case metricOMOPRecordsOutcome:
				c := get(labels["resource_type"])
				switch labels["outcome"] {
				case outcomeMapped:
					c.Mapped += n
				case outcomeDeleted:
					c.Deleted += n
				default:
					c.Dropped[labels["reason"]] += n
				}
			}
		}
	}
	out := make(Reconciliation, 0, len(byType))
	for _, rt := range slices.Sorted(maps.Keys(byType)) {
		out = append(out, *byType[rt])
	}
	return out, nil
}

func labelMap(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// Write prints one line per type, "Encounter: read 120 = mapped 110 + dropped 10
// (status-cancelled 10) + dead letters 0  ok", and a last line saying whether every
// type balances. prefix starts every line.
func (r Reconciliation) Write(w io.Writer, prefix string) {
	width := 0
	for _, c := range r {
		width = max(width, len(c.ResourceType))
	}
	for _, c := range r {
		var b strings.Builder
		fmt.Fprintf(&b, "%s%-*s  read %d = mapped %d", prefix, width+1, c.ResourceType+":", c.Read, c.Mapped)
		if c.Deleted > 0 {
			fmt.Fprintf(&b, " + deleted %d", c.Deleted)
		}
		fmt.Fprintf(&b, " + dropped %d%s + dead letters %d%s", sum(c.Dropped), breakdown(c.Dropped), sum(c.DeadLetters), breakdown(c.DeadLetters))
		if c.Balanced() {
			b.WriteString("  ok")
		} else {
			fmt.Fprintf(&b, "  MISMATCH: %d records without an outcome", c.Read-c.Accounted())
		}
		fmt.Fprintln(w, b.String())
	}
	switch {
	case len(r) == 0:
		fmt.Fprintf(w, "%s(no records read)\n", prefix)
	case r.Balanced():
		fmt.Fprintf(w, "%severy record read is mapped, deleted, dropped by a rule or dead-lettered\n", prefix)
	default:
		fmt.Fprintf(w, "%sFAILED: some records read have no outcome\n", prefix)
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// breakdown is " (k1 n1, k2 n2)" in key order, "" for none.
func breakdown(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
