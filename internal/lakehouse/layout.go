package lakehouse

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"

	"github.com/apache/iceberg-go"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/fhirstream/fhirstream/schemas"
)

// Namespaces of the lake.
const (
	NamespaceOMOP   = "omop"   // the OMOP CDM, current state
	NamespaceFHIR   = "fhir"   // silver: the current version of each FHIR resource
	NamespaceBronze = "bronze" // every record fetched, appended
)

// Lineage columns. A row of omop.* and fhir.* is traced to its source resource by
// _fhir_key, and every row to the Kafka record it came from.
const (
	ColFHIRKey         = schemas.ColFHIRKey         // "<Type>/<id>" of the source resource
	ColFHIRVersion     = schemas.ColFHIRVersion     // its meta.versionId (or lastUpdated)
	ColFHIRLastUpdated = schemas.ColFHIRLastUpdated // its meta.lastUpdated
	ColFHIRComponent   = schemas.ColFHIRComponent   // the row's index among its version's rows
	ColKafkaPartition  = "_kafka_partition"
	ColKafkaOffset     = "_kafka_offset"
	ColKafkaTimestamp  = "_kafka_timestamp"
	ColExportID        = "_fhir_export_id"
	ColSourceURL       = "_fhir_source_url" // the export file's URL without its query (no signatures)
	ColSourceLine      = "_fhir_source_line"
)

// Column is one column of a lake table: an Iceberg primitive type, written to Parquet
// with the matching physical and logical type.
type Column struct {
	Name     string
	Type     iceberg.PrimitiveType
	Required bool
	Doc      string
}

// Layout is the layout of one lake table. Column i has Iceberg field id i+1, in Parquet
// too, so engines that resolve columns by id (Spark, Trino) and by name (DuckDB) agree.
type Layout struct {
	Namespace, Name string
	Columns         []Column
	// Identifier names the identifier fields (Iceberg's row identity): the CDM primary
	// key for OMOP tables, _fhir_key for silver, none for bronze.
	Identifier []string
	// DeleteKey is the column equality deletes match on (_fhir_key), "" for append-only
	// tables.
	DeleteKey string

	index   map[string]int
	ice     *iceberg.Schema
	pq      *parquet.Schema
	deletes *parquet.Schema
}

// NewLayout checks cols and builds the Iceberg and Parquet schemas.
func NewLayout(namespace, name string, cols []Column, identifier []string, deleteKey string) (*Layout, error) {
	l := &Layout{Namespace: namespace, Name: name, Columns: cols, Identifier: identifier, DeleteKey: deleteKey, index: map[string]int{}}
	fields := make([]iceberg.NestedField, len(cols))
	group := make(orderedGroup, len(cols))
	for i, c := range cols {
		if _, dup := l.index[c.Name]; dup {
			return nil, fmt.Errorf("lakehouse: table %s.%s: column %s twice", namespace, name, c.Name)
		}
		l.index[c.Name] = i
		fields[i] = iceberg.NestedField{ID: i + 1, Name: c.Name, Type: c.Type, Required: c.Required, Doc: c.Doc}
		n, err := parquetNode(c.Type)
		if err != nil {
			return nil, fmt.Errorf("lakehouse: table %s.%s column %s: %w", namespace, name, c.Name, err)
		}
		if !c.Required {
			n = parquet.Optional(n)
		}
		group[i] = field{Node: parquet.FieldID(n, i+1), name: c.Name}
	}
	var ids []int
	for _, n := range identifier {
		i, ok := l.index[n]
		if !ok || !cols[i].Required {
			return nil, fmt.Errorf("lakehouse: table %s.%s: identifier %s is not a required column", namespace, name, n)
		}
		ids = append(ids, i+1)
	}
	l.ice = iceberg.NewSchemaWithIdentifiers(0, ids, fields...)
	l.pq = parquet.NewSchema(name, group)
	if deleteKey != "" {
		i, ok := l.index[deleteKey]
		if !ok || !cols[i].Required || !cols[i].Type.Equals(iceberg.PrimitiveTypes.String) {
			return nil, fmt.Errorf("lakehouse: table %s.%s: delete key %s is not a required string column", namespace, name, deleteKey)
		}
		l.deletes = parquet.NewSchema(name+"_deletes", orderedGroup{group[i]})
	}
	return l, nil
}

