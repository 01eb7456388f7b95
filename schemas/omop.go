package schemas

// OMOP CDM v5.4 table schemas. The checked-in .avsc files under omop/ are the source of
// truth: they are embedded here and every piece of table metadata the mapper and the sink
// need (column order, types, nullability, varchar lengths) is parsed from them, so a
// column is described in exactly one place. TestAvscMatchesCDM keeps them in step with
// OHDSI's field-level CSV.

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

//go:embed omop/*.avsc
var omopFS embed.FS

// OMOPNamespace is the Avro namespace of every OMOP record schema; the record name is the
// table name.
const OMOPNamespace = "io.fhirstream.omop.v54"

// Envelope columns follow the CDM columns in every OMOP record. They are not CDM: they let
// the sink and the gold-layer SQL keep only the newest version of each source resource and
// drop rows whose resource was retracted. The prefix keeps them apart from CDM names.
const (
	// EnvelopePrefix starts the name of every envelope column.
	EnvelopePrefix = "_fhir_"
	// ColFHIRKey is "<Type>/<id>" of the source resource (string, required).
	ColFHIRKey = "_fhir_key"
	// ColFHIRVersion is meta.versionId, or meta.lastUpdated when there is no versionId
	// (string, nullable).
	ColFHIRVersion = "_fhir_version"
	// ColFHIRLastUpdated is meta.lastUpdated (timestamp, nullable).
	ColFHIRLastUpdated = "_fhir_last_updated"
	// ColFHIRComponent is the index of the row among those one resource yields, 0 for the
	// first (int, default 0), so (key, component) names a row across versions.
	ColFHIRComponent = "_fhir_component"
	// ColFHIRDeleted marks a retraction row: the resource was deleted (or its newest
	// version has no rows in this table) and every earlier row with its key in this table
	// must go (boolean, default false).
	ColFHIRDeleted = "_fhir_deleted"
	// ColFHIRReplaces is true on the first row of each group the mapper emits for one
	// source record and one table (the version's rows in that table, or a single
	// retraction row): the group replaces every earlier row of its _fhir_key in that
	// table (boolean, default false). docs/omop-mapping.md, "Versions and deletions".
	ColFHIRReplaces = "_fhir_replaces"
)

// omopTables is the stable order of OMOPTables: the person-level tables first, then the
// clinical event tables, then the health-system tables.
var omopTables = []string{
	"person", "death", "visit_occurrence", "condition_occurrence", "measurement",
	"observation", "drug_exposure", "procedure_occurrence", "device_exposure",
	"location", "care_site", "provider", "observation_period",
}

// ErrUnknownTable is wrapped by every error about a table name that is not an OMOP table
// this package has a schema for.
var ErrUnknownTable = errors.New("unknown OMOP table")

// OMOPTables returns the names of the OMOP CDM tables the mapper emits, in a stable order.
// The slice is a copy.
func OMOPTables() []string {
	return append([]string(nil), omopTables...)
}

// OMOPSchema returns the Avro schema (.avsc JSON) of an OMOP table.
func OMOPSchema(table string) (string, error) {
	t, err := OMOPTable(table)
	if err != nil {
		return "", err
	}
	return t.Schema, nil
}

// OMOPTable returns the metadata of an OMOP table, parsed from its embedded schema. The
// returned Table is shared: callers must not modify it.
func OMOPTable(table string) (*Table, error) {
	cat, err := loadCatalog()
	if err != nil {
		return nil, err
	}
	t, ok := cat[table]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTable, table)
	}
	return t, nil
}

// ColumnType is the value family of a column: its Avro type with the logical type folded
// in, which is also what decides the Go value and the Parquet type.
type ColumnType uint8

