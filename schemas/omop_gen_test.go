package schemas

// TestAvscMatchesCDM re-derives every OMOP schema from OHDSI's field-level CSV and fails
// when a checked-in .avsc disagrees. Run with -update to rewrite the .avsc files from the
// CSV (this overwrites hand edits of docs too):
//
//	go test ./schemas -run TestAvscMatchesCDM -update
//
// The CSVs are looked up in $FHIRSTREAM_CDM_REFERENCE (a directory holding
// OMOP_CDMv5.4_Field_Level.csv and OMOP_CDMv5.4_Table_Level.csv), then in
// testdata/omop-cdm-5.4, then in the team's shared reference folder; the test skips when
// none exists.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var updateAVSC = flag.Bool("update", false, "rewrite schemas/omop/*.avsc from the OMOP CDM CSV")

const (
	fieldCSV = "OMOP_CDMv5.4_Field_Level.csv"
	tableCSV = "OMOP_CDMv5.4_Table_Level.csv"
)

func cdmReferenceDir() string {
	for _, dir := range []string{
		os.Getenv("FHIRSTREAM_CDM_REFERENCE"),
		filepath.Join("testdata", "omop-cdm-5.4"),
		filepath.Join("..", "..", "shared", "reference", "omop-cdm-5.4"),
	} {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, fieldCSV)); err == nil {
			return dir
		}
	}
	return ""
}

// derivedColumn is what the CSV says a column must look like in our Avro schema.
type derivedColumn struct {
	name      string
	typ       ColumnType
	cdmType   string
	required  bool
	maxLength int
	doc       string
}

// envelopeColumns are appended to every table after its CDM columns.
var envelopeColumns = []derivedColumn{
	{name: ColFHIRKey, typ: TypeString, required: true,
		doc: `"<Type>/<id>" of the FHIR resource this row was mapped from; not CDM.`},
	{name: ColFHIRVersion, typ: TypeString,
		doc: "The source resource's meta.versionId, or meta.lastUpdated when it has none; not CDM."},
	{name: ColFHIRLastUpdated, typ: TypeTimestamp,
		doc: "The source resource's meta.lastUpdated (UTC); not CDM."},
	{name: ColFHIRComponent, typ: TypeInt, required: true,
		doc: "Index of this row among the rows one resource version yields, 0 for the first; not CDM."},
	{name: ColFHIRDeleted, typ: TypeBoolean, required: true,
		doc: "True on a retraction row: the source resource was deleted, or its newest version has no rows in this table; not CDM."},
	{name: ColFHIRReplaces, typ: TypeBoolean, required: true,
		doc: "True on the first row of each group one source record yields in this table: the group replaces every earlier row of its _fhir_key in this table; not CDM."},
}

var varcharRE = regexp.MustCompile(`^varchar\((\d+|MAX)\)$`)

// deriveColumn applies the type rules: record ids (primary keys and references to other
// records) are long, concept ids stay int, other integers are int.
func deriveColumn(rec map[string]string) (derivedColumn, error) {
	name := rec["cdmFieldName"]
	declared := strings.TrimSpace(rec["cdmDatatype"])
	cdmType := strings.ToLower(declared) // the CSV has a stray "Integer"
	c := derivedColumn{name: name, cdmType: cdmType, required: rec["isRequired"] == "Yes"}
	switch {
	case cdmType == "integer":
		c.typ = TypeInt
		// Every *_id that is not a concept id names a record: the table's own key, a
		// foreign key (person_id, provider_id, ...), or the polymorphic
		// measurement_event_id / observation_event_id, which hold another table's key.
		if strings.HasSuffix(name, "_id") && !strings.HasSuffix(name, "_concept_id") {
			c.typ = TypeLong
		}
	case cdmType == "bigint":
		c.typ = TypeLong
	case cdmType == "float":
		c.typ = TypeDouble
	case cdmType == "date":
		c.typ = TypeDate
	case cdmType == "datetime":
		// The CDM's datetimes are wall-clock times without a zone (TIMESTAMP in its DDL).
		c.typ = TypeLocalTimestamp
	case varcharRE.MatchString(declared):
		c.typ = TypeString
		c.cdmType = declared // keep "MAX" upper case as OHDSI writes it
		if n := varcharRE.FindStringSubmatch(declared)[1]; n != "MAX" {
			c.maxLength, _ = strconv.Atoi(n)
		}
	default:
		return c, fmt.Errorf("%s.%s: unknown CDM datatype %q", rec["cdmTableName"], name, declared)
	}
	c.doc = firstSentence(rec["userGuidance"])
	if c.doc == "" {
		c.doc = firstSentence(rec["etlConventions"])
	}
	return c, nil
}

