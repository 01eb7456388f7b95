package lakehouse

import (
	"time"

	"github.com/apache/iceberg-go"
	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/schemas"
)

// ParquetValue converts a Go value to the Parquet value of an Iceberg column of type t,
// for the rows the lake writes from decoded Avro records (the OMOP sink) and from maps
// of Go values (the gold tables): integers of any width that fit the column, float32 or
// float64, string, bool, and time.Time for dates and timestamps (a timestamp without zone
// is the wall clock in the value's own location, as the CDM's datetimes are; an int64
// for one is a local-timestamp-micros a decoder left as its number). ok is false for a
// value the column cannot hold.
func ParquetValue(t iceberg.PrimitiveType, v any) (parquet.Value, bool) {
	switch t {
	case iceberg.PrimitiveTypes.Int32:
		switch x := v.(type) {
		case int32:
			return parquet.Int32Value(x), true
		case int:
			if x == int(int32(x)) {
				return parquet.Int32Value(int32(x)), true
			}
		case int64:
			if x == int64(int32(x)) {
				return parquet.Int32Value(int32(x)), true
			}
		}
	case iceberg.PrimitiveTypes.Int64:
		switch x := v.(type) {
		case int64:
			return parquet.Int64Value(x), true
		case int32:
			return parquet.Int64Value(int64(x)), true
		case int:
			return parquet.Int64Value(int64(x)), true
		}
	case iceberg.PrimitiveTypes.Float64:
		switch x := v.(type) {
		case float64:
			return parquet.DoubleValue(x), true
		case float32:
			return parquet.DoubleValue(float64(x)), true
		}
	case iceberg.PrimitiveTypes.String:
		if s, ok := v.(string); ok {
			return parquet.ByteArrayValue([]byte(s)), true
		}
	case iceberg.PrimitiveTypes.Bool:
		if b, ok := v.(bool); ok {
			return parquet.BooleanValue(b), true
		}
	case iceberg.PrimitiveTypes.Date:
		if d, ok := v.(time.Time); ok {
			return parquet.Int32Value(schemas.EpochDays(d)), true
		}
	case iceberg.PrimitiveTypes.Timestamp:
		switch x := v.(type) {
		case time.Time:
			return parquet.Int64Value(schemas.WallMicros(x)), true
		case int64:
			return parquet.Int64Value(x), true
		}
	case iceberg.PrimitiveTypes.TimestampTz:
		if ts, ok := v.(time.Time); ok {
			return parquet.Int64Value(ts.UnixMicro()), true
		}
	}
	return parquet.Value{}, false
}
