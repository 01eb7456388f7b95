package synth

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// The report lists every bad line once and gives the size of the files on disk as the
// directory holds them.
func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Patients: 2, Seed: 3, Bad: 5, Gzip: true}
	counts, err := WriteDir(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	var disk int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		disk += fi.Size()
	}
	if got := counts.DiskBytes(dir, true); got != disk || disk == 0 {
		t.Errorf("DiskBytes %d, the directory holds %d", got, disk)
	}
	var b bytes.Buffer
	WriteReport(&b, cfg, dir, counts, 2*time.Second)
	out := b.String()
	if !strings.Contains(out, "synth: 2 patients, ") || !strings.Contains(out, ", 2.00 s, ") || !strings.Contains(out, "into "+dir+"\n") {
		t.Errorf("summary line:\n%s", out)
	}
	if !strings.Contains(out, "synth: 5 bad lines mixed in, to be dead-lettered:\n") {
		t.Errorf("no bad-line header:\n%s", out)
	}
	for _, d := range counts.Bad {
		if !strings.Contains(out, "  "+d.File+"  ") || !strings.Contains(out, " "+d.Class+" ") {
			t.Errorf("bad line %+v not listed:\n%s", d, out)
		}
	}
	if n := strings.Count(out, "\n") - strings.Count(counts.String(), "\n"); n != 1+1+1+len(counts.Bad) {
		t.Errorf("%d lines after the counts table, want the summary, the header, the column titles and %d bad lines:\n%s", n, len(counts.Bad), out)
	}
}
