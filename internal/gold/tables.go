package gold

import (
	"fmt"

	"github.com/fhirstream/fhirstream/schemas"
)

// Tables of the gold CDM and their columns. A gold table holds exactly the CDM v5.4
// columns, in DDL order, typed as package schemas types the mapper's tables (record ids
// 64-bit, the project's stated deviation; integer concept ids 32-bit): the clinical
// tables and observation_period from their Avro schemas, the other derived tables from
// the definitions below, which TestColumnsMatchCDM holds to OHDSI's field-level CSV.

func derived(name string, typ schemas.ColumnType, cdmType string, required bool, maxLen int) schemas.Column {
	return schemas.Column{Name: name, Type: typ, CDMType: cdmType, Required: required, MaxLength: maxLen}
}

var derivedColumns = map[string][]schemas.Column{
	"condition_era": {
		derived("condition_era_id", schemas.TypeLong, "integer", true, 0),
		derived("person_id", schemas.TypeLong, "integer", true, 0),
		derived("condition_concept_id", schemas.TypeInt, "integer", true, 0),
		derived("condition_era_start_date", schemas.TypeDate, "date", true, 0),
		derived("condition_era_end_date", schemas.TypeDate, "date", true, 0),
		derived("condition_occurrence_count", schemas.TypeInt, "integer", false, 0),
	},
	"drug_era": {
		derived("drug_era_id", schemas.TypeLong, "integer", true, 0),
		derived("person_id", schemas.TypeLong, "integer", true, 0),
		derived("drug_concept_id", schemas.TypeInt, "integer", true, 0),
		derived("drug_era_start_date", schemas.TypeDate, "date", true, 0),
		derived("drug_era_end_date", schemas.TypeDate, "date", true, 0),
		derived("drug_exposure_count", schemas.TypeInt, "integer", false, 0),
		derived("gap_days", schemas.TypeInt, "integer", false, 0),
	},
	"cdm_source": {
		derived("cdm_source_name", schemas.TypeString, "varchar(255)", true, 255),
		derived("cdm_source_abbreviation", schemas.TypeString, "varchar(25)", true, 25),
		derived("cdm_holder", schemas.TypeString, "varchar(255)", true, 255),
		derived("source_description", schemas.TypeString, "varchar(MAX)", false, 0),
		derived("source_documentation_reference", schemas.TypeString, "varchar(255)", false, 255),
		derived("cdm_etl_reference", schemas.TypeString, "varchar(255)", false, 255),
		derived("source_release_date", schemas.TypeDate, "date", true, 0),
		derived("cdm_release_date", schemas.TypeDate, "date", true, 0),
		derived("cdm_version", schemas.TypeString, "varchar(10)", false, 10),
		derived("cdm_version_concept_id", schemas.TypeInt, "integer", true, 0),
		derived("vocabulary_version", schemas.TypeString, "varchar(20)", true, 20),
	},
}

// CDMTables are the tables of the gold CDM that a refresh writes: the clinical tables
// (links resolved) and the derived ones. The vocabulary tables are vocab.Tables.
var CDMTables = append(append([]string(nil), ClinicalTables...), DerivedTables...)

// Columns returns the CDM columns of a table of the gold CDM (CDMTables), in DDL order.
// The slice is shared: callers must not modify it.
func Columns(table string) ([]schemas.Column, error) {
	if cols, ok := derivedColumns[table]; ok {
		return cols, nil
	}
	t, err := schemas.OMOPTable(table)
	if err != nil {
		return nil, fmt.Errorf("gold: %w", err)
	}
	return t.CDMColumns(), nil
}
