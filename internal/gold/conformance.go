package gold

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fhirstream/fhirstream/schemas"
)

// Check is one conformance check of a CDM: SQL (DuckDB, close to ANSI) over tables named
// as the CDM's, returning one row per violation found (at most a few); no row means the
// check holds. The same checks run on a test's DuckDB tables and on the lake.
type Check struct {
	Name string
	SQL  string
}

// The clinical tables the mapper writes, the gold tables, and their relations. Ends ""
// mark tables whose events are single days.
var (
	// eventDates: per event table, its start and end date columns.
	eventDates = []struct{ table, start, end string }{
		{"visit_occurrence", "visit_start_date", "visit_end_date"},
		{"condition_occurrence", "condition_start_date", "condition_end_date"},
		{"procedure_occurrence", "procedure_date", "procedure_end_date"},
		{"drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"},
		{"device_exposure", "device_exposure_start_date", "device_exposure_end_date"},
		{"measurement", "measurement_date", ""},
		{"observation", "observation_date", ""},
	}
	// goldRequired are the required columns of the gold tables package schemas has no
	// Avro schema for (CDM v5.4 field-level definitions).
	goldRequired = map[string][]string{
		"cdm_source": {"cdm_source_name", "cdm_source_abbreviation", "cdm_holder", "source_release_date",
			"cdm_release_date", "cdm_version_concept_id", "vocabulary_version"},
		"condition_era": {"condition_era_id", "person_id", "condition_concept_id", "condition_era_start_date", "condition_era_end_date"},
		"drug_era":      {"drug_era_id", "person_id", "drug_concept_id", "drug_era_start_date", "drug_era_end_date"},
	}
	goldPersonTables = []string{"observation_period", "condition_era", "drug_era"}
)

