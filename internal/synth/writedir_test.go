package synth

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteDir(t *testing.T) {
	cfg := Config{Patients: 12, Seed: 5}
	plain, gzDir := t.TempDir(), t.TempDir()
	// A file of an earlier, uncompressed run must not survive a gzip run.
	stale := filepath.Join(gzDir, FileName(TypePatient, false))
	if err := os.WriteFile(stale, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	counts, err := WriteDir(context.Background(), cfg, plain)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gzip = true
	gzCounts, err := WriteDir(context.Background(), cfg, gzDir)
	if err != nil {
		t.Fatal(err)
	}
	if counts.String() != gzCounts.String() {
		t.Fatalf("counts differ with gzip:\n%s\n%s", counts, gzCounts)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale %s left in place (err %v)", stale, err)
	}

	mem := generate(t, Config{Patients: 12, Seed: 5})
	for _, typ := range counts.Types() {
		raw, err := os.ReadFile(filepath.Join(plain, FileName(typ, false)))
		if err != nil {
			t.Fatal(err)
		}
		want := append(bytes.Join(mem.lines[typ], []byte("\n")), '\n')
		if !bytes.Equal(raw, want) {
			t.Fatalf("%s: file differs from the lines Generate emits", typ)
		}
		if got := int64(bytes.Count(raw, []byte("\n"))); got != counts.Resources[typ] {
			t.Fatalf("%s: %d lines on disk, counted %d", typ, got, counts.Resources[typ])
		}
		if int64(len(raw)) != counts.Bytes[typ] {
			t.Fatalf("%s: %d bytes on disk, counted %d", typ, len(raw), counts.Bytes[typ])
		}

		f, err := os.Open(filepath.Join(gzDir, FileName(typ, true)))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		unzipped, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !bytes.Equal(unzipped, raw) {
			t.Fatalf("%s: gzip file does not decompress to the plain file", typ)
		}
	}
	if len(counts.Types()) != len(ResourceTypes) {
		t.Fatalf("types written %v, want all of %v", counts.Types(), ResourceTypes)
	}

	// The table has a line per type plus header and total, with the total last.
	table := strings.Split(strings.TrimSpace(counts.String()), "\n")
	if len(table) != len(ResourceTypes)+2 || !strings.HasPrefix(table[len(table)-1], "total") {
		t.Fatalf("table:\n%s", counts)
	}
}

func TestWriteDirCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := WriteDir(ctx, Config{Patients: 10}, dir); err == nil {
		t.Fatal("cancelled WriteDir returned no error")
	}
}

// Files are valid NDJSON even when read line by line with a small buffer.
func TestWriteDirLines(t *testing.T) {
	dir := t.TempDir()
	counts, err := WriteDir(context.Background(), Config{Patients: 3, Seed: 8}, dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, FileName(TypeObservation, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := int64(0)
	for sc.Scan() {
		if !bytes.HasPrefix(sc.Bytes(), []byte(`{"resourceType":"Observation",`)) {
			t.Fatalf("line %d: %.80s", n+1, sc.Bytes())
		}
		n++
	}
	if n != counts.Resources[TypeObservation] {
		t.Fatalf("%d lines, want %d", n, counts.Resources[TypeObservation])
	}
}