var (
	mdLinkRE = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	htmlRE   = regexp.MustCompile(`<[^>]+>`)
)

// firstSentence turns a CSV guidance cell into a one-sentence doc: markdown links and
// HTML are flattened to text, and the text is cut at the first full stop that ends a
// sentence (not "e.g." or "i.e.").
func firstSentence(s string) string {
	s = cutSentence(s)
	if strings.Count(s, `"`)%2 == 1 && strings.HasPrefix(s, `"`) {
		s = s[1:] // a stray opening quote in the CSV
	}
	return s
}

func cutSentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || s == "NA" {
		return ""
	}
	s = mdLinkRE.ReplaceAllString(s, "$1")
	s = htmlRE.ReplaceAllString(s, " ")
	s = strings.Join(strings.Fields(s), " ")
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && s[i] != '?' && s[i] != '!' {
			continue
		}
		if i+1 == len(s) {
			return s
		}
		if s[i+1] != ' ' || i+2 >= len(s) || !unicode.IsUpper(rune(s[i+2])) {
			continue
		}
		prev := s[max(0, i-3):i]
		if strings.HasSuffix(prev, "e.g") || strings.HasSuffix(prev, "i.e") {
			continue
		}
		return s[:i+1]
	}
	return s
}

func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.TrimPrefix(raw, []byte("\ufeff"))
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := make([]map[string]string, 0, len(rows)-1)
	for _, r := range rows[1:] {
		m := make(map[string]string, len(r))
		for i, h := range rows[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

func deriveTables(t *testing.T, dir string) (map[string][]derivedColumn, map[string]string) {
	t.Helper()
	cols := make(map[string][]derivedColumn)
	for _, rec := range readCSV(t, filepath.Join(dir, fieldCSV)) {
		table := strings.ToLower(rec["cdmTableName"])
		c, err := deriveColumn(rec)
		if err != nil {
			t.Fatal(err)
		}
		cols[table] = append(cols[table], c)
	}
	docs := make(map[string]string)
	for _, rec := range readCSV(t, filepath.Join(dir, tableCSV)) {
		docs[strings.ToLower(rec["cdmTableName"])] = firstSentence(rec["tableDescription"])
	}
	return cols, docs
}

// Ordered field layout for the written .avsc; encoding/json keeps struct order.
type avscOutField struct {
	Name      string           `json:"name"`
	Type      any              `json:"type"`
	Default   *json.RawMessage `json:"default,omitempty"`
	CDMType   string           `json:"cdmType,omitempty"`
	MaxLength int              `json:"maxLength,omitempty"`
	Doc       string           `json:"doc,omitempty"`
}

type avscLogical struct {
	Type        string `json:"type"`
	LogicalType string `json:"logicalType"`
}

func avroType(t ColumnType) any {
	switch t {
	case TypeDate:
		return avscLogical{"int", "date"}
	case TypeTimestamp:
		return avscLogical{"long", "timestamp-micros"}
	case TypeLocalTimestamp:
		return avscLogical{"long", "local-timestamp-micros"}
	}
	return t.String()
}

func renderAVSC(table, tableDoc string, cols []derivedColumn) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	str := func(s string) string {
		var sb bytes.Buffer
		e := json.NewEncoder(&sb)
		e.SetEscapeHTML(false)
		_ = e.Encode(s)
		return strings.TrimSpace(sb.String())
	}
	doc := strings.TrimSpace(tableDoc + " OMOP CDM v5.4 " + strings.ToUpper(table) +
		" as written by fhirstream: record ids (*_id other than *_concept_id) are 64-bit long," +
		" not the DDL's integer, and the _fhir_* fields after the CDM columns are an envelope, not CDM.")
	fmt.Fprintf(&b, "{\n  \"type\": \"record\",\n  \"name\": %s,\n  \"namespace\": %s,\n  \"doc\": %s,\n  \"fields\": [\n",
		str(table), str(OMOPNamespace), str(doc))
	null := json.RawMessage("null")
	for i, c := range cols {
		f := avscOutField{Name: c.name, Type: avroType(c.typ), CDMType: c.cdmType, MaxLength: c.maxLength, Doc: c.doc}
		switch {
		case !c.required:
			f.Type = []any{"null", f.Type}
			f.Default = &null
		case c.name == ColFHIRComponent:
			zero := json.RawMessage("0")
			f.Default = &zero
		case c.name == ColFHIRDeleted, c.name == ColFHIRReplaces:
			no := json.RawMessage("false")
			f.Default = &no
		}
		b.WriteString("    ")
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
		if i < len(cols)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("  ]\n}\n")
	return b.Bytes(), nil
}

func TestAvscMatchesCDM(t *testing.T) {
	dir := cdmReferenceDir()
	if dir == "" {
		t.Skip("OMOP CDM reference CSVs not found; set FHIRSTREAM_CDM_REFERENCE")
	}
	derived, docs := deriveTables(t, dir)
	for _, table := range omopTables {
		want := append(append([]derivedColumn(nil), derived[table]...), envelopeColumns...)
		if len(derived[table]) == 0 {
			t.Fatalf("table %s is not in %s", table, fieldCSV)
		}
		path := filepath.Join("omop", table+".avsc")
		if *updateAVSC {
			out, err := renderAVSC(table, docs[table], want)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseTable(raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got.Name != table {
			t.Errorf("%s: record name %q", path, got.Name)
		}
		if len(got.Columns) != len(want) {
			t.Errorf("%s: %d fields, CDM + envelope has %d", path, len(got.Columns), len(want))
		}
		for i := range min(len(got.Columns), len(want)) {
			g, w := got.Columns[i], want[i]
			if g.Name != w.name {
				t.Errorf("%s field %d: name %q, want %q", path, i, g.Name, w.name)
				continue
			}
			if g.Type != w.typ || g.Required != w.required || g.MaxLength != w.maxLength || g.CDMType != w.cdmType {
				t.Errorf("%s %s: got %s required=%v maxLength=%d cdmType=%q, want %s required=%v maxLength=%d cdmType=%q",
					path, g.Name, g.Type, g.Required, g.MaxLength, g.CDMType, w.typ, w.required, w.maxLength, w.cdmType)
			}
			if (g.Envelope && w.cdmType != "") || (!g.Envelope && w.cdmType == "") {
				t.Errorf("%s %s: envelope columns must start with %s and only they", path, g.Name, EnvelopePrefix)
			}
		}
	}
}

func TestFirstSentence(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"NA", ""},
		{"Compute age using year_of_birth.", "Compute age using year_of_birth."},
		{"Use codes, e.g. ICD10. Then more.", "Use codes, e.g. ICD10."},
		{"See the [THEMIS repository](https://x/y.html). More.", "See the THEMIS repository."},
		{"One<br><br>Two", "One Two"},
		{"Ends without full stop", "Ends without full stop"},
	} {
		if got := firstSentence(tc.in); got != tc.want {
			t.Errorf("firstSentence(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
