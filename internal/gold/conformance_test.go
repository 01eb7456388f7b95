package gold

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

type emitted []stage.Record

func (c *emitted) Emit(r stage.Record) { *c = append(*c, r) }

// mapped holds the CDM the mapping stage writes for a sequence of resources, decoded to
// the map form and folded as a sink applies the stage's contract (docs/omop-mapping.md,
// "Versions and deletions"): a row with _fhir_replaces drops the earlier rows of its
// _fhir_key in its table, a retraction row is not kept. The shared Synthea sets repeat
// some resources (dedupe would drop the exact repeats), so the fold matters there.
type mapped struct {
	tables   Tables
	rejected map[string]int // "<Type>: <class>"
}

// mapResources runs the mapping stage's Processor (no broker: the stage's logic alone)
// over each resource that each yields and folds its rows into the current CDM.
func mapResources(t *testing.T, v *vocab.Vocabulary, each func(func(line []byte))) mapped {
	t.Helper()
	p, err := omop.New(omop.Config{Topics: schemas.MustTopics(""), Vocab: v})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	m := mapped{tables: Tables{}, rejected: map[string]int{}}
	seen := map[string]bool{}                // keys forwarded before, as dedupe would mark them
	current := map[string]map[string][]Row{} // table → _fhir_key → rows
	var order []string                       // table + "\x00" + key, first-seen order
	each(func(line []byte) {
		var head struct{ ResourceType, ID string }
		_ = json.Unmarshal(line, &head)
		key := head.ResourceType + "/" + head.ID
		in := &stage.Record{Key: []byte(key), Value: line}
		if seen[key] {
			in.Headers = []stage.Header{{Key: schemas.HeaderPreviousVersion, Value: []byte("")}}
		}
		var out emitted
		if err := p.Process(context.Background(), in, nil, &out); err != nil {
			r, ok := stage.AsRejection(err)
			if !ok {
				t.Fatalf("transient error: %v", err)
			}
			m.rejected[head.ResourceType+": "+r.Class]++
			return
		}
		seen[key] = true
		for _, rec := range out {
			table, row, err := codec.Decode(context.Background(), rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			byKey := current[table]
			if byKey == nil {
				byKey = map[string][]Row{}
				current[table] = byKey
			}
			k := row[schemas.ColFHIRKey].(string)
			if _, known := byKey[k]; !known {
				order = append(order, table+"\x00"+k)
			}
			if row[schemas.ColFHIRReplaces] == true {
				byKey[k] = byKey[k][:0:0]
			}
			if row[schemas.ColFHIRDeleted] != true {
				byKey[k] = append(byKey[k], row)
			} else if byKey[k] == nil {
				byKey[k] = []Row{}
			}
		}
	})
	for _, tk := range order {
		table, k, _ := strings.Cut(tk, "\x00")
		m.tables[table] = append(m.tables[table], current[table][k]...)
	}
	return m
}

// conformant runs Refresh over m and the conformance checks in DuckDB over the result:
// the clinical tables after link resolution, the gold tables, and (with a vocabulary)
// its concepts together with the built-in ones.
func conformant(t *testing.T, m mapped, vocabularyDir string) *Result {
	t.Helper()
	ddl := cdmDDL(t)
	var voc VocabularyTables
	if vocabularyDir != "" {
		voc = FileTables(vocabularyDir)
	}
	res, err := Refresh(m.tables, Options{Vocabulary: voc, Source: SourceInfo{
		Name: "test export", Abbreviation: "test", Holder: "fhirstream tests",
		ReleaseDate: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), Refreshed: time.Now(),
		ETLVersion: "test", ETLReference: "docs/omop-mapping.md"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("refresh:\n%s", res.Report())
	for table, err := range res.NotBuilt {
		if table != "drug_era" || vocabularyDir != "" {
			t.Errorf("%s not built: %v", table, err)
		}
	}
	data := map[string][]Row{}
	cdm := res.Resolver.Source(m.tables)
	for _, table := range schemas.OMOPTables() {
		for r, err := range cdm.Rows(table) {
			if err != nil {
				t.Fatal(err)
			}
			data[table] = append(data[table], r)
		}
	}
	for _, table := range DerivedTables {
		if data[table], err = collect(res.Rows(table)); err != nil {
			t.Fatal(err)
		}
	}
	if vocabularyDir != "" {
		data["concept"] = conceptsWithBuiltin(t, vocabularyDir)
	}
	checks, err := Checks(vocabularyDir != "", vocabularyDir != "")
	if err != nil {
		t.Fatal(err)
	}
	// omop.ObservationPeriodSQL, the view Parquet readers use, must give gold's periods.
	view := omop.ObservationPeriodSQL[strings.Index(omop.ObservationPeriodSQL, "WITH events"):]
	file := filepath.Join(t.TempDir(), "checks.sql")
	if err := os.WriteFile(file, []byte(ChecksFile(checks)+"-- check: "+viewCheck+"\n"+view), 0o644); err != nil {
		t.Fatal(err)
	}
	got := runDuckDB(t, ddl, data, true, file)
	var fromView, fromGold []string
	for _, r := range got[viewCheck] {
		fromView = append(fromView, fmt.Sprintf("%v %v %v %v", r[1], r[2], r[3], r[4]))
	}
	for _, r := range data["observation_period"] {
		fromGold = append(fromGold, fmt.Sprintf("%v %v %v %v", r["person_id"], csvValue(r["observation_period_start_date"], "DATE"),
			csvValue(r["observation_period_end_date"], "DATE"), r["period_type_concept_id"]))
	}
	slices.Sort(fromView)
	slices.Sort(fromGold)
	if !slices.Equal(fromView, fromGold) {
		t.Errorf("omop.ObservationPeriodSQL and gold differ\n view %q\n gold %q", minus(fromView, fromGold), minus(fromGold, fromView))
	}
	delete(got, viewCheck)
	if len(got) != len(checks) {
		t.Fatalf("%d check results for %d checks", len(got), len(checks))
	}
	for _, c := range checks {
		if rows := got[c.Name]; len(rows) > 0 {
			t.Errorf("%s: %v", c.Name, rows)
		}
	}
	for _, table := range []string{"person", "visit_occurrence", "observation_period"} {
		if len(data[table]) == 0 {
			t.Errorf("no %s rows: the checks had nothing to check", table)
		}
	}
	t.Logf("%d checks hold over %d persons, %d visits, %d conditions, %d drug exposures, %d condition eras, %d drug eras",
		len(checks), len(data["person"]), len(data["visit_occurrence"]), len(data["condition_occurrence"]), len(data["drug_exposure"]),
		len(data["condition_era"]), len(data["drug_era"]))
	return res
}

const viewCheck = "omop.ObservationPeriodSQL"

// conceptsWithBuiltin is the concept table of a CDM mapped with the vocabulary in dir:
// its CONCEPT and the built-in fixed concepts the mapper writes beside it (gender, type
// concepts, units), which a full Athena release contains.
func conceptsWithBuiltin(t *testing.T, dir string) []Row {
	t.Helper()
	rows := vocabularyRows(t, dir, "concept")["concept"]
	seen := map[int64]bool{}
	for _, r := range rows {
		seen[r["concept_id"].(int64)] = true
	}
	def, _ := vocab.Table("concept")
	f, err := os.Open(filepath.Join("..", "vocab", "builtin_concepts.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := def.StreamTable(f, func(r vocab.Row) error {
		if !seen[r[0].(int64)] {
			row := Row{}
			for i, c := range def.Columns {
				row[c.Name] = r[i]
			}
			rows = append(rows, row)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestConformanceGenerated maps a generated export with the test vocabulary and checks
// the CDM it makes, gold tables included, in DuckDB tables created from the OHDSI DDL.
func TestConformanceGenerated(t *testing.T) {
	v, _, err := vocab.Load(testVocabulary)
	if err != nil {
		t.Fatal(err)
	}
	m := mapResources(t, v, func(yield func([]byte)) {
		err := synth.Generate(context.Background(), synth.Config{Patients: 40, Seed: 3}, func(_ string, line []byte) error {
			yield(bytes.Clone(line))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	if len(m.rejected) > 0 {
		t.Errorf("rejected: %v", m.rejected)
	}
	res := conformant(t, m, testVocabulary)
	if res.Len("drug_era") == 0 {
		t.Error("no drug eras from generated data and the test vocabulary")
	}
}

// TestConformanceSharedData maps each shared Synthea set with the test vocabulary (which
// knows the commonest Synthea conditions and drugs) and checks the CDM it makes.
func TestConformanceSharedData(t *testing.T) {
	for _, set := range []string{"synthea-9-patients", "synthea-13-patients"} {
		t.Run(set, func(t *testing.T) {
			dir := filepath.Join("..", "..", "..", "shared", "data", set)
			files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
			if len(files) == 0 {
				t.Skipf("shared data set %s not found", dir)
			}
			v, _, err := vocab.Load(testVocabulary)
			if err != nil {
				t.Fatal(err)
			}
			m := mapResources(t, v, func(yield func([]byte)) {
				for _, name := range files {
					f, err := os.Open(name)
					if err != nil {
						t.Fatal(err)
					}
					sc := bufio.NewScanner(f)
					sc.Buffer(make([]byte, 1<<20), 64<<20)
					for sc.Scan() {
						if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 && !strings.HasPrefix(string(line), "#") {
							yield(bytes.Clone(line))
						}
					}
					if err := sc.Err(); err != nil {
						t.Fatal(err)
					}
					f.Close()
				}
			})
			if len(m.rejected) > 0 {
				t.Errorf("rejected: %v", m.rejected)
			}
			conformant(t, m, testVocabulary)
		})
	}
}

// TestConformanceWithoutVocabulary: without a vocabulary the CDM still conforms (every
// concept is a built-in one or 0), condition_era has no rows (no condition has a
// standard concept), and drug_era is not built, saying why.
func TestConformanceWithoutVocabulary(t *testing.T) {
	m := mapResources(t, nil, func(yield func([]byte)) {
		err := synth.Generate(context.Background(), synth.Config{Patients: 10, Seed: 5}, func(_ string, line []byte) error {
			yield(bytes.Clone(line))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	res := conformant(t, m, "")
	if err := res.NotBuilt["drug_era"]; !errors.Is(err, ErrNoVocabulary) {
		t.Errorf("drug_era without a vocabulary: %v, want ErrNoVocabulary", err)
	}
	if !strings.Contains(res.Report(), "drug_era: NOT BUILT: drug_era needs a vocabulary") {
		t.Errorf("report does not say drug_era was not built:\n%s", res.Report())
	}
}

// TestChecksCatchViolations feeds the checks a small CDM with one violation of each
// kind and expects each to be reported: the checks can fail.
func TestChecksCatchViolations(t *testing.T) {
	ddl := cdmDDL(t)
	person := func(id int64, year int32) Row {
		return Row{"person_id": id, "gender_concept_id": int32(0), "year_of_birth": year, "race_concept_id": int32(0), "ethnicity_concept_id": int32(0)}
	}
	visit := func(id, person int64, start, end string, provider any) Row {
		return Row{"visit_occurrence_id": id, "person_id": person, "visit_concept_id": int32(9202), "visit_start_date": d(start),
			"visit_end_date": d(end), "visit_type_concept_id": int32(32817), "provider_id": provider}
	}
	period := func(person int64, start, end string) Row {
		return Row{"observation_period_id": person, "person_id": person, "observation_period_start_date": d(start),
			"observation_period_end_date": d(end), "period_type_concept_id": int32(32882)}
	}
	data := map[string][]Row{
		"person": {person(1, 1980), person(2, 1990), person(3, 1970)},
		"visit_occurrence": {
			visit(10, 1, "2020-01-01", "2020-01-02", int64(999)), // provider 999 does not exist
			visit(11, 2, "1985-01-01", "1985-01-01", nil),        // before birth (1990)
			visit(12, 3, "2020-05-10", "2020-05-01", nil),        // ends before it starts
			visit(13, 3, "2021-06-01", "2021-06-01", nil),        // outside its period, > 60 days after death
		},
		"death":              {{"person_id": int64(3), "death_date": d("2021-01-01")}},
		"observation_period": {period(1, "2020-01-01", "2020-01-02"), period(1, "2020-01-01", "2020-01-02"), period(3, "2020-05-01", "2021-01-01")},
		// no cdm_source row, no period for person 2
	}
	checks, err := Checks(false, false)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "checks.sql")
	if err := os.WriteFile(file, []byte(ChecksFile(checks)), 0o644); err != nil {
		t.Fatal(err)
	}
	got := runDuckDB(t, ddl, data, true, file)
	want := []string{
		"foreign key visit_occurrence.provider_id",
		"no visit_occurrence before birth",
		"no end before start in visit_occurrence",
		"no visit_occurrence more than 60 days after death",
		"observation_period covers visit_occurrence",
		"one observation_period per person",
		"one cdm_source row",
		"primary key of observation_period",
	}
	var failed []string
	for _, c := range checks {
		if len(got[c.Name]) > 0 {
			failed = append(failed, c.Name)
		}
	}
	slices.Sort(failed)
	slices.Sort(want)
	if !slices.Equal(failed, want) {
		t.Errorf("failed checks\n got  %q\n want %q", failed, want)
	}
}
