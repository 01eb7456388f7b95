package sink

import (
	"reflect"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
)

// Columns every layer appends after its own, so a row can be traced to the record it came
// from and ordered against other versions of the same source resource.
const (
	ColKafkaPartition = "_kafka_partition"
	ColKafkaOffset    = "_kafka_offset"
)

// column is one leaf of a dataset's flat schema.
type column struct {
	name     string
	node     parquet.Node // the leaf, without optional wrapping
	optional bool
}

// dataset is the Parquet layout of one output table (an OMOP table or a FHIR type).
type dataset struct {
	name   string // table or resource type, as reported in stats
	dir    string // lake-relative directory, e.g. "omop/person"
	cols   []column
	schema *parquet.Schema
	bloom  []string // columns with a bloom filter
}

func newDataset(name, dir string, cols []column, bloom []string) *dataset {
	return &dataset{name: name, dir: dir, cols: cols, schema: parquet.NewSchema(name, orderedGroup(cols)), bloom: bloom}
}

// orderedGroup is a Parquet group whose fields keep the order given. parquet.Group is a
// map and sorts its fields by name; keeping the CDM DDL order instead makes "SELECT *" and
// DESCRIBE read like the CDM documentation. Rows are always written as parquet.Row values
// indexed in this order, so the reflection hooks (Value, GoType) only serve parquet-go's
// generic code paths.
type orderedGroup []column

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
	fields := make([]parquet.Field, len(g))
	for i, c := range g {
		n := c.node
		if c.optional {
			n = parquet.Optional(n)
		}
		fields[i] = field{Node: n, name: c.name}
	}
	return fields
}

func (g orderedGroup) GoType() reflect.Type {
	fs := make([]reflect.StructField, len(g))
	for i, f := range g.Fields() {
		fs[i] = reflect.StructField{
			Name: "F" + strings.ReplaceAll(f.Name(), "-", "_"),
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

// Leaf nodes of the types the sink writes.
var (
	nodeInt32     = parquet.Leaf(parquet.Int32Type)
	nodeInt64     = parquet.Leaf(parquet.Int64Type)
	nodeDouble    = parquet.Leaf(parquet.DoubleType)
	nodeBoolean   = parquet.Leaf(parquet.BooleanType)
	nodeString    = parquet.String()
	nodeDate      = parquet.Date()
	nodeTimestamp = parquet.Timestamp(parquet.Microsecond)
	// nodeLocalTimestamp is a wall-clock timestamp (isAdjustedToUTC=false), the CDM's datetime.
	nodeLocalTimestamp = parquet.TimestampAdjusted(parquet.Microsecond, false)
)

// kafkaColumns are appended to every dataset.
var kafkaColumns = []column{
	{name: ColKafkaPartition, node: nodeInt32},
	{name: ColKafkaOffset, node: nodeInt64},
}

// appendValue appends v at column index i with the definition level its presence implies.
func appendValue(row parquet.Row, i int, optional bool, v parquet.Value) parquet.Row {
	def := 0
	if optional {
		def = 1
	}
	return append(row, v.Level(0, def, i))
}

// appendNull appends a null at optional column index i.
func appendNull(row parquet.Row, i int) parquet.Row {
	return append(row, parquet.NullValue().Level(0, 0, i))
}
