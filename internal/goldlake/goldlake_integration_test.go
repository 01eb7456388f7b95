package goldlake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/demo"
	"github.com/fhirstream/fhirstream/internal/gold"
	"github.com/fhirstream/fhirstream/internal/gold/goldtest"
	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/testlake"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

var (
	testVocabulary = filepath.Join("..", "..", "consumers", "omop", "testdata", "vocab")
	ohdsiEras      = filepath.Join("..", "gold", "testdata", "ohdsi_eras.sql")
	builtinConcept = filepath.Join("..", "vocab", "builtin_concepts.tsv")
	sharedData     = filepath.Join("..", "..", "..", "shared", "data")
)

// runDemo runs the demo (which ends with a gold refresh) into a new lake and returns
// the lake directory and the demo's output.
func runDemo(t *testing.T, o demo.Options) (string, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	o.Out = filepath.Join(t.TempDir(), "lake")
	o.Timeout = 5 * time.Minute
	var out strings.Builder
	if err := demo.Run(context.Background(), &out, o); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	return o.Out, out.String()
}

// duckResult is what testdata/duckdb_gold.py answers.
type duckResult struct {
	Types  map[string][]string `json:"types"`
	Counts map[string]int64    `json:"counts"`
	Differ map[string]int64    `json:"differ"`
	Checks map[string][][]any  `json:"checks"`
}

// goldRead says what readGold loads and runs: the tables, concepts to add to concept,
// Athena files to compare tables with (table → file), and query files.
type goldRead struct {
	// catalog and namespace, when set, name a catalog other than the lake directory's
	// embedded one, and the gold namespace in it.
	catalog       *testlake.Catalog
	namespace     string
	tables        []string
	extraConcepts string
	compare       map[string]string
	queries       []string
}

// readGold loads the tables of the lake's gold namespace into DuckDB tables created from
// OHDSI's DDL (ids BIGINT, required columns NOT NULL) with DuckDB's iceberg extension,
// and runs the query files over them: an engine and a schema fhirstream did not write.
func readGold(t *testing.T, lake string, g goldRead) duckResult {
	t.Helper()
	if err := exec.Command("python3", "-c", "import duckdb, duckdb_ext").Run(); err != nil {
		if testlake.Required() {
			t.Fatalf("DuckDB and its iceberg extension are required (FHIRSTREAM_TEST_READERS=require): %v", err)
		}
		t.Skip("python3 -c 'import duckdb, duckdb_ext' failed; pip install -r internal/testlake/py/requirements.txt")
	}
	ddl := goldtest.DDL(t)
	dir := t.TempDir()
	ddlFile := filepath.Join(dir, "ddl.sql")
	if err := os.WriteFile(ddlFile, []byte(goldtest.CreateSQL(ddl, g.tables, true)), 0o644); err != nil {
		t.Fatal(err)
	}
	cat := testlake.SQLCatalog(lakehouse.EmbeddedCatalogName, filepath.Join(lake, lakehouse.CatalogFile), filepath.Join(lake, lakehouse.WarehouseDir))
	ns := goldlake.DefaultNamespace
	if g.catalog != nil {
		cat, ns = *g.catalog, g.namespace
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	var qs []string
	for _, q := range g.queries {
		qs = append(qs, abs(q))
	}
	req := map[string]any{"catalog": cat, "namespace": ns, "ddl": ddlFile, "tables": g.tables, "queries": qs}
	if g.extraConcepts != "" {
		req["extra_concepts"] = abs(g.extraConcepts)
	}
	if g.compare != nil {
		files := map[string]string{}
		for table, f := range g.compare {
			files[table] = abs(f)
		}
		req["compare_files"] = files
	}
	reqFile := filepath.Join(dir, "request.json")
	b, _ := json.Marshal(req)
	if err := os.WriteFile(reqFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", filepath.Join("testdata", "duckdb_gold.py"), reqFile)
	cmd.Env = append(os.Environ(), "TZ=America/New_York") // a non-UTC session must not shift dates
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, stderr.String())
	}
	var res duckResult
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("duckdb output: %v", err)
	}
	return res
}

// cdmTables are the gold namespace's tables: the CDM's and, with a vocabulary, its nine.
func cdmTables(withVocabulary bool) []string {
	tables := goldlake.Tables()
	if withVocabulary {
		for _, d := range vocab.Tables {
			tables = append(tables, d.Name)
		}
	}
	return tables
}

