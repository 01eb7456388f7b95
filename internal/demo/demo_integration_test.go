package demo

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
	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/testlake"
	"github.com/fhirstream/fhirstream/schemas"
)

// demoFor runs the demo as `fhirstream demo` would, with the lake in o.Out, and returns
// its output.
func demoFor(t *testing.T, o Options) (string, error) {
	t.Helper()
	o.Timeout = 5 * time.Minute
	var out strings.Builder
	err := Run(context.Background(), &out, o)
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
	out, err := demoFor(t, Options{From: dir, Vocab: vocabDir, Out: lake})
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
	out, err = demoFor(t, Options{From: dir, Out: lake})
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
			out, err := demoFor(t, Options{From: dir, Out: filepath.Join(t.TempDir(), "lake")})
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
			case *array.Date32:
				vals[i] = int64(a.Value(row)) // days since 1970-01-01
			default:
				t.Fatalf("%s.%s is %s, not an integer or date column", tableName, columns[i], c.DataType())
			}
		}
		rows = append(rows, vals)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestIntegrationDemoDeidKeepsTheCDM runs the demo on each shared Synthea set twice, as
// it is and through the Safe Harbor (date-shifting) de-identification, and reads both
// lakes: every OMOP table has the same rows, the person and visit links of the
// de-identified lake all resolve, and every visit keeps its length (dates move, per
// patient, by one offset).
func TestIntegrationDemoDeidKeepsTheCDM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo four times")
	}
	rules, err := deid.Preset("safe-harbor-dateshift")
	if err != nil {
		t.Fatal(err)
	}
	keys := deid.Keys{CryptoHash: []byte("demo-test-hmac-key-0123456789abc"), DateShift: []byte("demo-test-shift-key-0123456789ab")}
	if err := RandomKeys(&keys); err != nil {
		t.Fatal(err)
	}
	for _, set := range []string{"synthea-9-patients", "synthea-13-patients"} {
		t.Run(set, func(t *testing.T) {
			dir := filepath.Join("..", "..", "..", "shared", "data", set)
			if _, err := os.Stat(dir); err != nil {
				t.Skipf("shared data set %s not found", dir)
			}
			plain, deidLake := filepath.Join(t.TempDir(), "lake"), filepath.Join(t.TempDir(), "lake")
			if out, err := demoFor(t, Options{From: dir, Out: plain}); err != nil {
				t.Fatalf("demo: %v\n%s", err, out)
			}
			if out, err := demoFor(t, Options{From: dir, Out: deidLake, Deid: &pipeline.DeidConfig{Rules: rules, Keys: keys}}); err != nil {
				t.Fatalf("demo --deid: %v\n%s", err, out)
			}
			for _, table := range schemas.OMOPTables() {
				if table == "observation_period" {
					continue // derived by gold, not by the stage
				}
				tab, err := schemas.OMOPTable(table)
				if err != nil {
					t.Fatal(err)
				}
				id := tab.Columns[0].Name // the primary key, or person_id for death
				if a, b := len(lakeInts(t, plain, table, id)), len(lakeInts(t, deidLake, table, id)); a != b {
					t.Errorf("omop.%s: %d rows, %d de-identified", table, a, b)
				}
			}
			persons := map[int64]bool{}
			for _, r := range lakeInts(t, deidLake, "person", "person_id") {
				persons[r[0]] = true
			}
			visits := map[int64]bool{}
			for _, r := range lakeInts(t, deidLake, "visit_occurrence", "visit_occurrence_id", "person_id") {
				visits[r[0]] = true
				if !persons[r[1]] {
					t.Errorf("visit %d: person %d is not in person", r[0], r[1])
				}
			}
			for _, table := range []string{"condition_occurrence", "measurement", "drug_exposure", "procedure_occurrence"} {
				for _, r := range lakeInts(t, deidLake, table, "person_id", "visit_occurrence_id") {
					if !persons[r[0]] {
						t.Errorf("%s: person %d is not in person", table, r[0])
					}
					if r[1] != 0 && !visits[r[1]] {
						t.Errorf("%s: visit %d is not in visit_occurrence", table, r[1])
					}
				}
			}
			// Dates over 89 years old go to Safe Harbor's 90-or-older year instead of
			// moving, so a visit then keeps no length: compare the others, and count them.
			cutoff := time.Now().AddDate(-89, 0, -60).Unix() / 86400
			lengths := func(lake string, old func(start int64) bool) (kept []int64, aggregated int) {
				for _, r := range lakeInts(t, lake, "visit_occurrence", "visit_start_date", "visit_end_date") {
					if old(r[0]) {
						aggregated++
						continue
					}
					kept = append(kept, r[1]-r[0])
				}
				slices.Sort(kept)
				return kept, aggregated
			}
			a, oldPlain := lengths(plain, func(start int64) bool { return start < cutoff })
			b, oldDeid := lengths(deidLake, func(start int64) bool { return start < cutoff+150 })
			if !slices.Equal(a, b) || oldPlain != oldDeid {
				t.Errorf("visit lengths differ after de-identification: %d kept of %d over 89 years old, %d of %d de-identified", len(a), oldPlain, len(b), oldDeid)
			}
			if len(a) == 0 {
				t.Error("no visit kept its dates: the length check compared nothing")
			}
			t.Logf("%d visits keep their lengths; %d over 89 years old went to the 90-or-older year", len(a), oldPlain)
		})
	}
}
