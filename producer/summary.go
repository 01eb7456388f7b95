package producer

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// Summary reports what a fetch did, per file and per type, and whether it reconciles.
type Summary struct {
	ExportID        string
	StatusURL       string
	TransactionTime time.Time
	// AlreadyComplete: the run found its export already published and only released it.
	AlreadyComplete bool
	Files           []FileSummary
	Bytes           int64
	Duration        time.Duration
	Commits         int64
	// RunResources is what this run published (a resumed run skips what was committed before).
	RunResources int64
	// Mismatches lists every reconciliation failure; empty when all adds up.
	Mismatches []string
	// Accepted lists the mismatches explained by a server quirk the operator accepted
	// (Config.Accept): warnings, not failures.
	Accepted []string
	// Unfinished counts files the run did not read to their end.
	Unfinished int
	// Failed is why the run failed, "" when it did not.
	Failed string
}

// FileSummary is one file's reconciliation.
type FileSummary struct {
	Kind      string // output, error or deleted
	Type      string
	URL       string
	Expected  int64 // manifest count, -1 when not given
	Read      int64 // non-empty lines read
	Published int64
	// Dead counts lines dead-lettered (including Oversize, dead-lettered by reference).
	Dead       int64
	Oversize   int64
	Tombstones int64
	// Headers counts the block headers of organized output, read and not published.
	Headers int64
	// Duplicates counts deletions listed again (overlapping deleted files), not published.
	Duplicates int64
}

// TypeSummary adds up the files of one resource type.
type TypeSummary struct {
	Type                                        string
	Files                                       int
	Expected, Read, Published, Dead, Tombstones int64
}

// OK reports whether the run finished and every file reconciled, accepted quirks aside.
func (s Summary) OK() bool { return len(s.Mismatches) == 0 && s.Unfinished == 0 && s.Failed == "" }

// Resources is the number of resources published.
func (s Summary) Resources() int64 {
	var n int64
	for _, f := range s.Files {
		if f.Kind == kindOutput {
			n += f.Published
		}
	}
	return n
}

func (s *Summary) fill(files []*fileRun, d time.Duration, bytes, commits, runResources int64, accept bulk.Quirks) {
	s.Duration, s.Bytes, s.Commits, s.RunResources = d, bytes, commits, runResources
	s.Files, s.Mismatches, s.Accepted, s.Unfinished = nil, nil, nil, 0
	mismatch := func(q bulk.Quirk, format string, args ...any) {
		m := fmt.Sprintf(format, args...)
		switch {
		case q == "":
			s.Mismatches = append(s.Mismatches, m)
		case accept.Has(q):
			s.Accepted = append(s.Accepted, m+" (accepted: "+string(q)+")")
		default:
			s.Mismatches = append(s.Mismatches, m+"; "+q.Hint())
		}
	}
	for _, f := range files {
		fs := FileSummary{Kind: f.kind, Type: f.typ, URL: ehrhttp.Redact(f.url), Expected: -1, Read: f.cp.Read,
			Published: f.cp.Published, Dead: f.cp.Dead, Oversize: f.cp.Oversize, Tombstones: f.tombstones, Headers: f.cp.Headers,
			Duplicates: f.cp.Duplicates}
		if f.organizedBy != "" {
			fs.Type = "organized-by-" + f.organizedBy
		}
		if f.expected != nil {
			fs.Expected = *f.expected
		}
		s.Files = append(s.Files, fs)
		if !f.cp.Done {
			s.Unfinished++
			continue // not reconciled: the run stopped before the file's end
		}
		if fs.Read != fs.Published+fs.Dead+fs.Headers {
			mismatch("", "%s %s: %d lines read, %d published + %d dead-lettered + %d block headers", f.kind, fs.URL, fs.Read, fs.Published, fs.Dead, fs.Headers)
		}
		// The IG's count is "the number of resources in the file"; whether a server
		// counts block headers (Parameters resources) is not settled, so either reading
		// reconciles.
		if fs.Expected >= 0 && fs.Expected != fs.Read && fs.Expected != fs.Read-fs.Headers {
			mismatch(bulk.QuirkManifestCount, "%s %s: manifest count %d, %d lines read", f.kind, fs.URL, fs.Expected, fs.Read)
		}
		if fs.Duplicates > 0 {
			mismatch(bulk.QuirkOverlappingDeleted, "deleted %s: %d deletions listed again, published once", fs.URL, fs.Duplicates)
		}
		if n := f.next; n != nil {
			// The file a block continues in must start with that block's header again.
			switch {
			case n.index < 0:
				mismatch(bulk.QuirkContinuesOffByOne, "%s: continuesInFile %s is not a later output file of the manifest", fs.URL, ehrhttp.Redact(n.url))
			case n.cp.Done && n.cp.FirstHeader != f.cp.LastHeader:
				mismatch(bulk.QuirkContinuesOffByOne, "%s continues in %s, which starts with block header %q instead of %q",
					fs.URL, ehrhttp.Redact(n.url), ehrhttp.Bound(n.cp.FirstHeader, 100), ehrhttp.Bound(f.cp.LastHeader, 100))
			}
		}
	}
}

