package goldlake_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

// BenchmarkVocabularyLoad loads a synthetic Athena download of 1M concepts and 2M
// ancestor rows (the other seven tables from the test vocabulary) into a lake and
// reports rows per second. The files are generated in a temporary directory (about
// 150 MB) and never committed.
func BenchmarkVocabularyLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("writes 150 MB of synthetic vocabulary")
	}
	const n = 1_000_000
	dir := b.TempDir()
	write := func(name string, fill func(w *bufio.Writer)) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		fill(w)
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	write("CONCEPT.csv", func(w *bufio.Writer) {
		w.WriteString("concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\n")
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "%d\tSynthetic concept number %d with a realistic name length\tCondition\tSNOMED\tClinical Finding\tS\t%d\t19700101\t20991231\t\n", i, i, i*7)
		}
	})
	write("CONCEPT_ANCESTOR.csv", func(w *bufio.Writer) {
		w.WriteString("ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation\n")
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "%d\t%d\t0\t0\n%d\t%d\t1\t2\n", i, i, (i*31)%n+1, i)
		}
	})
	for _, d := range vocab.Tables {
		if d.Name == "concept" || d.Name == "concept_ancestor" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(testVocabulary, d.File()))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d.File()), raw, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	lk, err := lakehouse.Open(ctx, lakehouse.Config{Out: filepath.Join(b.TempDir(), "lake")})
	if err != nil {
		b.Fatal(err)
	}
	defer lk.Close()
	b.ResetTimer()
	var rows int64
	for b.Loop() {
		load, err := goldlake.LoadVocabulary(ctx, lk, dir, goldlake.VocabularyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		rows = 0
		for _, t := range load.Tables {
			rows += t.Rows
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