// conformant reads the lake's gold CDM into DuckDB and holds it to gold.Checks (and,
// with a vocabulary, OHDSI's era SQL over the lake's own rows). It returns the result.
func conformant(t *testing.T, lake string, withVocabulary bool) duckResult {
	t.Helper()
	return conformantIn(t, lake, goldRead{}, withVocabulary)
}

// conformantIn is conformant with the catalog and namespace of g.
func conformantIn(t *testing.T, lake string, g goldRead, withVocabulary bool) duckResult {
	t.Helper()
	checks, err := gold.Checks(withVocabulary, withVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	checksFile := filepath.Join(dir, "checks.sql")
	queries := []string{checksFile}
	text := gold.ChecksFile(checks)
	extra := ""
	if withVocabulary {
		text += "-- check: lake condition_era\nSELECT person_id, condition_concept_id, condition_era_start_date, condition_era_end_date, condition_occurrence_count FROM condition_era ORDER BY 1, 2, 3;\n" +
			"-- check: lake drug_era\nSELECT person_id, drug_concept_id, drug_era_start_date, drug_era_end_date, drug_exposure_count, gap_days FROM drug_era ORDER BY 1, 2, 3;\n"
		queries = append(queries, ohdsiEras)
		extra = builtinConcept // concepts of the built-in table a full Athena release has
	}
	if err := os.WriteFile(checksFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g.tables, g.extraConcepts, g.queries = cdmTables(withVocabulary), extra, queries
	res := readGold(t, lake, g)
	for table, mismatches := range res.Types {
		for _, m := range mismatches {
			t.Errorf("%s: %s", table, m)
		}
	}
	for _, c := range checks {
		rows, ran := res.Checks[c.Name]
		if !ran {
			t.Errorf("check %q did not run", c.Name)
		}
		if len(rows) > 0 {
			t.Errorf("%s: %v", c.Name, rows)
		}
	}
	for _, table := range []string{"person", "visit_occurrence", "observation_period", "cdm_source"} {
		if res.Counts[table] == 0 {
			t.Errorf("no %s rows: the checks had nothing to check", table)
		}
	}
	if res.Counts["person"] != res.Counts["observation_period"] {
		t.Errorf("%d persons, %d observation periods", res.Counts["person"], res.Counts["observation_period"])
	}
	if withVocabulary {
		for _, era := range []string{"condition_era", "drug_era"} {
			got, want := lines(res.Checks["lake "+era]), lines(res.Checks[era])
			if !slices.Equal(got, want) {
				t.Errorf("%s: the lake's and OHDSI's SQL over the lake's rows differ\n only lake: %q\n only SQL:  %q", era, minus(got, want), minus(want, got))
			}
			if len(got) == 0 {
				t.Errorf("no %s rows", era)
			}
		}
	}
	t.Logf("%d checks hold on the lake: %d persons, %d visits, %d conditions, %d drug exposures, %d measurements, %d condition eras, %d drug eras",
		len(checks), res.Counts["person"], res.Counts["visit_occurrence"], res.Counts["condition_occurrence"], res.Counts["drug_exposure"],
		res.Counts["measurement"], res.Counts["condition_era"], res.Counts["drug_era"])
	return res
}

func lines(rows [][]any) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		vals := make([]string, len(r))
		for j, v := range r {
			vals[j] = fmt.Sprint(v)
		}
		out[i] = strings.Join(vals, " ")
	}
	slices.Sort(out)
	return out
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	if len(out) > 10 {
		out = append(out[:10], "...")
	}
	return out
}

// TestIntegrationGoldConformsOnGeneratedData: a demo on generated patients with the test
// vocabulary, read from its gold namespace by DuckDB into the OHDSI DDL: every check
// holds, the eras equal OHDSI's era SQL run over the lake's own clinical rows and
// vocabulary, and every table's row count is what the refresh reported.
func TestIntegrationGoldConformsOnGeneratedData(t *testing.T) {
	lake, out := runDemo(t, demo.Options{Patients: 40, Seed: 3, Vocab: testVocabulary})
	res := conformant(t, lake, true)
	if !strings.Contains(out, "The gold CDM") || !strings.Contains(out, "cdm.drug_era") {
		t.Errorf("the demo's summary does not show the gold tables:\n%s", out)
	}
	rep := lastRefresh(t, lake)
	// Without --vocab, the refresh reads the vocabulary the demo loaded into the namespace.
	if rep.VocabularyVersion != "fhirstream-test-1" || !strings.Contains(rep.Vocabulary, "vocabulary tables of cdm") || len(rep.NotBuilt) > 0 {
		t.Errorf("refresh without --vocab: vocabulary %q (%s), not built %v", rep.Vocabulary, rep.VocabularyVersion, rep.NotBuilt)
	}
	for _, table := range cdmTables(false) {
		if got, want := res.Counts[table], rep.Rows(table); got != want {
			t.Errorf("%s: DuckDB reads %d rows, the refresh wrote %d", table, got, want)
		}
	}
}

