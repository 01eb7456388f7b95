package schemas

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestOMOPTablesHaveSchemas(t *testing.T) {
	tables := OMOPTables()
	want := []string{"person", "death", "visit_occurrence", "condition_occurrence", "measurement",
		"observation", "drug_exposure", "procedure_occurrence", "device_exposure",
		"location", "care_site", "provider", "observation_period"}
	if !slices.Equal(tables, want) {
		t.Fatalf("OMOPTables() = %v, want %v", tables, want)
	}
	tables[0] = "mutated"
	if OMOPTables()[0] != "person" {
		t.Fatal("OMOPTables returns the package's own slice")
	}
	for _, name := range want {
		s, err := OMOPSchema(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(s, `"namespace": "`+OMOPNamespace+`"`) {
			t.Errorf("%s schema lacks namespace %s", name, OMOPNamespace)
		}
		tab, err := OMOPTable(name)
		if err != nil {
			t.Fatal(err)
		}
		// Envelope columns come last, in a fixed order, with the agreed types.
		env := tab.Columns[len(tab.CDMColumns()):]
		wantEnv := []Column{
			{Name: ColFHIRKey, Type: TypeString, Required: true},
			{Name: ColFHIRVersion, Type: TypeString, HasDefault: true},
			{Name: ColFHIRLastUpdated, Type: TypeTimestamp, HasDefault: true},
			{Name: ColFHIRComponent, Type: TypeInt, Required: true, HasDefault: true},
			{Name: ColFHIRDeleted, Type: TypeBoolean, Required: true, HasDefault: true},
			{Name: ColFHIRReplaces, Type: TypeBoolean, Required: true, HasDefault: true},
		}
		if len(env) != len(wantEnv) {
			t.Fatalf("%s: %d envelope columns, want %d", name, len(env), len(wantEnv))
		}
		for i, w := range wantEnv {
			g := env[i]
			if g.Name != w.Name || g.Type != w.Type || g.Required != w.Required || g.HasDefault != w.HasDefault || !g.Envelope || g.CDMType != "" {
				t.Errorf("%s envelope column %d = %+v, want %+v", name, i, g, w)
			}
		}
		for _, c := range tab.CDMColumns() {
			if c.Envelope || c.CDMType == "" {
				t.Errorf("%s.%s: CDM column marked as envelope or without CDM type", name, c.Name)
			}
			// Nullable columns default to null; required CDM columns have no default.
			if c.HasDefault == c.Required {
				t.Errorf("%s.%s: required=%v but hasDefault=%v", name, c.Name, c.Required, c.HasDefault)
			}
		}
	}
}

func TestOMOPTableMetadata(t *testing.T) {
	for _, tc := range []struct {
		table, column string
		typ           ColumnType
		cdmType       string
		required      bool
		maxLength     int
	}{
		{"person", "person_id", TypeLong, "integer", true, 0},
		{"person", "gender_concept_id", TypeInt, "integer", true, 0},
		{"person", "year_of_birth", TypeInt, "integer", true, 0},
		{"person", "birth_datetime", TypeLocalTimestamp, "datetime", false, 0},
		{"person", "location_id", TypeLong, "integer", false, 0},
		{"person", "person_source_value", TypeString, "varchar(50)", false, 50},
		{"death", "death_date", TypeDate, "date", true, 0},
		{"visit_occurrence", "visit_type_concept_id", TypeInt, "integer", true, 0}, // "Integer" in the CSV
		{"visit_occurrence", "preceding_visit_occurrence_id", TypeLong, "integer", false, 0},
		{"measurement", "value_as_number", TypeDouble, "float", false, 0},
		{"measurement", "measurement_time", TypeString, "varchar(10)", false, 10},
		{"measurement", "measurement_event_id", TypeLong, "integer", false, 0},
		{"measurement", "meas_event_field_concept_id", TypeInt, "integer", false, 0},
		{"drug_exposure", "sig", TypeString, "varchar(MAX)", false, 0},
		{"device_exposure", "unique_device_id", TypeString, "varchar(255)", false, 255},
		{"location", "state", TypeString, "varchar(2)", false, 2},
		{"observation_period", "observation_period_id", TypeLong, "integer", true, 0},
	} {
		tab, err := OMOPTable(tc.table)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := tab.Column(tc.column)
		if !ok {
			t.Errorf("%s has no column %s", tc.table, tc.column)
			continue
		}
		if c.Type != tc.typ || c.CDMType != tc.cdmType || c.Required != tc.required || c.MaxLength != tc.maxLength {
			t.Errorf("%s.%s = %s %q required=%v maxLength=%d, want %s %q required=%v maxLength=%d",
				tc.table, tc.column, c.Type, c.CDMType, c.Required, c.MaxLength,
				tc.typ, tc.cdmType, tc.required, tc.maxLength)
		}
	}
	if _, err := OMOPSchema("note"); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("OMOPSchema(note) error = %v, want ErrUnknownTable", err)
	}
	if _, err := OMOPTable(""); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("OMOPTable(\"\") error = %v, want ErrUnknownTable", err)
	}
}

func TestParseTableRejectsUnsupportedSchemas(t *testing.T) {
	for name, avsc := range map[string]string{
		"not json":      `{`,
		"wrong ns":      `{"type":"record","name":"person","namespace":"x","fields":[]}`,
		"enum":          `{"type":"record","name":"person","namespace":"io.fhirstream.omop.v54","fields":[{"name":"a","type":{"type":"enum","name":"E","symbols":["A"]}}]}`,
		"3-way union":   `{"type":"record","name":"person","namespace":"io.fhirstream.omop.v54","fields":[{"name":"a","type":["null","int","string"]}]}`,
		"null second":   `{"type":"record","name":"person","namespace":"io.fhirstream.omop.v54","fields":[{"name":"a","type":["int","null"]}]}`,
		"dup field":     `{"type":"record","name":"person","namespace":"io.fhirstream.omop.v54","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}`,
		"maxLen on int": `{"type":"record","name":"person","namespace":"io.fhirstream.omop.v54","fields":[{"name":"a","type":"int","maxLength":3}]}`,
	} {
		if _, err := parseTable([]byte(avsc)); err == nil {
			t.Errorf("%s: parseTable accepted %s", name, avsc)
		}
	}
}
