package vocab

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// The vocabulary tables of the CDM, as an Athena download ships them: one tab-separated
// file each (named <TABLE>.csv), a header line naming the columns, dates as YYYYMMDD.
// StreamTable reads any of them as typed rows per the OHDSI v5.4 DDL, so they can be
// written as the CDM's vocabulary tables beside the clinical ones (ATLAS and HADES look
// for them there), one row at a time. The mapper's own lookup tables (Load) read only
// CONCEPT and CONCEPT_RELATIONSHIP, much faster.

// ColumnType is the DDL type of a vocabulary column.
type ColumnType uint8

// Column types and the Go value a Row holds for each (nil when null).
const (
	Integer ColumnType = iota + 1 // DDL integer: int64
	Float                         // DDL float: float64
	Varchar                       // DDL varchar(n): string
	Date                          // DDL date: time.Time at 00:00 UTC
)

func (t ColumnType) String() string {
	switch t {
	case Integer:
		return "integer"
	case Float:
		return "float"
	case Varchar:
		return "varchar"
	case Date:
		return "date"
	}
	return fmt.Sprintf("ColumnType(%d)", uint8(t))
}

// TableColumn is one column of a vocabulary table.
type TableColumn struct {
	Name      string
	Type      ColumnType
	MaxLength int // varchar length in characters; 0 for other types
	Required  bool
}

// TableDef is one vocabulary table: its CDM name (lower case, as the DDL writes it) and
// its columns in DDL order. TestTablesMatchCDM holds them to OHDSI's field-level CSV.
type TableDef struct {
	Name    string
	Columns []TableColumn
}

// File is the table's file name in an Athena download.
func (d *TableDef) File() string { return strings.ToUpper(d.Name) + ".csv" }

func col(name string, t ColumnType, maxLen int, required bool) TableColumn {
	return TableColumn{Name: name, Type: t, MaxLength: maxLen, Required: required}
}

// Tables are the nine vocabulary tables of an Athena download, in the CDM's order.
var Tables = []TableDef{
	{"concept", []TableColumn{
		col("concept_id", Integer, 0, true), col("concept_name", Varchar, 255, true),
		col("domain_id", Varchar, 20, true), col("vocabulary_id", Varchar, 20, true),
		col("concept_class_id", Varchar, 20, true), col("standard_concept", Varchar, 1, false),
		col("concept_code", Varchar, 50, true), col("valid_start_date", Date, 0, true),
		col("valid_end_date", Date, 0, true), col("invalid_reason", Varchar, 1, false)}},
	{"vocabulary", []TableColumn{
		col("vocabulary_id", Varchar, 20, true), col("vocabulary_name", Varchar, 255, true),
		col("vocabulary_reference", Varchar, 255, false), col("vocabulary_version", Varchar, 255, false),
		col("vocabulary_concept_id", Integer, 0, true)}},
	{"domain", []TableColumn{
		col("domain_id", Varchar, 20, true), col("domain_name", Varchar, 255, true),
		col("domain_concept_id", Integer, 0, true)}},
	{"concept_class", []TableColumn{
		col("concept_class_id", Varchar, 20, true), col("concept_class_name", Varchar, 255, true),
		col("concept_class_concept_id", Integer, 0, true)}},
	{"concept_relationship", []TableColumn{
		col("concept_id_1", Integer, 0, true), col("concept_id_2", Integer, 0, true),
		col("relationship_id", Varchar, 20, true), col("valid_start_date", Date, 0, true),
		col("valid_end_date", Date, 0, true), col("invalid_reason", Varchar, 1, false)}},
	{"relationship", []TableColumn{
		col("relationship_id", Varchar, 20, true), col("relationship_name", Varchar, 255, true),
		col("is_hierarchical", Varchar, 1, true), col("defines_ancestry", Varchar, 1, true),
		col("reverse_relationship_id", Varchar, 20, true), col("relationship_concept_id", Integer, 0, true)}},
	{"concept_synonym", []TableColumn{
		col("concept_id", Integer, 0, true), col("concept_synonym_name", Varchar, 1000, true),
		col("language_concept_id", Integer, 0, true)}},
	{"concept_ancestor", []TableColumn{
		col("ancestor_concept_id", Integer, 0, true), col("descendant_concept_id", Integer, 0, true),
		col("min_levels_of_separation", Integer, 0, true), col("max_levels_of_separation", Integer, 0, true)}},
	{"drug_strength", []TableColumn{
		col("drug_concept_id", Integer, 0, true), col("ingredient_concept_id", Integer, 0, true),
		col("amount_value", Float, 0, false), col("amount_unit_concept_id", Integer, 0, false),
		col("numerator_value", Float, 0, false), col("numerator_unit_concept_id", Integer, 0, false),
		col("denominator_value", Float, 0, false), col("denominator_unit_concept_id", Integer, 0, false),
		col("box_size", Integer, 0, false), col("valid_start_date", Date, 0, true),
		col("valid_end_date", Date, 0, true), col("invalid_reason", Varchar, 1, false)}},
}

