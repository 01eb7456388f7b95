package gold

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/gold/goldtest"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

// The DuckDB harness: tables created from OHDSI's CDM v5.4 DDL source (the field-level
// CSV the official DDL is generated from), loaded with rows, and SQL run over them by
// testdata/duckdb_run.py. Tests using it skip when the reference or DuckDB is absent.

// cdmDDL is OHDSI's CDM v5.4 DDL (goldtest.DDL); the test skips without it.
func cdmDDL(t *testing.T) map[string][]cdmColumn { return goldtest.DDL(t) }

type cdmColumn = goldtest.Column

// writeTable writes rows as dir/<table>.csv with the DDL's columns (the rows' other keys,
// the _fhir_ envelope, are left out).
func writeTable(t *testing.T, dir string, ddl map[string][]cdmColumn, table string, rows []Row) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, table+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	cols := ddl[table]
	if len(cols) == 0 {
		t.Fatalf("no DDL for %s", table)
	}
	rec := make([]string, len(cols))
	for i, c := range cols {
		rec[i] = c.Name
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		for i, c := range cols {
			rec[i] = csvValue(r[c.Name], c.SQLType)
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		t.Fatal(err)
	}
}

func csvValue(v any, sqlType string) string {
	switch x := v.(type) {
	case nil:
		return ""
	case int64:
		return strconv.FormatInt(x, 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		if sqlType == "DATE" {
			return x.Format(time.DateOnly)
		}
		return x.Format("2006-01-02 15:04:05.999999")
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// runDuckDB creates tables (NOT NULL per the DDL when notNull), loads data, runs the
// queries files and returns their results by check name.
func runDuckDB(t *testing.T, ddl map[string][]cdmColumn, data map[string][]Row, notNull bool, queries ...string) map[string][][]any {
	t.Helper()
	if err := exec.Command("python3", "-c", "import duckdb").Run(); err != nil {
		t.Skip("python3 -c 'import duckdb' failed; CI installs it with pip (duckdb==1.4.4)")
	}
	dir := t.TempDir()
	var tables []string
	for table := range ddl {
		tables = append(tables, table)
	}
	slices.Sort(tables)
	ddlFile := filepath.Join(dir, "ddl.sql")
	if err := os.WriteFile(ddlFile, []byte(goldtest.CreateSQL(ddl, tables, notNull)), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for table, rows := range data {
		writeTable(t, dataDir, ddl, table, rows)
	}
	args := append([]string{filepath.Join("testdata", "duckdb_run.py"), ddlFile, dataDir}, queries...)
	cmd := exec.Command("python3", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, stderr.String())
	}
	var res map[string][][]any
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.UseNumber() // ids as written, not as float64
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("duckdb output: %v", err)
	}
	return res
}

// vocabularyRows reads tables of the test vocabulary as rows named by the DDL's columns.
func vocabularyRows(t *testing.T, dir string, tables ...string) map[string][]Row {
	t.Helper()
	out := map[string][]Row{}
	for _, name := range tables {
		def, _ := vocab.Table(name)
		_, ok, err := def.StreamFile(dir, func(r vocab.Row) error {
			row := Row{}
			for i, c := range def.Columns {
				row[c.Name] = r[i]
			}
			out[name] = append(out[name], row)
			return nil
		})
		if err != nil || !ok {
			t.Fatalf("%s: %v (present %v)", name, err, ok)
		}
	}
	return out
}

const testVocabulary = "../../consumers/omop/testdata/vocab"

// TestErasMatchOHDSISQL holds ConditionEras and DrugEras to OHDSI's era SQL
// (testdata/ohdsi_eras.sql) run by DuckDB over the same random rows: overlapping,
// touching and distant occurrences, missing ends, days supplies of every kind, unmapped
// concepts, drugs with two ingredients and drugs with none.
func TestErasMatchOHDSISQL(t *testing.T) {
	ddl := cdmDDL(t)
	rng := rand.New(rand.NewPCG(7, 13))
	base := d("2020-01-01")
	at := func() time.Time { return base.AddDate(0, 0, rng.IntN(400)) }
	conditionConcepts := []int32{0, 201826, 316866, 432867}
	drugConcepts := []int32{0, 1332419, 1308251, 19059056, 1713694, 1112807, 4249893 /* not a drug: no ingredient */}
	var conditions, drugs []Row
	for p := int64(1); p <= 150; p++ {
		for range rng.IntN(12) {
			start := at()
			r := Row{"condition_occurrence_id": int64(len(conditions) + 1), "person_id": p,
				"condition_concept_id": conditionConcepts[rng.IntN(len(conditionConcepts))], "condition_start_date": start,
				"condition_type_concept_id": int32(32817)}
			if rng.IntN(3) > 0 {
				r["condition_end_date"] = start.AddDate(0, 0, rng.IntN(40))
			}
			conditions = append(conditions, r)
		}
		for range rng.IntN(15) {
			start := at()
			r := Row{"drug_exposure_id": int64(len(drugs) + 1), "person_id": p,
				"drug_concept_id": drugConcepts[rng.IntN(len(drugConcepts))], "drug_exposure_start_date": start,
				"drug_type_concept_id": int32(32817)}
			switch rng.IntN(4) {
			case 0:
				r["drug_exposure_end_date"] = start.AddDate(0, 0, rng.IntN(60))
			case 1:
				r["drug_exposure_end_date"] = start
			}
			switch rng.IntN(5) {
			case 0:
				r["days_supply"] = int32(rng.IntN(45))
			case 1:
				r["days_supply"] = int32(0)
			case 2:
				r["days_supply"] = int32(-3)
			}
			drugs = append(drugs, r)
		}
	}
	data := vocabularyRows(t, testVocabulary, "concept", "concept_ancestor")
	data["condition_occurrence"], data["drug_exposure"] = conditions, drugs
	src := Tables(data)

	ing, err := LoadIngredients(testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	ce, err := ConditionEras(src)
	if err != nil {
		t.Fatal(err)
	}
	de, err := DrugEras(src, ing)
	if err != nil {
		t.Fatal(err)
	}
	want := runDuckDB(t, ddl, data, false, filepath.Join("testdata", "ohdsi_eras.sql"))
	compare := func(name string, got []Row, prefix string, cols ...string) {
		var g []string
		for _, r := range got {
			vals := make([]string, len(cols))
			for i, c := range cols {
				vals[i] = csvValue(r[c], "DATE")
			}
			g = append(g, strings.Join(vals, " "))
		}
		var w []string
		for _, r := range want[name] {
			vals := make([]string, len(r))
			for i, v := range r {
				vals[i] = fmt.Sprint(v)
			}
			w = append(w, strings.Join(vals, " "))
		}
		slices.Sort(g)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			t.Errorf("%s: Go and OHDSI SQL differ\n only Go:  %q\n only SQL: %q", name, minus(g, w), minus(w, g))
		}
		if len(g) < 50 {
			t.Errorf("%s: only %d eras: the random data exercise too little", name, len(g))
		}
		t.Logf("%s: %d eras agree", name, len(g))
	}
	compare("condition_era", ce, "condition", "person_id", "condition_concept_id", "condition_era_start_date", "condition_era_end_date", "condition_occurrence_count")
	compare("drug_era", de, "drug", "person_id", "drug_concept_id", "drug_era_start_date", "drug_era_end_date", "drug_exposure_count", "gap_days")
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