// ByType adds up output files per resource type, sorted by type.
func (s Summary) ByType() []TypeSummary {
	m := map[string]*TypeSummary{}
	for _, f := range s.Files {
		key := f.Type
		if f.Kind != kindOutput {
			key = f.Kind + ":" + f.Type
		}
		t := m[key]
		if t == nil {
			t = &TypeSummary{Type: key}
			m[key] = t
		}
		t.Files++
		t.Read += f.Read
		t.Published += f.Published
		t.Dead += f.Dead
		t.Tombstones += f.Tombstones
		if f.Expected >= 0 {
			t.Expected += f.Expected
		}
	}
	out := make([]TypeSummary, 0, len(m))
	for _, t := range m {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// WriteTable prints the per-type table and the reconciliation verdict.
func (s Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tfiles\texpected\tread\tpublished\tdead-lettered\ttombstones\t")
	var tot TypeSummary
	for _, t := range s.ByType() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", t.Type, t.Files, t.Expected, t.Read, t.Published, t.Dead, t.Tombstones)
		tot.Files += t.Files
		tot.Expected += t.Expected
		tot.Read += t.Read
		tot.Published += t.Published
		tot.Dead += t.Dead
		tot.Tombstones += t.Tombstones
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\t\n", tot.Files, tot.Expected, tot.Read, tot.Published, tot.Dead, tot.Tombstones)
	tw.Flush()
	secs := s.Duration.Seconds()
	if secs > 0 {
		fmt.Fprintf(w, "this run: %d resources, %.1f MB in %s (%.0f resources/s, %.1f MB/s), %d commits\n",
			s.RunResources, float64(s.Bytes)/1e6, s.Duration.Round(time.Millisecond), float64(s.RunResources)/secs, float64(s.Bytes)/1e6/secs, s.Commits)
	}
	s.writeVerdict(w)
}

// writeVerdict prints whether the run reconciled: OK only when it finished and nothing
// but accepted quirks disagrees.
func (s Summary) writeVerdict(w io.Writer) {
	switch {
	case s.OK() && len(s.Accepted) == 0:
		fmt.Fprintln(w, "reconciliation: OK")
	case s.OK():
		fmt.Fprintf(w, "reconciliation: OK, with %d mismatches of accepted server quirks\n", len(s.Accepted))
	default:
		fmt.Fprintln(w, "reconciliation: FAILED")
		if s.Failed != "" {
			fmt.Fprintln(w, "  the run failed: "+s.Failed)
		}
		if s.Unfinished > 0 {
			fmt.Fprintf(w, "  %d of %d files were not read to the end\n", s.Unfinished, len(s.Files))
		}
	}
	for _, m := range s.Mismatches {
		fmt.Fprintln(w, "  "+m)
	}
	for _, m := range s.Accepted {
		fmt.Fprintln(w, "  warning: "+m)
	}
}
