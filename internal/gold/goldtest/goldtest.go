// Package goldtest holds what the tests of the gold CDM share: OHDSI's CDM v5.4 table
// definitions read from the field-level CSV the official DDL is generated from
// (../shared/reference/omop-cdm-5.4, beside the repository), as DuckDB CREATE TABLE
// statements. It is read from OHDSI's file, never from this project's schemas, so a test
// that loads the lake into these tables checks the lake against the CDM itself.
package goldtest

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/vocab"
)

// FieldCSV is the path of OHDSI's OMOP_CDMv5.4_Field_Level.csv.
func FieldCSV() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared", "reference", "omop-cdm-5.4", "OMOP_CDMv5.4_Field_Level.csv")
}

// Column is one column of the DDL.
type Column struct {
	Name string
	// CDMType is the datatype as the CSV writes it, lower case ("integer", "varchar(50)").
	CDMType string
	// SQLType is the DuckDB type: INTEGER, BIGINT, DOUBLE, DATE, TIMESTAMP or VARCHAR.
	// Record ids (integer *_id columns that are not *_concept_id) of the tables other
	// than the vocabulary's are BIGINT, the project's stated deviation (63-bit hash ids).
	SQLType  string
	Required bool
}

// DDL reads every table's columns in order, or skips the test when the reference is
// absent.
func DDL(t testing.TB) map[string][]Column {
	t.Helper()
	ddl, err := ReadDDL(FieldCSV())
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("OMOP CDM reference not found at " + FieldCSV())
	}
	if err != nil {
		t.Fatal(err)
	}
	return ddl
}

// ReadDDL reads the field-level CSV at path.
func ReadDDL(path string) (map[string][]Column, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(raw), "\ufeff"))).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	head := map[string]int{}
	for i, h := range recs[0] {
		head[h] = i
	}
	vocabularyTables := map[string]bool{}
	for _, t := range vocab.Tables {
		vocabularyTables[t.Name] = true
	}
	varchar := regexp.MustCompile(`^varchar\((\d+|max)\)$`)
	out := map[string][]Column{}
	for _, r := range recs[1:] {
		table, name := strings.ToLower(r[head["cdmTableName"]]), r[head["cdmFieldName"]]
		dt := strings.ToLower(strings.TrimSpace(r[head["cdmDatatype"]]))
		c := Column{Name: name, CDMType: dt, Required: r[head["isRequired"]] == "Yes"}
		switch {
		case dt == "integer":
			c.SQLType = "INTEGER"
			if strings.HasSuffix(name, "_id") && !strings.HasSuffix(name, "_concept_id") && !vocabularyTables[table] {
				c.SQLType = "BIGINT"
			}
		case dt == "bigint":
			c.SQLType = "BIGINT"
		case dt == "float":
			c.SQLType = "DOUBLE"
		case dt == "date":
			c.SQLType = "DATE"
		case dt == "datetime":
			c.SQLType = "TIMESTAMP"
		case varchar.MatchString(dt):
			c.SQLType = "VARCHAR"
		default:
			return nil, fmt.Errorf("%s.%s: unknown CDM datatype %q", table, name, dt)
		}
		out[table] = append(out[table], c)
	}
	return out, nil
}

// CreateSQL is the CREATE TABLE statements of tables; required columns are NOT NULL
// when notNull is set.
func CreateSQL(ddl map[string][]Column, tables []string, notNull bool) string {
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "CREATE TABLE %s (\n", t)
		for i, c := range ddl[t] {
			fmt.Fprintf(&b, "  %s %s", c.Name, c.SQLType)
			if notNull && c.Required {
				b.WriteString(" NOT NULL")
			}
			if i < len(ddl[t])-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(");\n")
	}
	return b.String()
}