// Checks returns the conformance checks of a CDM written by fhirstream: every required
// column filled, primary keys unique, every foreign key to person, visit_occurrence,
// provider, care_site and location resolved (and, with vocabulary, every non-zero
// concept id in concept), one observation_period per person covering all of the person's
// events, one cdm_source row, no event before birth or more than 60 days after death, no
// end before start. The sources of these rules: the CDM v5.4 field-level definitions
// (required, keys) and the Data Quality Dashboard's checks (plausibleAfterBirth,
// plausibleBeforeDeath with its 60 days, plausibleStartBeforeEnd). The drug_era table is
// checked when drugEra is set (it needs a vocabulary to exist).
func Checks(vocabulary, drugEra bool) ([]Check, error) {
	var cs []Check
	add := func(name, format string, args ...any) {
		cs = append(cs, Check{Name: name, SQL: fmt.Sprintf(format, args...)})
	}
	gold := []string{"cdm_source", "condition_era"}
	if drugEra {
		gold = append(gold, "drug_era")
	}
	// Required columns and primary keys.
	required := map[string][]string{}
	var pk = map[string]string{}
	for _, name := range schemas.OMOPTables() {
		t, err := schemas.OMOPTable(name)
		if err != nil {
			return nil, err
		}
		for _, c := range t.CDMColumns() {
			if c.Required {
				required[name] = append(required[name], c.Name)
			}
		}
		if first := t.Columns[0].Name; first == name+"_id" {
			pk[name] = first
		}
	}
	for _, g := range gold {
		required[g] = goldRequired[g]
		if g != "cdm_source" {
			pk[g] = g + "_id"
		}
	}
	for _, table := range slices.Sorted(maps.Keys(required)) {
		var nulls []string
		for _, c := range required[table] {
			nulls = append(nulls, c+" IS NULL")
		}
		add("required columns of "+table, "SELECT count(*) FROM %s WHERE %s HAVING count(*) > 0", table, strings.Join(nulls, " OR "))
	}
	for _, table := range slices.Sorted(maps.Keys(pk)) {
		add("primary key of "+table, "SELECT %[2]s, count(*) FROM %[1]s GROUP BY %[2]s HAVING count(*) > 1 LIMIT 5", table, pk[table])
	}
	// Foreign keys: the mapper's (fkColumns) and the gold tables' person_id.
	type fk struct{ table, column, target string }
	var fks []fk
	for table, cols := range fkColumns {
		for _, c := range cols {
			fks = append(fks, fk{table, c.column, c.target})
		}
	}
	for _, g := range goldPersonTables {
		if g != "drug_era" || drugEra {
			fks = append(fks, fk{g, "person_id", "person"})
		}
	}
	slices.SortFunc(fks, func(a, b fk) int { return strings.Compare(a.table+"."+a.column, b.table+"."+b.column) })
	for _, f := range fks {
		add(fmt.Sprintf("foreign key %s.%s", f.table, f.column),
			"SELECT t.%[2]s FROM %[1]s t LEFT JOIN %[3]s x ON x.%[4]s = t.%[2]s WHERE t.%[2]s IS NOT NULL AND x.%[4]s IS NULL LIMIT 5",
			f.table, f.column, f.target, targetKeys[f.target])
	}
	if vocabulary {
		for _, name := range schemas.OMOPTables() {
			t, _ := schemas.OMOPTable(name)
			for _, c := range t.CDMColumns() {
				if strings.HasSuffix(c.Name, "_concept_id") {
					add(fmt.Sprintf("concept %s.%s", name, c.Name),
						"SELECT DISTINCT t.%[2]s FROM %[1]s t LEFT JOIN concept c ON c.concept_id = t.%[2]s WHERE t.%[2]s IS NOT NULL AND t.%[2]s != 0 AND c.concept_id IS NULL LIMIT 5",
						name, c.Name)
				}
			}
		}
	}
	// Observation periods.
	add("one observation_period per person",
		"SELECT p.person_id, count(op.person_id) FROM person p LEFT JOIN observation_period op ON op.person_id = p.person_id GROUP BY p.person_id HAVING count(op.person_id) != 1 LIMIT 5")
	for _, e := range append(eventDates, struct{ table, start, end string }{"death", "death_date", ""}) {
		end := e.start
		if e.end != "" {
			end = "COALESCE(t." + e.end + ", t." + e.start + ")"
		} else {
			end = "t." + end
		}
		add("observation_period covers "+e.table,
			"SELECT t.person_id, t.%[2]s FROM %[1]s t JOIN observation_period op ON op.person_id = t.person_id WHERE t.%[2]s < op.observation_period_start_date OR %[3]s > op.observation_period_end_date LIMIT 5",
			e.table, e.start, end)
	}
	add("one cdm_source row", "SELECT count(*) FROM cdm_source HAVING count(*) != 1")
	// Plausibility (Data Quality Dashboard).
	birth := "make_date(p.year_of_birth, COALESCE(p.month_of_birth, 1), COALESCE(p.day_of_birth, 1))"
	for _, e := range append(eventDates, struct{ table, start, end string }{"death", "death_date", ""}) {
		add("no "+e.table+" before birth",
			"SELECT t.person_id, t.%[2]s FROM %[1]s t JOIN person p ON p.person_id = t.person_id WHERE t.%[2]s < %[3]s LIMIT 5",
			e.table, e.start, birth)
		if e.table != "death" {
			add("no "+e.table+" more than 60 days after death",
				"SELECT t.person_id, t.%[2]s FROM %[1]s t JOIN death d ON d.person_id = t.person_id WHERE t.%[2]s > d.death_date + INTERVAL 60 DAY LIMIT 5",
				e.table, e.start)
		}
	}
	ends := append([]struct{ table, start, end string }{}, eventDates...)
	ends = append(ends, struct{ table, start, end string }{"observation_period", "observation_period_start_date", "observation_period_end_date"},
		struct{ table, start, end string }{"condition_era", "condition_era_start_date", "condition_era_end_date"})
	if drugEra {
		ends = append(ends, struct{ table, start, end string }{"drug_era", "drug_era_start_date", "drug_era_end_date"})
	}
	for _, e := range ends {
		if e.end != "" {
			add("no end before start in "+e.table,
				"SELECT t.%[2]s, t.%[3]s FROM %[1]s t WHERE t.%[3]s < t.%[2]s LIMIT 5", e.table, e.start, e.end)
		}
	}
	return cs, nil
}

// ChecksFile renders checks in the form testdata/duckdb_run.py reads: each query after a
// line "-- check: <name>".
func ChecksFile(cs []Check) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "-- check: %s\n%s;\n", c.Name, c.SQL)
	}
	return b.String()
}