// lastRefresh refreshes the lake again without force: nothing changed, so it reports
// the demo's refresh as current. Then it forces one, and returns that report.
func lastRefresh(t *testing.T, lake string) *goldlake.Report {
	t.Helper()
	ctx := context.Background()
	rep, err := goldlake.RefreshLake(ctx, lakehouse.Config{Out: lake}, goldlake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Current {
		t.Errorf("a refresh with unchanged input rewrote the gold CDM (refresh %s)", rep.RefreshID)
	}
	forced, err := goldlake.RefreshLake(ctx, lakehouse.Config{Out: lake}, goldlake.Options{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if forced.Current || forced.RefreshID == rep.RefreshID {
		t.Errorf("--force did not refresh: %+v", forced)
	}
	return forced
}

// TestIntegrationGoldConformsOnSharedData: the same on each shared Synthea set.
func TestIntegrationGoldConformsOnSharedData(t *testing.T) {
	for _, set := range []string{"synthea-9-patients", "synthea-13-patients"} {
		t.Run(set, func(t *testing.T) {
			dir := filepath.Join(sharedData, set)
			if files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson")); len(files) == 0 {
				t.Skipf("shared data set %s not found", dir)
			}
			lake, _ := runDemo(t, demo.Options{From: dir, Vocab: testVocabulary})
			conformant(t, lake, true)
		})
	}
}

// TestIntegrationGoldWithoutVocabulary: without a vocabulary the gold CDM still conforms
// (every concept is a built-in one or 0), drug_era is written empty, its snapshot and the
// demo's summary saying why, and condition_era has no rows (no condition has a standard
// concept).
func TestIntegrationGoldWithoutVocabulary(t *testing.T) {
	lake, out := runDemo(t, demo.Options{Patients: 10, Seed: 5})
	res := conformant(t, lake, false)
	if res.Counts["drug_era"] != 0 || res.Counts["condition_era"] != 0 {
		t.Errorf("eras without a vocabulary: %d drug, %d condition", res.Counts["drug_era"], res.Counts["condition_era"])
	}
	if !strings.Contains(out, "NOT BUILT (left empty): drug_era needs a vocabulary") {
		t.Errorf("the demo's summary does not say drug_era was not built:\n%s", out)
	}
	ctx := context.Background()
	lk, err := lakehouse.Open(ctx, lakehouse.Config{Out: lake})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	l, _ := goldlake.CDMLayout(goldlake.DefaultNamespace, "drug_era")
	tbl, err := lk.LoadTable(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if why := tbl.CurrentSnapshot().Summary.Properties[goldlake.SummaryNotBuilt]; !strings.Contains(why, "needs a vocabulary") {
		t.Errorf("drug_era's snapshot summary: not built %q", why)
	}
	// A refresh that fails says so and commits nothing: here, a vocabulary download
	// without six of its files.
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
	before := currentSnapshots(t, lk)
	if _, err := goldlake.Refresh(ctx, lk, goldlake.Options{VocabularyDir: partial, Force: true}); err == nil ||
		!strings.Contains(err.Error(), "nothing committed") || !strings.Contains(err.Error(), "CONCEPT_ANCESTOR.csv") {
		t.Errorf("a refresh with a broken vocabulary: %v", err)
	}
	if after := currentSnapshots(t, lk); !maps.Equal(before, after) {
		t.Errorf("a failed refresh changed the gold tables: %v, then %v", before, after)
	}

	cdmSource := readGold(t, lake, goldRead{tables: []string{"cdm_source"},
		queries: []string{writeQuery(t, "SELECT vocabulary_version, cdm_version, cdm_version_concept_id FROM cdm_source")}}).Checks["q"]
	if fmt.Sprint(cdmSource) != "[[fhirstream built-in v5.4 756265]]" {
		t.Errorf("cdm_source %v", cdmSource)
	}
}

// currentSnapshots are the current snapshot ids of the gold CDM's tables.
func currentSnapshots(t *testing.T, lk *lakehouse.Lake) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, table := range goldlake.Tables() {
		l, err := goldlake.CDMLayout(goldlake.DefaultNamespace, table)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := lk.LoadTable(context.Background(), l)
		if err != nil {
			t.Fatal(err)
		}
		out[table] = tbl.CurrentSnapshot().SnapshotID
	}
	return out
}

// writeQuery writes one query as a query file (check "q").
func writeQuery(t *testing.T, sql string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "q.sql")
	if err := os.WriteFile(f, []byte("-- check: q\n"+sql+";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestIntegrationGoldErasHandChecked: a small export whose eras were worked out by hand
// from OHDSI's rules, through the whole demo with the test vocabulary, read back from
// the lake by DuckDB.
func TestIntegrationGoldErasHandChecked(t *testing.T) {
	dir := t.TempDir()
	supply := `"dispenseRequest":{"expectedSupplyDuration":{"value":30,"unit":"days","system":"http://unitsofmeasure.org","code":"d"}}`
	files := map[string]string{
		"Patient.ndjson": `{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1970-03-15"}`,
		"Condition.ndjson": `{"resourceType":"Condition","id":"c1","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2010-06-19","abatementDateTime":"2010-06-25"}
{"resourceType":"Condition","id":"c2","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2010-07-20"}
{"resourceType":"Condition","id":"c3","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2011-06-19"}`,
		"MedicationRequest.ndjson": `{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"197361"}]},"subject":{"reference":"Patient/p1"},"authoredOn":"2020-03-01",` + supply + `}
{"resourceType":"MedicationRequest","id":"m2","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"197361"}]},"subject":{"reference":"Patient/p1"},"authoredOn":"2020-04-15",` + supply + `}
{"resourceType":"MedicationRequest","id":"m3","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"562251"}]},"subject":{"reference":"Patient/p1"},"authoredOn":"2020-09-01"}`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lake, _ := runDemo(t, demo.Options{From: dir, Vocab: testVocabulary})
	res := readGold(t, lake, goldRead{tables: []string{"condition_era", "drug_era", "observation_period", "cdm_source"}, queries: []string{writeQuery(t, `SELECT 'condition', condition_concept_id, condition_era_start_date, condition_era_end_date, condition_occurrence_count, NULL FROM condition_era
UNION ALL SELECT 'drug', drug_concept_id, drug_era_start_date, drug_era_end_date, drug_exposure_count, gap_days FROM drug_era
UNION ALL SELECT 'period', period_type_concept_id, observation_period_start_date, observation_period_end_date, NULL, NULL FROM observation_period
UNION ALL SELECT 'source', cdm_version_concept_id, source_release_date, cdm_release_date, NULL, NULL FROM cdm_source WHERE vocabulary_version = 'fhirstream-test-1'
ORDER BY 1, 3, 2`)}})
	today := time.Now().UTC().Format(time.DateOnly)
	want := []string{
		// 201826 (SNOMED 44054006, and ICD-10-CM E11.9 through 'Maps to'): 06-19..06-25,
		// then 07-20 (25 days later: the same era) with no end (start + 1 day); a year on,
		// a new era of one day.
		"condition 201826 2010-06-19 2010-07-21 2 <nil>",
		"condition 201826 2011-06-19 2011-06-20 1 <nil>",
		// amlodipine (1332418) from two 30-day supplies, 03-01..03-30 and 04-15..05-14: 16
		// days apart, one era of 74 days with 58 exposed; amoxicillin (1713332) and
		// clavulanate (1702364) from one request without a supply (end = start).
		"drug 1332418 2020-03-01 2020-05-14 2 16",
		"drug 1713332 2020-09-01 2020-09-01 1 0",
		"drug 1702364 2020-09-01 2020-09-01 1 0",
		"period 32882 2010-06-19 2020-09-01 <nil> <nil>",
		"source 756265 " + today + " " + today + " <nil> <nil>", // the demo's export ran today
	}
	got := lines(res.Checks["q"])
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("gold tables\n got  %q\n want %q", got, want)
	}
}