// Table returns the definition of the vocabulary table called name (lower case).
func Table(name string) (*TableDef, bool) {
	for i := range Tables {
		if Tables[i].Name == name {
			return &Tables[i], true
		}
	}
	return nil, false
}

// Row is one row of a vocabulary table: a value per column of its TableDef, in DDL order,
// of the column type's Go type, nil for null. StreamTable reuses it for the next row.
type Row []any

// StreamTable reads the table d from r (an Athena file: tab-separated, header first) and
// calls row once per line with the line's typed values. Columns are found by their header
// names, in any order; a nullable column the file lacks is null; a required one it lacks
// is an error, as is an unparsable value or an empty required integer or date, with its
// line. An empty required varchar is kept as "" (a few Athena names are empty). Lengths
// are not checked: the writer's schema decides. row's Row is reused: copy what must
// outlive the call (the strings in it are copies, and may be kept). It returns the number
// of rows read.
func (d *TableDef) StreamTable(r io.Reader, row func(Row) error) (int, error) {
	t := newTSV(r)
	if _, err := t.header(); err != nil {
		return 0, fmt.Errorf("%s: %w", d.File(), err)
	}
	pos := make([]int, len(d.Columns))
	for i, c := range d.Columns {
		pos[i] = t.column(c.Name)
		if pos[i] < 0 && c.Required {
			return 0, fmt.Errorf("%s: header has no %s column (is the file tab-delimited?)", d.File(), c.Name)
		}
	}
	out := make(Row, len(d.Columns))
	n := 0
	for {
		ok, err := t.next()
		if err != nil {
			return n, fmt.Errorf("%s: %w", d.File(), err)
		}
		if !ok {
			return n, nil
		}
		for i, c := range d.Columns {
			var f []byte
			if p := pos[i]; p >= 0 && p < len(t.fields) {
				f = t.fields[p]
			}
			v, err := parseValue(c, f)
			if err != nil {
				return n, fmt.Errorf("%s line %d: %s: %w", d.File(), t.line, c.Name, err)
			}
			out[i] = v
		}
		if err := row(out); err != nil {
			return n, err
		}
		n++
	}
}

func parseValue(c TableColumn, f []byte) (any, error) {
	if len(f) == 0 {
		switch {
		case !c.Required:
			return nil, nil
		case c.Type == Varchar:
			return "", nil
		}
		return nil, fmt.Errorf("empty, but the column is required")
	}
	switch c.Type {
	case Integer:
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("not an integer")
		}
		return n, nil
	case Float:
		x, err := strconv.ParseFloat(string(f), 64)
		if err != nil {
			return nil, fmt.Errorf("not a number")
		}
		return x, nil
	case Date:
		return parseAthenaDate(f)
	}
	return string(f), nil
}

// parseAthenaDate reads Athena's YYYYMMDD dates, and ISO YYYY-MM-DD (files exported from
// a database).
func parseAthenaDate(f []byte) (time.Time, error) {
	layout := "20060102"
	if len(f) == 10 {
		layout = time.DateOnly
	}
	t, err := time.Parse(layout, string(f))
	if err != nil {
		return time.Time{}, fmt.Errorf("not a YYYYMMDD date")
	}
	return t, nil
}

// StreamFile streams the table d from its file in dir (the name matched case-insensitively,
// as Load does). ok is false when dir has no such file.
func (d *TableDef) StreamFile(dir string, row func(Row) error) (n int, ok bool, err error) {
	names, err := athenaFiles(dir)
	if err != nil {
		return 0, false, err
	}
	p, ok := names[strings.ToUpper(d.File())]
	if !ok {
		return 0, false, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, true, fmt.Errorf("vocabulary %s: %w", d.File(), err)
	}
	defer f.Close()
	n, err = d.StreamTable(f, row)
	return n, true, err
}
