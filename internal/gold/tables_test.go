package gold

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/fhirstream/fhirstream/internal/gold/goldtest"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestColumnsMatchCDM holds every gold table's columns to OHDSI's field-level CSV:
// names in order, the CDM datatype, required or not, and the 64-bit record ids the DDL
// harness uses (BIGINT) against the 32-bit concept ids (INTEGER).
func TestColumnsMatchCDM(t *testing.T) {
	ddl := goldtest.DDL(t)
	for _, table := range CDMTables {
		cols, err := Columns(table)
		if err != nil {
			t.Fatal(err)
		}
		want := ddl[table]
		if len(cols) != len(want) {
			t.Errorf("%s: %d columns, the CDM has %d", table, len(cols), len(want))
			continue
		}
		for i, c := range cols {
			w := want[i]
			typ := map[schemas.ColumnType]string{schemas.TypeInt: "INTEGER", schemas.TypeLong: "BIGINT", schemas.TypeDouble: "DOUBLE",
				schemas.TypeString: "VARCHAR", schemas.TypeDate: "DATE", schemas.TypeTimestamp: "TIMESTAMP", schemas.TypeLocalTimestamp: "TIMESTAMP"}[c.Type]
			if c.CDMType == "datetime" {
				typ = "TIMESTAMP"
			}
			if c.Name != w.Name || !strings.EqualFold(c.CDMType, w.CDMType) || c.Required != w.Required || typ != w.SQLType {
				t.Errorf("%s column %d: %s %s (%s) required %v, the CDM: %s %s (%s) required %v",
					table, i, c.Name, c.CDMType, typ, c.Required, w.Name, w.CDMType, w.SQLType, w.Required)
			}
		}
	}
}

// An event the era logic keeps is 16 bytes: a refresh holds one per condition
// occurrence and per drug exposure and ingredient, and nothing else per clinical row.
func TestEventIs16Bytes(t *testing.T) {
	if n := unsafe.Sizeof(event{}); n != 16 {
		t.Errorf("event is %d bytes, want 16", n)
	}
	if n := unsafe.Sizeof(span{}); n != 8 {
		t.Errorf("span is %d bytes, want 8", n)
	}
}