// String is namespace.name.
func (l *Layout) String() string { return l.Namespace + "." + l.Name }

// Schema is the table's Iceberg schema.
func (l *Layout) Schema() *iceberg.Schema { return l.ice }

// Index returns the position of the column called name.
func (l *Layout) Index(name string) (int, bool) {
	i, ok := l.index[name]
	return i, ok
}

// MustIndex is Index for the columns a layout is known to have.
func (l *Layout) MustIndex(name string) int {
	i, ok := l.index[name]
	if !ok {
		panic(fmt.Sprintf("lakehouse: table %s has no column %s", l, name))
	}
	return i
}

func parquetNode(t iceberg.PrimitiveType) (parquet.Node, error) {
	switch t {
	case iceberg.PrimitiveTypes.Int32:
		return parquet.Leaf(parquet.Int32Type), nil
	case iceberg.PrimitiveTypes.Int64:
		return parquet.Leaf(parquet.Int64Type), nil
	case iceberg.PrimitiveTypes.Float64:
		return parquet.Leaf(parquet.DoubleType), nil
	case iceberg.PrimitiveTypes.Bool:
		return parquet.Leaf(parquet.BooleanType), nil
	case iceberg.PrimitiveTypes.String:
		// PLAIN, not parquet-go's default DELTA_LENGTH_BYTE_ARRAY, which Spark's
		// vectorized reader refused before 3.4.
		return parquet.Encoded(parquet.String(), &parquet.Plain), nil
	case iceberg.PrimitiveTypes.Date:
		return parquet.Date(), nil
	case iceberg.PrimitiveTypes.Timestamp:
		return parquet.TimestampAdjusted(parquet.Microsecond, false), nil
	case iceberg.PrimitiveTypes.TimestampTz:
		return parquet.Timestamp(parquet.Microsecond), nil
	}
	return nil, fmt.Errorf("no Parquet type for Iceberg type %s", t)
}

// OMOPLayout is the layout of omop.<table>: exactly the CDM v5.4 columns in DDL order
// (record ids 64-bit, the stated deviation; integer concept ids int, float double,
// varchar string, date date, datetime timestamp without zone, as the CDM's datetimes are
// wall-clock), then the lineage columns. The retraction and replacement flags of the
// topic's envelope are instructions to the sink, not columns.
func OMOPLayout(table string) (*Layout, error) {
	t, err := schemas.OMOPTable(table)
	if err != nil {
		return nil, err
	}
	var cols []Column
	for _, c := range t.Columns {
		if c.Envelope {
			continue
		}
		typ, err := CDMType(c)
		if err != nil {
			return nil, fmt.Errorf("lakehouse: omop.%s column %s: %w", table, c.Name, err)
		}
		cols = append(cols, Column{Name: c.Name, Type: typ, Required: c.Required, Doc: c.Doc})
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("lakehouse: omop.%s has no CDM columns", table)
	}
	cols = append(cols,
		Column{Name: ColFHIRKey, Type: iceberg.PrimitiveTypes.String, Required: true, Doc: `"<Type>/<id>" of the FHIR resource this row was mapped from; not CDM.`},
		Column{Name: ColFHIRVersion, Type: iceberg.PrimitiveTypes.String, Doc: "The source resource's meta.versionId, or meta.lastUpdated when it has none; not CDM."},
		Column{Name: ColFHIRLastUpdated, Type: iceberg.PrimitiveTypes.TimestampTz, Doc: "The source resource's meta.lastUpdated; not CDM."},
		Column{Name: ColFHIRComponent, Type: iceberg.PrimitiveTypes.Int32, Required: true, Doc: "Index of this row among the rows one resource version yields; not CDM."},
	)
	cols = append(cols, kafkaColumns...)
	var ident []string
	if first := cols[0]; first.Required && strings.HasSuffix(first.Name, "_id") {
		ident = []string{first.Name}
	}
	return NewLayout(NamespaceOMOP, table, cols, ident, ColFHIRKey)
}

