package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/testlake"
)

// demoFor runs the demo as `fhirstream demo` would, with the metrics endpoint off and
// the lake in o.out, and returns its output.
func demoFor(t *testing.T, o demoOptions) (string, error) {
	t.Helper()
	o.timeout = 5 * time.Minute
	o.obs = &observability{addr: "off", ready: obs.NewReadiness()}
	var out strings.Builder
	err := runDemo(context.Background(), &out, &o)
	return out.String(), err
}

// TestIntegrationDemoMapsWithVocabulary runs the demo on a small export with the
// project's test vocabulary (consumers/omop/testdata/vocab) and reads the lake: codes the
// vocabulary knows are written as their standard concepts (a SNOMED code as itself, an
// ICD-10-CM code through 'Maps to', an RxNorm drug), with their own concepts as source
// concepts; without --vocab the same SNOMED code is concept 0.
func TestIntegrationDemoMapsWithVocabulary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	dir := t.TempDir()
	files := map[string]string{
		"Patient.ndjson": `{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1970-03-15"}`,
		"Condition.ndjson": `{"resourceType":"Condition","id":"c1","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2010-06-19"}
{"resourceType":"Condition","id":"c2","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2011-06-19"}`,
		"MedicationRequest.ndjson": `{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"197361"}]},"subject":{"reference":"Patient/p1"},"authoredOn":"2020-03-01"}`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vocabDir := filepath.Join("..", "..", "consumers", "omop", "testdata", "vocab")
	lake := filepath.Join(t.TempDir(), "lake")
	out, err := demoFor(t, demoOptions{from: dir, vocab: vocabDir, out: lake})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	got := lakeInts(t, lake, "condition_occurrence", "condition_concept_id", "condition_source_concept_id")
	slices.SortFunc(got, func(a, b []int64) int { return int(a[1] - b[1]) })
	if want := [][]int64{{201826, 201826}, {201826, 45576876}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("condition_occurrence (concept, source concept) = %v, want %v", got, want)
	}
	if got := lakeInts(t, lake, "drug_exposure", "drug_concept_id"); len(got) != 1 || got[0][0] != 1332419 {
		t.Errorf("drug_exposure concepts %v, want [[1332419]]", got)
	}

	lake = filepath.Join(t.TempDir(), "lake")
	out, err = demoFor(t, demoOptions{from: dir, out: lake})
	if err != nil {
		t.Fatalf("demo without --vocab: %v\n%s", err, out)
	}
	for _, r := range lakeInts(t, lake, "condition_occurrence", "condition_concept_id") {
		if r[0] != 0 {
			t.Errorf("without a vocabulary a condition mapped to %d", r[0])
		}
	}
}

// TestIntegrationDemoReconcilesSharedData runs the demo on each shared Synthea set: the
// mapping stage's reconciliation balances for every resource type and agrees with the
// counts taken from the topics, or the demo fails.
func TestIntegrationDemoReconcilesSharedData(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	for _, set := range []string{"synthea-9-patients", "synthea-13-patients"} {
		t.Run(set, func(t *testing.T) {
			dir := filepath.Join("..", "..", "..", "shared", "data", set)
			if _, err := os.Stat(dir); err != nil {
				t.Skipf("shared data set %s not found", dir)
			}
			out, err := demoFor(t, demoOptions{from: dir, out: filepath.Join(t.TempDir(), "lake")})
			if err != nil {
				t.Fatalf("demo: %v\n%s", err, out)
			}
			for _, want := range []string{
				"every record read is mapped, deleted, dropped by a rule or dead-lettered",
				"= the records on the unique topics and omop's dead letters on the dead-letter topic, counted there",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("summary lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "MISMATCH") || strings.Contains(out, "FAILED") {
				t.Errorf("summary reports a failure:\n%s", out)
			}
		})
	}
}

// lakeInts reads the named integer columns of every row of an OMOP table of the lake
// (through iceberg-go's scan: the table's current state).
func lakeInts(t *testing.T, lake, tableName string, columns ...string) [][]int64 {
	t.Helper()
	ctx := context.Background()
	lk, err := lakehouse.Open(ctx, lakehouse.Config{Out: lake})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	l, err := lakehouse.OMOPLayout(tableName)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := lk.LoadTable(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]int64
	err = testlake.ScanColumns(ctx, tbl, columns, func(cols []arrow.Array, row int) {
		vals := make([]int64, len(cols))
		for i, c := range cols {
			switch a := c.(type) {
			case *array.Int64:
				vals[i] = a.Value(row)
			case *array.Int32:
				vals[i] = int64(a.Value(row))
			default:
				t.Fatalf("%s.%s is %s, not an integer column", tableName, columns[i], c.DataType())
			}
		}
		rows = append(rows, vals)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