// Column types. The Go type is what EncodeRow accepts first and what decoding returns.
const (
	TypeInt       ColumnType = iota + 1 // Avro int; Go int32
	TypeLong                            // Avro long; Go int64
	TypeDouble                          // Avro double; Go float64
	TypeString                          // Avro string; Go string
	TypeBoolean                         // Avro boolean; Go bool
	TypeDate                            // Avro int, logicalType date (days since 1970-01-01); Go time.Time
	TypeTimestamp                       // Avro long, logicalType timestamp-micros (UTC); Go time.Time
	// TypeLocalTimestamp is a wall-clock date and time without a time zone, as the CDM's
	// datetime columns are: Avro long, logicalType local-timestamp-micros (microseconds
	// from 1970-01-01T00:00:00 on the same wall clock); Go time.Time, whose clock reading
	// in its own location is what is stored (decoded: that reading, in UTC).
	TypeLocalTimestamp
)

var columnTypeNames = [...]string{
	TypeInt: "int", TypeLong: "long", TypeDouble: "double", TypeString: "string",
	TypeBoolean: "boolean", TypeDate: "date", TypeTimestamp: "timestamp-micros",
	TypeLocalTimestamp: "local-timestamp-micros",
}

func (t ColumnType) String() string {
	if int(t) < len(columnTypeNames) && columnTypeNames[t] != "" {
		return columnTypeNames[t]
	}
	return fmt.Sprintf("ColumnType(%d)", uint8(t))
}

// Column describes one field of an OMOP record.
type Column struct {
	Name string
	Type ColumnType
	// CDMType is the datatype the CDM declares ("integer", "varchar(50)", "date", ...),
	// "" for envelope columns. Record ids the CDM declares integer are TypeLong here: ids
	// are derived without coordination and need 64 bits, a deliberate deviation from the
	// official DDL.
	CDMType string
	// Required columns are never null. A required column may still be left out of a row
	// given to EncodeRow when it has a default (HasDefault).
	Required   bool
	HasDefault bool
	// MaxLength is the CDM varchar length in characters; 0 means unbounded or not a string.
	MaxLength int
	// Envelope is true for the _fhir_ columns, which are not part of the CDM.
	Envelope bool
	Doc      string

	def any // the default as a Go value of Type's Go type, for required columns with one
}

// Table is the metadata of one OMOP table, parsed from its .avsc.
type Table struct {
	Name    string
	Schema  string // the .avsc JSON as embedded
	Columns []Column
	index   map[string]int
	bounded []int // indexes of the string columns with a MaxLength
}

// Column returns the column called name.
func (t *Table) Column(name string) (Column, bool) {
	i, ok := t.index[name]
	if !ok {
		return Column{}, false
	}
	return t.Columns[i], true
}

// CDMColumns returns the columns that belong to the CDM, i.e. all but the envelope, in
// schema order.
func (t *Table) CDMColumns() []Column {
	for i, c := range t.Columns {
		if c.Envelope {
			return t.Columns[:i:i]
		}
	}
	return t.Columns
}

// loadCatalog parses every embedded schema once. A failure here means a broken .avsc was
// checked in; it is reported as an error by every accessor rather than a panic at init.
var loadCatalog = sync.OnceValues(func() (map[string]*Table, error) {
	cat := make(map[string]*Table, len(omopTables))
	for _, name := range omopTables {
		raw, err := omopFS.ReadFile("omop/" + name + ".avsc")
		if err != nil {
			return nil, fmt.Errorf("embedded OMOP schema %s: %w", name, err)
		}
		t, err := parseTable(raw)
		if err != nil {
			return nil, fmt.Errorf("embedded OMOP schema %s: %w", name, err)
		}
		if t.Name != name {
			return nil, fmt.Errorf("embedded OMOP schema %s.avsc names record %q", name, t.Name)
		}
		cat[name] = t
	}
	entries, err := omopFS.ReadDir("omop")
	if err != nil {
		return nil, fmt.Errorf("embedded OMOP schemas: %w", err)
	}
	if len(entries) != len(cat) {
		// A file nobody lists would be silently unused; make adding a table a deliberate act.
		return nil, fmt.Errorf("embedded OMOP schemas: %d files for %d tables", len(entries), len(cat))
	}
	return cat, nil
})

type avscRecord struct {
	Type      string      `json:"type"`
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Fields    []avscField `json:"fields"`
}

