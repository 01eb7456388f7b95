package synth

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"
)

// WriteReport writes what 'fhirstream synth' prints after WriteDir(cfg, dir) returned
// counts in elapsed: the table of counts, a summary line with the throughput and the
// size on disk, and the bad lines mixed in.
func WriteReport(w io.Writer, cfg Config, dir string, counts Counts, elapsed time.Duration) {
	secs := elapsed.Seconds()
	fmt.Fprint(w, counts)
	fmt.Fprintf(w, "synth: %d patients, %d resources, %.1f MB NDJSON (%.1f MB on disk), %.2f s, %.0f resources/s, into %s\n",
		cfg.Patients, counts.Total(), float64(counts.TotalBytes())/1e6, float64(counts.DiskBytes(dir, cfg.Gzip))/1e6,
		secs, float64(counts.Total())/secs, dir)
	writeBadLines(w, counts.Bad)
}

// writeBadLines lists the bad lines mixed in: where each is and which stage must
// dead-letter it with which class.
func writeBadLines(w io.Writer, bad []DeadLetter) {
	if len(bad) == 0 {
		return
	}
	fmt.Fprintf(w, "synth: %d bad lines mixed in, to be dead-lettered:\n", len(bad))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  FILE\tLINE\tSTAGE\tCLASS\tKEY\t")
	for _, d := range bad {
		key := d.Key
		if key == "" {
			key = "-"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t\n", d.File, d.Line, d.Stage, d.Class, key)
	}
	_ = tw.Flush()
}

// DiskBytes is the size of the files WriteDir wrote into dir; with gz, the compressed
// size.
func (c Counts) DiskBytes(dir string, gz bool) int64 {
	var n int64
	for _, t := range c.Types() {
		if fi, err := os.Stat(filepath.Join(dir, FileName(t, gz))); err == nil {
			n += fi.Size()
		}
	}
	return n
}
