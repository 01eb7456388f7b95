package omop

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/schemas"
)

// Write prints the summary, one line each: rows per table, unmapped codes per vocabulary
// and table, skipped and rejected resources by reason, id collisions. prefix starts
// every line.
func (s Summary) Write(w io.Writer, prefix string) {
	for _, t := range slices.Sorted(maps.Keys(s.Rows)) {
		fmt.Fprintf(w, "%s%-22s %d rows\n", prefix, t, s.Rows[t])
	}
	for _, u := range s.Unmapped {
		fmt.Fprintf(w, "%sunmapped %s codes in %s: %d\n", prefix, u.Vocabulary, u.Table, u.Count)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Skipped)) {
		fmt.Fprintf(w, "%sskipped %s: %d\n", prefix, k, s.Skipped[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Rejected)) {
		fmt.Fprintf(w, "%srejected %s: %d\n", prefix, k, s.Rejected[k])
	}
	if s.Collisions > 0 {
		fmt.Fprintf(w, "%s%d id collisions\n", prefix, s.Collisions)
	}
}

// WriteStageReport prints what `fhirstream consume omop` prints when it stops: the
// processor's summary, then the reconciliation of the records read in committed batches
// per resource type (Reconcile over g). It returns an error when the reconciliation
// cannot be read or a type does not balance.
func WriteStageReport(w io.Writer, s Summary, g prometheus.Gatherer, topics schemas.Topics) error {
	s.Write(w, "omop: ")
	rec, err := Reconcile(g, topics)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "omop: reconciliation of the records read in committed batches, per resource type:")
	rec.Write(w, "omop: ")
	if !rec.Balanced() {
		return errors.New("omop: reconciliation FAILED: records read without an outcome")
	}
	return nil
}
