package goldlake

import (
	"fmt"

	"github.com/apache/iceberg-go"

	"github.com/fhirstream/fhirstream/internal/gold"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

// DefaultNamespace is the namespace of the gold CDM: the schema OHDSI tools are given.
const DefaultNamespace = "cdm"

// CDMLayout is the layout of a gold CDM table (gold.CDMTables) in namespace: exactly the
// CDM v5.4 columns in DDL order (gold.Columns), no lineage columns (a gold row's primary
// key is its omop row's, which keeps the lineage), the primary key as identifier field.
// Types as omop.<table>'s: record ids long, concept ids int, float double, varchar
// string, date date, datetime timestamp without zone.
func CDMLayout(namespace, table string) (*lakehouse.Layout, error) {
	cols, err := gold.Columns(table)
	if err != nil {
		return nil, err
	}
	out := make([]lakehouse.Column, len(cols))
	for i, c := range cols {
		t, err := lakehouse.CDMType(c)
		if err != nil {
			return nil, fmt.Errorf("goldlake: %s.%s: %w", table, c.Name, err)
		}
		out[i] = lakehouse.Column{Name: c.Name, Type: t, Required: c.Required, Doc: c.Doc}
	}
	var ident []string
	if c := out[0]; c.Required && c.Name == table+"_id" {
		ident = []string{c.Name}
	}
	return lakehouse.NewLayout(namespace, table, out, ident, "")
}

// VocabularyLayout is the layout of a vocabulary table in namespace, per the OHDSI v5.4
// DDL (vocab.Tables): integer int, float double, varchar string, date date; the
// single-column primary key (concept_id, vocabulary_id, domain_id, concept_class_id,
// relationship_id) as identifier field.
func VocabularyLayout(namespace string, def *vocab.TableDef) (*lakehouse.Layout, error) {
	out := make([]lakehouse.Column, len(def.Columns))
	for i, c := range def.Columns {
		var t iceberg.PrimitiveType
		switch c.Type {
		case vocab.Integer:
			t = iceberg.PrimitiveTypes.Int32
		case vocab.Float:
			t = iceberg.PrimitiveTypes.Float64
		case vocab.Varchar:
			t = iceberg.PrimitiveTypes.String
		case vocab.Date:
			t = iceberg.PrimitiveTypes.Date
		default:
			return nil, fmt.Errorf("goldlake: %s.%s: no Iceberg type for %s", def.Name, c.Name, c.Type)
		}
		out[i] = lakehouse.Column{Name: c.Name, Type: t, Required: c.Required}
	}
	var ident []string
	if c := out[0]; c.Name == def.Name+"_id" {
		ident = []string{c.Name}
	}
	return lakehouse.NewLayout(namespace, def.Name, out, ident, "")
}
