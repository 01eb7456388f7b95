package goldlake

import (
	"fmt"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// parquetRow fills dst with the values of a row in the map form (gold.Row; vocabulary
// rows are given by position, see vocabularyRow) in the layout's column order. A
// required column without a value, or a value of the wrong type, is an error naming the
// table and column.
func parquetRow(dst parquet.Row, l *lakehouse.Layout, value func(i int, name string) any) (parquet.Row, error) {
	dst = dst[:0]
	for i, c := range l.Columns {
		v := value(i, c.Name)
		if v == nil {
			if c.Required {
				return dst, fmt.Errorf("%s: required column %s is null", l, c.Name)
			}
			dst = append(dst, parquet.NullValue().Level(0, 0, i))
			continue
		}
		pv, ok := icebergValue(c.Type, v)
		if !ok {
			return dst, fmt.Errorf("%s: column %s (%s) holds a %T", l, c.Name, c.Type, v)
		}
		def := 0
		if !c.Required {
			def = 1
		}
		dst = append(dst, pv.Level(0, def, i))
	}
	return dst, nil
}

// icebergValue converts a Go value of the map form to the Parquet value of an Iceberg
// column type.
func icebergValue(t iceberg.PrimitiveType, v any) (parquet.Value, bool) {
	switch t {
	case iceberg.PrimitiveTypes.Int32:
		switch x := v.(type) {
		case int32:
			return parquet.Int32Value(x), true
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
		}
	case iceberg.PrimitiveTypes.Float64:
		if x, ok := v.(float64); ok {
			return parquet.DoubleValue(x), true
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
			return parquet.Int32Value(epochDays(d)), true
		}
	case iceberg.PrimitiveTypes.Timestamp:
		if ts, ok := v.(time.Time); ok {
			return parquet.Int64Value(wallMicros(ts)), true
		}
	}
	return parquet.Value{}, false
}

// epochDays is the calendar date of t (as its own location reads it) in days since
// 1970-01-01.
func epochDays(t time.Time) int32 {
	y, m, d := t.Date()
	return int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// wallMicros is t's wall-clock reading in its own location, as microseconds of a
// timestamp without zone (the CDM's datetimes).
func wallMicros(t time.Time) int64 {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC).UnixMicro()
}
