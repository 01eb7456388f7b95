package goldlake_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

// fileRows counts the data lines of an Athena file, by hand.
func fileRows(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	return n - 1 // the header
}

// TestVocabularyLoad loads the test vocabulary into a lake and reads all nine tables
// back with DuckDB's iceberg extension into tables of OHDSI's DDL: their columns and
// types are the DDL's, and every row equals the one DuckDB's own CSV reader makes of the
// Athena file. Loading again replaces the tables (the same rows, a new load id); a
// download without a file is refused before anything is written.
func TestVocabularyLoad(t *testing.T) {
	ctx := context.Background()
	lake := filepath.Join(t.TempDir(), "lake")
	lk, err := lakehouse.Open(ctx, lakehouse.Config{Out: lake})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	load, err := goldlake.LoadVocabulary(ctx, lk, testVocabulary, goldlake.VocabularyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	load.Write(&report)
	t.Log(report.String())
	if load.Version != "fhirstream-test-1" || len(load.Tables) != len(vocab.Tables) {
		t.Fatalf("load %+v", load)
	}
	again, err := goldlake.LoadVocabulary(ctx, lk, testVocabulary, goldlake.VocabularyOptions{})
	if err != nil || again.LoadID == load.LoadID {
		t.Fatalf("second load %+v, %v", again, err)
	}
	var tables []string
	compare := map[string]string{}
	for i, d := range vocab.Tables {
		tables = append(tables, d.Name)
		compare[d.Name] = filepath.Join(testVocabulary, d.File())
		want := fileRows(t, compare[d.Name])
		if load.Tables[i].Table != "cdm."+d.Name || load.Tables[i].Rows != want || again.Tables[i].Rows != want {
			t.Errorf("%s: loaded %+v then %+v, the file has %d rows", d.Name, load.Tables[i], again.Tables[i], want)
		}
	}
	res := readGold(t, lake, goldRead{tables: tables, compare: compare})
	for _, table := range tables {
		for _, m := range res.Types[table] {
			t.Errorf("%s: %s", table, m)
		}
		if res.Differ[table] != 0 || res.Counts[table] != res.Counts["file_"+table] || res.Counts[table] == 0 {
			t.Errorf("%s: %d rows in the lake, %d in the file, %d differ", table, res.Counts[table], res.Counts["file_"+table], res.Differ[table])
		}
	}

	partial := t.TempDir()
	for _, d := range vocab.Tables[:3] {
		b, err := os.ReadFile(filepath.Join(testVocabulary, d.File()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(partial, d.File()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := goldlake.LoadVocabulary(ctx, lk, partial, goldlake.VocabularyOptions{}); err == nil || !strings.Contains(err.Error(), "CONCEPT_RELATIONSHIP.csv") {
		t.Errorf("a download without six of its files: %v", err)
	}
}
