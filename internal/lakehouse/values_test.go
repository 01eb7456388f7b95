package lakehouse

import (
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/parquet-go/parquet-go"
)

func TestParquetValue(t *testing.T) {
	plus5 := time.FixedZone("+05:00", 5*3600)
	for _, tc := range []struct {
		name string
		typ  iceberg.PrimitiveType
		v    any
		want parquet.Value
		ok   bool
	}{
		{"int32", iceberg.PrimitiveTypes.Int32, int32(-7), parquet.Int32Value(-7), true},
		{"int into int32", iceberg.PrimitiveTypes.Int32, 42, parquet.Int32Value(42), true},
		{"int64 that fits int32", iceberg.PrimitiveTypes.Int32, int64(1 << 30), parquet.Int32Value(1 << 30), true},
		{"int64 too large for int32", iceberg.PrimitiveTypes.Int32, int64(1 << 31), parquet.Value{}, false},
		{"int32 into int64", iceberg.PrimitiveTypes.Int64, int32(5), parquet.Int64Value(5), true},
		{"int64 id", iceberg.PrimitiveTypes.Int64, int64(-1 << 62), parquet.Int64Value(-1 << 62), true},
		{"float32", iceberg.PrimitiveTypes.Float64, float32(0.5), parquet.DoubleValue(0.5), true},
		{"string", iceberg.PrimitiveTypes.String, "mg", parquet.ByteArrayValue([]byte("mg")), true},
		{"bool", iceberg.PrimitiveTypes.Bool, true, parquet.BooleanValue(true), true},
		// 1969-12-31 is day -1, whatever time of day and zone the value carries.
		{"date before 1970, late in the day, east of UTC", iceberg.PrimitiveTypes.Date,
			time.Date(1969, 12, 31, 23, 30, 0, 0, plus5), parquet.Int32Value(-1), true},
		{"date 2000-01-01", iceberg.PrimitiveTypes.Date, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), parquet.Int32Value(10957), true},
		// A CDM datetime keeps the wall clock: 1970-01-01T01:00 at +05:00 is 3600 s of it.
		{"timestamp without zone is the wall clock", iceberg.PrimitiveTypes.Timestamp,
			time.Date(1970, 1, 1, 1, 0, 0, 0, plus5), parquet.Int64Value(3_600_000_000), true},
		{"timestamp as local-timestamp-micros", iceberg.PrimitiveTypes.Timestamp, int64(123), parquet.Int64Value(123), true},
		{"timestamptz is the instant", iceberg.PrimitiveTypes.TimestampTz,
			time.Date(1970, 1, 1, 6, 0, 0, 0, plus5), parquet.Int64Value(3_600_000_000), true},
		{"string into int64", iceberg.PrimitiveTypes.Int64, "1", parquet.Value{}, false},
		{"float64 into int32", iceberg.PrimitiveTypes.Int32, 1.0, parquet.Value{}, false},
		{"int64 into timestamptz", iceberg.PrimitiveTypes.TimestampTz, int64(1), parquet.Value{}, false},
	} {
		got, ok := ParquetValue(tc.typ, tc.v)
		if ok != tc.ok || ok && !parquet.Equal(got, tc.want) {
			t.Errorf("%s: ParquetValue(%s, %#v) = %v, %v; want %v, %v", tc.name, tc.typ, tc.v, got, ok, tc.want, tc.ok)
		}
		if ok && got.Kind() != tc.want.Kind() {
			t.Errorf("%s: kind %v, want %v", tc.name, got.Kind(), tc.want.Kind())
		}
	}
}