type avscField struct {
	Name      string          `json:"name"`
	Type      json.RawMessage `json:"type"`
	Default   json.RawMessage `json:"default"`
	Doc       string          `json:"doc"`
	CDMType   string          `json:"cdmType"`
	MaxLength int             `json:"maxLength"`
}

func parseTable(raw []byte) (*Table, error) {
	var rec avscRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if rec.Type != "record" || rec.Namespace != OMOPNamespace {
		return nil, fmt.Errorf("want a record in namespace %s, got type %q namespace %q", OMOPNamespace, rec.Type, rec.Namespace)
	}
	t := &Table{
		Name:    rec.Name,
		Schema:  string(raw),
		Columns: make([]Column, 0, len(rec.Fields)),
		index:   make(map[string]int, len(rec.Fields)),
	}
	for _, f := range rec.Fields {
		typ, nullable, err := parseFieldType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.Name, err)
		}
		if _, dup := t.index[f.Name]; dup {
			return nil, fmt.Errorf("field %s appears twice", f.Name)
		}
		if f.MaxLength != 0 && typ != TypeString {
			return nil, fmt.Errorf("field %s: maxLength on a %s", f.Name, typ)
		}
		var def any
		if !nullable && len(f.Default) > 0 {
			if def, err = parseDefault(typ, f.Default); err != nil {
				return nil, fmt.Errorf("field %s: default: %w", f.Name, err)
			}
		}
		if f.MaxLength > 0 {
			t.bounded = append(t.bounded, len(t.Columns))
		}
		t.index[f.Name] = len(t.Columns)
		t.Columns = append(t.Columns, Column{
			def:        def,
			Name:       f.Name,
			Type:       typ,
			CDMType:    f.CDMType,
			Required:   !nullable,
			HasDefault: len(f.Default) > 0,
			MaxLength:  f.MaxLength,
			Envelope:   strings.HasPrefix(f.Name, EnvelopePrefix),
			Doc:        f.Doc,
		})
	}
	return t, nil
}

// parseFieldType reads the restricted set of field types our schemas use: a primitive,
// a primitive with a logical type, or either of those in a ["null", T] union.
func parseFieldType(raw json.RawMessage) (ColumnType, bool, error) {
	var union []json.RawMessage
	if err := json.Unmarshal(raw, &union); err == nil {
		if len(union) != 2 || string(union[0]) != `"null"` {
			return 0, false, fmt.Errorf("only [\"null\", T] unions are supported, got %s", raw)
		}
		t, _, err := parseFieldType(union[1])
		return t, true, err
	}
	var prim string
	if err := json.Unmarshal(raw, &prim); err == nil {
		switch prim {
		case "int":
			return TypeInt, false, nil
		case "long":
			return TypeLong, false, nil
		case "double":
			return TypeDouble, false, nil
		case "string":
			return TypeString, false, nil
		case "boolean":
			return TypeBoolean, false, nil
		}
		return 0, false, fmt.Errorf("unsupported type %q", prim)
	}
	var logical struct {
		Type        string `json:"type"`
		LogicalType string `json:"logicalType"`
	}
	if err := json.Unmarshal(raw, &logical); err != nil {
		return 0, false, fmt.Errorf("unsupported type %s", raw)
	}
	switch {
	case logical.Type == "int" && logical.LogicalType == "date":
		return TypeDate, false, nil
	case logical.Type == "long" && logical.LogicalType == "timestamp-micros":
		return TypeTimestamp, false, nil
	case logical.Type == "long" && logical.LogicalType == "local-timestamp-micros":
		return TypeLocalTimestamp, false, nil
	}
	return 0, false, fmt.Errorf("unsupported type %s", raw)
}

// parseDefault turns a field's JSON default into the Go value EncodeRow would accept for
// it. Only the types our envelope defaults use are needed.
func parseDefault(typ ColumnType, raw json.RawMessage) (any, error) {
	switch typ {
	case TypeInt:
		var n int32
		err := json.Unmarshal(raw, &n)
		return n, err
	case TypeLong:
		var n int64
		err := json.Unmarshal(raw, &n)
		return n, err
	case TypeBoolean:
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err
	case TypeString:
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	return nil, fmt.Errorf("defaults of %s columns are not supported", typ)
}
