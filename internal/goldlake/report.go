package goldlake

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Write prints the report: the refresh, its input, every table with its rows, the
// tables not built and why, and what link resolution did.
func (r *Report) Write(w io.Writer) {
	if r.Current {
		fmt.Fprintf(w, "gold %s is current: refresh %s read the same omop snapshots and vocabulary (--force refreshes anyway)\n", r.Namespace, r.RefreshID)
		return
	}
	fmt.Fprintf(w, "gold refresh %s of %s in %s\n", r.RefreshID, r.Namespace, r.Took.Round(time.Millisecond))
	var src []string
	for _, name := range slices.Sorted(maps.Keys(r.Sources)) {
		src = append(src, fmt.Sprintf("%s@%d", name, r.Sources[name]))
	}
	fmt.Fprintf(w, "  read: %s\n", strings.Join(src, " "))
	vv := r.VocabularyVersion
	if vv == "" {
		vv = "no release"
	}
	fmt.Fprintf(w, "  vocabulary: %s (%s)\n", r.Vocabulary, vv)
	if r.VocabularyLoad != nil {
		var b strings.Builder
		r.VocabularyLoad.Write(&b)
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TABLE\tROWS\tFILES\tSNAPSHOT\t")
	for _, t := range r.Tables {
		note := ""
		if why, ok := r.NotBuilt[t.Table[strings.LastIndexByte(t.Table, '.')+1:]]; ok {
			note = "NOT BUILT (left empty): " + why.Error()
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\n", t.Table, t.Rows, t.Files, t.Snapshot, note)
	}
	_ = tw.Flush()
	if r.PersonsWithoutEvents > 0 {
		fmt.Fprintf(w, "  persons without events (no observation_period): %d\n", r.PersonsWithoutEvents)
	}
	if links := r.Links.Report(); links != "" {
		for _, line := range strings.Split(strings.TrimSpace(links), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}
