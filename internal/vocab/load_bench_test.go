package vocab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// writeSynthetic writes an Athena-shaped release of n concepts (mixed vocabularies and
// domains, a third non-standard, each of those with a 'Maps to', plus as many unrelated
// relationships as a release carries per concept) into dir.
func writeSynthetic(tb testing.TB, dir string, n int) {
	tb.Helper()
	vocabs := []string{"SNOMED", "LOINC", "RxNorm", "ICD10CM", "CPT4", "NDC", "RxNorm Extension"}
	domains := []string{"Condition", "Measurement", "Drug", "Procedure", "Observation", "Device"}
	write := func(name string, fill func(w *bufio.Writer)) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		fill(w)
		if err := w.Flush(); err != nil {
			tb.Fatal(err)
		}
		if err := f.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	write(ConceptFile, func(w *bufio.Writer) {
		w.WriteString("concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\n")
		for i := 1; i <= n; i++ {
			std := "S"
			if i%3 == 0 {
				std = ""
			}
			fmt.Fprintf(w, "%d\tSynthetic concept number %d with a realistic name length\t%s\t%s\tClinical Finding\t%s\t%d-%d\t19700101\t20991231\t\n",
				i, i, domains[i%len(domains)], vocabs[i%len(vocabs)], std, i*7, i%10)
		}
	})
	write(ConceptRelationshipFile, func(w *bufio.Writer) {
		w.WriteString("concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n")
		for i := 1; i <= n; i++ {
			if i%3 == 0 {
				fmt.Fprintf(w, "%d\t%d\tMaps to\t19700101\t20991231\t\n", i, i-1)
			}
			fmt.Fprintf(w, "%d\t%d\tIs a\t19700101\t20991231\t\n", i, (i*31)%n+1)
		}
	})
}

// BenchmarkLoad5M loads a synthetic 5-million-concept release and reports the time per
// load and the heap the vocabulary keeps. The files are generated in a temporary
// directory (about 0.6 GB) and never committed.
func BenchmarkLoad5M(b *testing.B) {
	if testing.Short() {
		b.Skip("writes 0.6 GB of synthetic vocabulary")
	}
	const n = 5_000_000
	dir := b.TempDir()
	writeSynthetic(b, dir, n)
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		v, st, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if st.Concepts != n || st.MapsTo != n/3 {
			b.Fatalf("stats %+v", st)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(st.MemoryBytes)/(1<<20), "est-MiB")
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "alloc-MiB")
		runtime.KeepAlive(v)
	}
}

func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	writeSynthetic(b, dir, 100_000)
	v, _, err := Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	codes := make([][2]string, 1024)
	vocabs := []string{"SNOMED", "LOINC", "RxNorm", "ICD10CM", "CPT4", "NDC", "RxNorm Extension"}
	for i := range codes {
		id := i*97 + 1
		codes[i] = [2]string{vocabs[id%len(vocabs)], fmt.Sprintf("%d-%d", id*7, id%10)}
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c := codes[i&1023]
		if _, ok := v.Lookup(c[0], c[1]); !ok {
			b.Fatal("miss")
		}
		i++
	}
}
