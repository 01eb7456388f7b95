package producer

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
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
}

// TypeSummary adds up the files of one resource type.
type TypeSummary struct {
	Type                                        string
	Files                                       int
	Expected, Read, Published, Dead, Tombstones int64
}

// OK reports whether every file reconciled.
func (s Summary) OK() bool { return len(s.Mismatches) == 0 }

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

func (s *Summary) fill(files []*fileRun, d time.Duration, bytes, commits, runResources int64) {
	s.Duration, s.Bytes, s.Commits, s.RunResources = d, bytes, commits, runResources
	s.Files, s.Mismatches = nil, nil
	for _, f := range files {
		fs := FileSummary{Kind: f.kind, Type: f.typ, URL: redact(f.url), Expected: -1, Read: f.cp.Read,
			Published: f.cp.Published, Dead: f.cp.Dead, Oversize: f.cp.Oversize, Tombstones: f.tombstones, Headers: f.cp.Headers}
		if f.organizedBy != "" {
			fs.Type = "organized-by-" + f.organizedBy
		}
		if f.expected != nil {
			fs.Expected = *f.expected
		}
		s.Files = append(s.Files, fs)
		if !f.cp.Done {
			continue // not reconciled: the run stopped before the file's end
		}
		if fs.Read != fs.Published+fs.Dead+fs.Headers {
			s.Mismatches = append(s.Mismatches, fmt.Sprintf("%s %s: %d lines read, %d published + %d dead-lettered + %d block headers", f.kind, fs.URL, fs.Read, fs.Published, fs.Dead, fs.Headers))
		}
		// The IG's count is "the number of resources in the file"; whether a server
		// counts block headers (Parameters resources) is not settled, so either reading
		// reconciles.
		if fs.Expected >= 0 && fs.Expected != fs.Read && fs.Expected != fs.Read-fs.Headers {
			s.Mismatches = append(s.Mismatches, fmt.Sprintf("%s %s: manifest count %d, %d lines read", f.kind, fs.URL, fs.Expected, fs.Read))
		}
		if n := f.next; n != nil {
			// The file a block continues in must start with that block's header again.
			switch {
			case n.index < 0:
				s.Mismatches = append(s.Mismatches, fmt.Sprintf("%s: continuesInFile %s is not a later output file of the manifest", fs.URL, redact(n.url)))
			case n.cp.Done && n.cp.FirstHeader != f.cp.LastHeader:
				s.Mismatches = append(s.Mismatches, fmt.Sprintf("%s continues in %s, which starts with block header %q instead of %q", fs.URL, redact(n.url), n.cp.FirstHeader, f.cp.LastHeader))
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
	if s.OK() {
		fmt.Fprintln(w, "reconciliation: OK")
	} else {
		fmt.Fprintf(w, "reconciliation: FAILED (%d mismatches)\n", len(s.Mismatches))
		for _, m := range s.Mismatches {
			fmt.Fprintln(w, "  "+m)
		}
	}
}