// CDMType is the Iceberg type of a CDM column. A CDM datetime is a timestamp without
// zone whichever Avro logical type carries it (timestamp-micros or
// local-timestamp-micros): the value is the wall-clock time the CDM defines.
func CDMType(c schemas.Column) (iceberg.PrimitiveType, error) {
	if c.CDMType == "datetime" {
		return iceberg.PrimitiveTypes.Timestamp, nil
	}
	switch c.Type {
	case schemas.TypeInt:
		return iceberg.PrimitiveTypes.Int32, nil
	case schemas.TypeLong:
		return iceberg.PrimitiveTypes.Int64, nil
	case schemas.TypeDouble:
		return iceberg.PrimitiveTypes.Float64, nil
	case schemas.TypeString:
		return iceberg.PrimitiveTypes.String, nil
	case schemas.TypeBoolean:
		return iceberg.PrimitiveTypes.Bool, nil
	case schemas.TypeDate:
		return iceberg.PrimitiveTypes.Date, nil
	case schemas.TypeTimestamp:
		return iceberg.PrimitiveTypes.TimestampTz, nil
	}
	return nil, fmt.Errorf("no Iceberg type for %s", c.Type)
}

var kafkaColumns = []Column{
	{Name: ColKafkaPartition, Type: iceberg.PrimitiveTypes.Int32, Required: true, Doc: "Kafka partition of the record this row came from."},
	{Name: ColKafkaOffset, Type: iceberg.PrimitiveTypes.Int64, Required: true, Doc: "Kafka offset of the record this row came from."},
}

// Silver (fhir.<type>) column names.
const (
	ColID           = "id"
	ColVersionID    = "version_id"
	ColLastUpdated  = "last_updated"
	ColPatientRef   = "patient_ref"
	ColEncounterRef = "encounter_ref"
	ColMainDate     = "main_date"
	ColCodeSystem   = "code_system"
	ColCode         = "code"
	ColResource     = "resource"
	ColResourceType = "resource_type"
	ColDeleted      = "deleted"
)

var provenanceColumns = []Column{
	{Name: ColExportID, Type: iceberg.PrimitiveTypes.String, Doc: "Bulk Data export the resource was fetched in."},
	{Name: ColSourceURL, Type: iceberg.PrimitiveTypes.String, Doc: "NDJSON file it was read from (URL without its query string)."},
	{Name: ColSourceLine, Type: iceberg.PrimitiveTypes.Int64, Doc: "1-based line of that file."},
}

// FHIRLayout is the layout of fhir.<type>: the current version of each resource of one
// FHIR type, with the columns analysts filter on promoted next to the resource JSON.
func FHIRLayout(resourceType string) (*Layout, error) {
	if !schemas.ValidResourceType(resourceType) {
		return nil, fmt.Errorf("lakehouse: %q is not a FHIR R4 resource type", resourceType)
	}
	cols := []Column{
		{Name: ColID, Type: iceberg.PrimitiveTypes.String, Required: true, Doc: "Resource id."},
		{Name: ColVersionID, Type: iceberg.PrimitiveTypes.String, Doc: "meta.versionId."},
		{Name: ColLastUpdated, Type: iceberg.PrimitiveTypes.TimestampTz, Doc: "meta.lastUpdated."},
		{Name: ColPatientRef, Type: iceberg.PrimitiveTypes.String, Doc: `The patient the resource is about ("Patient/<id>"): subject, patient or beneficiary; the resource itself for a Patient.`},
		{Name: ColEncounterRef, Type: iceberg.PrimitiveTypes.String, Doc: "encounter (or context) reference."},
		{Name: ColMainDate, Type: iceberg.PrimitiveTypes.Date, Doc: "The resource's main clinical date (effective, onset, performed, authoredOn, period start, ...), as written (its own offset)."},
		{Name: ColCodeSystem, Type: iceberg.PrimitiveTypes.String, Doc: "System of the first coding of the resource's main code."},
		{Name: ColCode, Type: iceberg.PrimitiveTypes.String, Doc: "Code of that coding."},
		{Name: ColResource, Type: iceberg.PrimitiveTypes.String, Required: true, Doc: "The resource JSON exactly as exported."},
		{Name: ColFHIRKey, Type: iceberg.PrimitiveTypes.String, Required: true, Doc: `"<Type>/<id>".`},
	}
	cols = append(cols, provenanceColumns...)
	cols = append(cols, kafkaColumns...)
	cols = append(cols, Column{Name: ColKafkaTimestamp, Type: iceberg.PrimitiveTypes.TimestampTz, Required: true, Doc: "Kafka timestamp of the record."})
	return NewLayout(NamespaceFHIR, TableName(resourceType), cols, []string{ColFHIRKey}, ColFHIRKey)
}

// BronzeLayout is the layout of bronze.<type>: every record of the unique topic, appended
// (versions and deletions alike), with the resource JSON as exported.
func BronzeLayout(resourceType string) (*Layout, error) {
	if !schemas.ValidResourceType(resourceType) {
		return nil, fmt.Errorf("lakehouse: %q is not a FHIR R4 resource type", resourceType)
	}
	cols := []Column{
		{Name: ColID, Type: iceberg.PrimitiveTypes.String, Required: true, Doc: "Resource id."},
		{Name: ColResourceType, Type: iceberg.PrimitiveTypes.String, Required: true, Doc: "Resource type."},
		{Name: ColVersionID, Type: iceberg.PrimitiveTypes.String, Doc: "meta.versionId."},
		{Name: ColLastUpdated, Type: iceberg.PrimitiveTypes.TimestampTz, Doc: "meta.lastUpdated."},
		{Name: ColPatientRef, Type: iceberg.PrimitiveTypes.String, Doc: "The patient the resource is about."},
		{Name: ColResource, Type: iceberg.PrimitiveTypes.String, Doc: "The resource JSON exactly as exported; null for a deletion."},
		{Name: ColDeleted, Type: iceberg.PrimitiveTypes.Bool, Required: true, Doc: "True when the record deletes the resource."},
		{Name: ColFHIRKey, Type: iceberg.PrimitiveTypes.String, Required: true, Doc: `"<Type>/<id>".`},
	}
	cols = append(cols, provenanceColumns...)
	cols = append(cols, kafkaColumns...)
	cols = append(cols, Column{Name: ColKafkaTimestamp, Type: iceberg.PrimitiveTypes.TimestampTz, Required: true, Doc: "Kafka timestamp of the record."})
	return NewLayout(NamespaceBronze, TableName(resourceType), cols, nil, "")
}

// TableName is the lake table name of a FHIR resource type: lower snake case
// (MedicationRequest → medication_request).
func TableName(resourceType string) string {
	var b strings.Builder
	for i, r := range resourceType {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// orderedGroup is a Parquet group whose fields keep the order given. parquet.Group is a
// map and sorts its fields by name; keeping the table's column order makes the files
// read like the table. Rows are always written as parquet.Row values indexed in this
// order, so the reflection hooks (GoType, Value) only serve parquet-go's generic paths.
type orderedGroup []field

func (g orderedGroup) ID() int                     { return 0 }
func (g orderedGroup) String() string              { return "group" }
func (g orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g orderedGroup) Optional() bool              { return false }
func (g orderedGroup) Repeated() bool              { return false }
func (g orderedGroup) Required() bool              { return true }
func (g orderedGroup) Leaf() bool                  { return false }
func (g orderedGroup) Encoding() encoding.Encoding { return nil }
func (g orderedGroup) Compression() compress.Codec { return nil }

func (g orderedGroup) Fields() []parquet.Field {
	fs := make([]parquet.Field, len(g))
	for i := range g {
		fs[i] = g[i]
	}
	return fs
}

func (g orderedGroup) GoType() reflect.Type {
	fs := make([]reflect.StructField, len(g))
	for i, f := range g {
		fs[i] = reflect.StructField{
			Name: fmt.Sprintf("F%d", i),
			Type: f.GoType(),
			Tag:  reflect.StructTag(`parquet:"` + f.Name() + `"`),
		}
	}
	return reflect.StructOf(fs)
}

type field struct {
	parquet.Node
	name string
}

func (f field) Name() string { return f.name }

func (f field) Value(base reflect.Value) reflect.Value {
	for base.Kind() == reflect.Pointer || base.Kind() == reflect.Interface {
		if base.IsNil() {
			return reflect.Value{}
		}
		base = base.Elem()
	}
	switch base.Kind() {
	case reflect.Struct:
		for i := range base.NumField() {
			if base.Type().Field(i).Tag.Get("parquet") == f.name {
				return base.Field(i)
			}
		}
	case reflect.Map:
		return base.MapIndex(reflect.ValueOf(f.name))
	}
	return reflect.Value{}
}
