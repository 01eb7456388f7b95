package schemas

// Rows come in two forms, neither with Avro's union wrappers: plain Go maps (Encode,
// Decode), and Row, the positional form the mapping stage builds (EncodeRow, below), which
// writes the same bytes. The rules of the map form, per column type (see ColumnType):
//
//	int        int32; also int, int64, int16, int8, uint16, uint8 when in range
//	long       int64; also int, int32, uint32, uint64 when in range
//	double     float64; also float32 and the integer types
//	string     string, at most MaxLength characters (see TruncateStrings)
//	boolean    bool
//	date       time.Time: its calendar date in its own location, time of day ignored
//	timestamp  time.Time: the instant, stored as UTC microseconds
//	local-timestamp  time.Time: its wall-clock reading in its own location, stored as
//	           microseconds from 1970-01-01T00:00:00 of the same clock (no time zone)
//
// nil or an absent key is null. A required column must be present and non-nil unless it
// has a default (_fhir_component 0, _fhir_deleted false). A key that is not a column of
// the table is an error, so a misspelt column cannot vanish silently. A zero time.Time is
// rejected: it is almost always an unset variable, and nil says null.
//
// Decoding returns a map holding every column of the writer's schema, with nil for null,
// the first Go type of each line above, and time.Time in UTC for dates and timestamps
// (a local timestamp's wall clock read as if it were UTC).

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// appendValue checks v against col and appends its Avro binary encoding (without a
// union branch index) to b. On error the returned slice is b unchanged.
func appendValue(b []byte, col *Column, v any) ([]byte, error) {
	switch col.Type {
	case TypeInt:
		var n int64
		switch x := v.(type) {
		case int32:
			return appendVarint(b, int64(x)), nil
		case int:
			n = int64(x)
		case int64:
			n = x
		case int16:
			return appendVarint(b, int64(x)), nil
		case int8:
			return appendVarint(b, int64(x)), nil
		case uint16:
			return appendVarint(b, int64(x)), nil
		case uint8:
			return appendVarint(b, int64(x)), nil
		default:
			return b, typeError(col, v)
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return b, fmt.Errorf("column %s: %v does not fit in a 32-bit int", col.Name, v)
		}
		return appendVarint(b, n), nil
	case TypeLong:
		switch x := v.(type) {
		case int64:
			return appendVarint(b, x), nil
		case int:
			return appendVarint(b, int64(x)), nil
		case int32:
			return appendVarint(b, int64(x)), nil
		case uint32:
			return appendVarint(b, int64(x)), nil
		case uint64:
			if x <= math.MaxInt64 {
				return appendVarint(b, int64(x)), nil
			}
			return b, fmt.Errorf("column %s: %d does not fit in a 64-bit signed long", col.Name, x)
		}
	case TypeDouble:
		switch x := v.(type) {
		case float64:
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)), nil
		case float32:
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(x))), nil
		case int:
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(x))), nil
		case int64:
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(x))), nil
		case int32:
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(x))), nil
		}
	case TypeString:
		if s, ok := v.(string); ok {
			// len(s) bounds the character count, so most strings skip the rune count.
			if col.MaxLength > 0 && len(s) > col.MaxLength {
				if n := utf8.RuneCountInString(s); n > col.MaxLength {
					return b, fmt.Errorf("column %s: %d characters, more than its varchar(%d)", col.Name, n, col.MaxLength)
				}
			}
			return append(appendVarint(b, int64(len(s))), s...), nil
		}
	case TypeBoolean:
		if x, ok := v.(bool); ok {
			if x {
				return append(b, 1), nil
			}
			return append(b, 0), nil
		}
	case TypeDate:
		if t, ok := v.(time.Time); ok {
			if t.IsZero() {
				return b, fmt.Errorf("column %s: zero time.Time (use nil for null)", col.Name)
			}
			return appendVarint(b, int64(EpochDays(t))), nil
		}
	case TypeTimestamp:
		if t, ok := v.(time.Time); ok {
			if t.IsZero() {
				return b, fmt.Errorf("column %s: zero time.Time (use nil for null)", col.Name)
			}
			// goavro's conversion, exact for instants before 1970 too: Nanosecond is
			// never negative, so this is the floor of the instant in microseconds.
			return appendVarint(b, t.Unix()*1e6+int64(t.Nanosecond()/1e3)), nil
		}
	case TypeLocalTimestamp:
		if t, ok := v.(time.Time); ok {
			if t.IsZero() {
				return b, fmt.Errorf("column %s: zero time.Time (use nil for null)", col.Name)
			}
			return appendVarint(b, WallMicros(t)), nil
		}
	}
	return b, typeError(col, v)
}

// WallMicros is t's clock reading in its own location, as microseconds from
// 1970-01-01T00:00:00 of that clock (floored, as for instants): the value of an Avro
// local-timestamp-micros and of an Iceberg timestamp without zone (the CDM's datetimes).
func WallMicros(t time.Time) int64 {
	_, offset := t.Zone()
	return (t.Unix()+int64(offset))*1e6 + int64(t.Nanosecond()/1e3)
}

// appendVarint appends n as Avro writes an int or a long: zig-zag, then a base-128
// varint, which is exactly what encoding/binary's signed varint is.
func appendVarint(b []byte, n int64) []byte { return binary.AppendVarint(b, n) }

func typeError(col *Column, v any) error {
	return fmt.Errorf("column %s: %s column given %T", col.Name, col.Type, v)
}

// EpochDays is t's calendar day (as its own location reads it) in days since
// 1970-01-01: the value of an Avro and an Iceberg date. goavro's own conversion divides
// the instant by 86400 s, which shifts the day for non-UTC locations and for times of day
// before 1970 (truncation toward zero); birth dates make both matter.
func EpochDays(t time.Time) int32 {
	y, m, d := t.Date()
	return int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// TruncateStrings cuts each string in row that is longer than its column's MaxLength
// down to MaxLength characters, in place, and returns the names of the columns it cut
// (nil when none), so the mapper can count truncations instead of failing the row.
// Values that are not strings and keys that are not columns are left for EncodeRow to
// reject.
func (t *Table) TruncateStrings(row map[string]any) []string {
	var cut []string
	// Only the bounded string columns can need cutting; looking those up is cheaper than
	// walking every entry of the row, and this runs for every row the mapper emits.
	for _, i := range t.bounded {
		col := &t.Columns[i]
		s, ok := row[col.Name].(string)
		if !ok || len(s) <= col.MaxLength {
			continue
		}
		if short := TruncateString(s, col.MaxLength); len(short) < len(s) {
			row[col.Name] = short
			cut = append(cut, col.Name)
		}
	}
	return cut
}

// TruncateString returns the first maxChars characters of s (all of s when shorter),
// never splitting a UTF-8 sequence.
func TruncateString(s string, maxChars int) string {
	if len(s) <= maxChars {
		return s
	}
	n := 0
	for i := range s {
		if n == maxChars {
			return s[:i]
		}
		n++
	}
	return s
}

// Row is one row of a table held by column position, the form for hot paths: a value per
// column in schema order, set through typed setters, so building a row boxes no value in
// an interface and hashes no column name, and encoding it (Codec.EncodeRow) walks two
// parallel slices. Resolve column positions once with Table.ColumnIndex. A column never
// set (or set and then cleared by Reset) is null; the rules for nulls, defaults and
// varchar lengths are those of the map form above. Setting a value of the wrong type for
// its column records an error that EncodeRow returns (ErrInvalidRow), as the map form's
// type check does. A Row is not safe for concurrent use; Reset makes it reusable.
type Row struct {
	table *Table
	vals  []rowValue
	err   error // the first setter error, returned by EncodeRow
}

// rowValue is one column's value. n holds every fixed-size type in the form Avro writes
// it: int and long as is, boolean 0/1, date as days since 1970-01-01, timestamp as UTC
// microseconds, local timestamp as wall-clock microseconds, double as its IEEE 754 bits;
// s holds strings.
type rowValue struct {
	set bool
	n   int64
	s   string
}

// NewRow returns an empty (all null) row of t.
func (t *Table) NewRow() *Row {
	return &Row{table: t, vals: make([]rowValue, len(t.Columns))}
}

// ColumnIndex returns the position of the column called name, for Row's setters.
func (t *Table) ColumnIndex(name string) (int, bool) {
	i, ok := t.index[name]
	return i, ok
}

// Table returns the row's table.
func (r *Row) Table() *Table { return r.table }

// Reset makes every column null again and forgets setter errors.
func (r *Row) Reset() {
	clear(r.vals)
	r.err = nil
}

// Err returns the first setter error since the row was made or Reset, or nil.
func (r *Row) Err() error { return r.err }

// check reports whether column i has type want, recording an error when it has not.
func (r *Row) check(i int, want ColumnType, given string) bool {
	if col := &r.table.Columns[i]; col.Type != want {
		if r.err == nil {
			r.err = fmt.Errorf("column %s: %s column given %s", col.Name, col.Type, given)
		}
		return false
	}
	return true
}

// SetInt sets int column i.
func (r *Row) SetInt(i int, v int32) {
	if r.check(i, TypeInt, "int32") {
		r.vals[i] = rowValue{set: true, n: int64(v)}
	}
}

// SetLong sets long column i.
func (r *Row) SetLong(i int, v int64) {
	if r.check(i, TypeLong, "int64") {
		r.vals[i] = rowValue{set: true, n: v}
	}
}

// SetDouble sets double column i.
func (r *Row) SetDouble(i int, v float64) {
	if r.check(i, TypeDouble, "float64") {
		r.vals[i] = rowValue{set: true, n: int64(math.Float64bits(v))}
	}
}

// SetString sets string column i. The row keeps s, not a copy.
func (r *Row) SetString(i int, s string) {
	if r.check(i, TypeString, "string") {
		r.vals[i] = rowValue{set: true, s: s}
	}
}

// SetBool sets boolean column i.
func (r *Row) SetBool(i int, v bool) {
	if r.check(i, TypeBoolean, "bool") {
		n := int64(0)
		if v {
			n = 1
		}
		r.vals[i] = rowValue{set: true, n: n}
	}
}

// SetDate sets date column i to t's calendar date in t's own location. A zero t is an
// error, as in the map form.
func (r *Row) SetDate(i int, t time.Time) {
	if !r.check(i, TypeDate, "time.Time") {
		return
	}
	if t.IsZero() {
		r.zeroTime(i)
		return
	}
	r.vals[i] = rowValue{set: true, n: int64(EpochDays(t))}
}

// SetTimestamp sets timestamp column i to the instant t. A zero t is an error.
func (r *Row) SetTimestamp(i int, t time.Time) {
	if !r.check(i, TypeTimestamp, "time.Time") {
		return
	}
	if t.IsZero() {
		r.zeroTime(i)
		return
	}
	r.vals[i] = rowValue{set: true, n: t.Unix()*1e6 + int64(t.Nanosecond()/1e3)}
}

// SetLocalTimestamp sets local-timestamp column i to t's wall-clock reading in t's own
// location (2024-03-01T23:30:00-05:00 is stored as 2024-03-01 23:30:00). A zero t is an
// error.
func (r *Row) SetLocalTimestamp(i int, t time.Time) {
	if !r.check(i, TypeLocalTimestamp, "time.Time") {
		return
	}
	if t.IsZero() {
		r.zeroTime(i)
		return
	}
	r.vals[i] = rowValue{set: true, n: WallMicros(t)}
}

func (r *Row) zeroTime(i int) {
	if r.err == nil {
		r.err = fmt.Errorf("column %s: zero time.Time (leave the column unset for null)", r.table.Columns[i].Name)
	}
}

// Map returns the row in the map form (see above): set columns only, dates as UTC
// midnight of their day, timestamps in UTC, local timestamps as their wall clock in UTC. Encoders that take only maps are given this.
// One value does not survive the trip: 0001-01-01T00:00:00Z (to the microsecond) becomes
// the zero time.Time, which the map form refuses.
func (r *Row) Map() map[string]any {
	m := make(map[string]any, len(r.vals))
	for i := range r.vals {
		v := &r.vals[i]
		if !v.set {
			continue
		}
		col := &r.table.Columns[i]
		var x any
		switch col.Type {
		case TypeInt:
			x = int32(v.n)
		case TypeLong:
			x = v.n
		case TypeDouble:
			x = math.Float64frombits(uint64(v.n))
		case TypeString:
			x = v.s
		case TypeBoolean:
			x = v.n != 0
		case TypeDate:
			x = time.Unix(v.n*86400, 0).UTC()
		case TypeTimestamp, TypeLocalTimestamp:
			x = time.UnixMicro(v.n).UTC()
		}
		m[col.Name] = x
	}
	return m
}

// TruncateStrings is Table.TruncateStrings for a Row: it cuts the strings longer than
// their column's MaxLength, in place, and returns the names of the columns it cut.
func (r *Row) TruncateStrings() []string {
	var cut []string
	for _, i := range r.table.bounded {
		col := &r.table.Columns[i]
		v := &r.vals[i]
		if !v.set || len(v.s) <= col.MaxLength {
			continue
		}
		if short := TruncateString(v.s, col.MaxLength); len(short) < len(v.s) {
			v.s = short
			cut = append(cut, col.Name)
		}
	}
	return cut
}

// EncodeRow returns r in single-object encoding, in a new slice the caller owns. It
// writes exactly what Encode writes for r.Map().
func (c *Codec) EncodeRow(_ context.Context, r *Row) ([]byte, error) {
	tc, err := c.table(r.table.Name)
	if err != nil {
		return nil, err
	}
	return tc.encodeRow(nil, r)
}

// EncodeRow returns r in the Confluent wire format; see Codec.EncodeRow.
func (r *RegistryCodec) EncodeRow(ctx context.Context, row *Row) ([]byte, error) {
	tc, header, err := r.header(ctx, row.table.Name)
	if err != nil {
		return nil, err
	}
	return tc.encodeRow(header[:], row)
}

// encodeRow is encode for a Row.
func (tc *tableCodec) encodeRow(header []byte, r *Row) ([]byte, error) {
	if r.table != tc.table {
		// Same name, other *Table: its positions may not be this schema's.
		return nil, fmt.Errorf("%w: row of another %s table than the codec's", ErrInvalidRow, tc.table.Name)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidRow, tc.table.Name, r.err)
	}
	s := tc.scratch.Get().(*encodeScratch)
	defer tc.scratch.Put(s)
	if header == nil {
		header = tc.soeHeader
	}
	out := append(s.buf[:0], header...)
	var err error
	for i := range tc.table.Columns {
		col := &tc.table.Columns[i]
		v := &r.vals[i]
		if !v.set {
			switch {
			case !col.Required:
				out = append(out, 0) // union branch 0: null
			case col.def != nil:
				if out, err = appendValue(out, col, col.def); err != nil {
					return nil, fmt.Errorf("%w: %s: %w", ErrInvalidRow, tc.table.Name, err)
				}
			default:
				return nil, fmt.Errorf("%w: %s: required column %s is missing or nil", ErrInvalidRow, tc.table.Name, col.Name)
			}
			continue
		}
		if !col.Required {
			out = append(out, 2) // union branch 1 (zig-zag): the value
		}
		switch col.Type {
		case TypeDouble:
			out = binary.LittleEndian.AppendUint64(out, uint64(v.n))
		case TypeBoolean:
			out = append(out, byte(v.n))
		case TypeString:
			if col.MaxLength > 0 && len(v.s) > col.MaxLength {
				if n := utf8.RuneCountInString(v.s); n > col.MaxLength {
					return nil, fmt.Errorf("%w: %s: column %s: %d characters, more than its varchar(%d)", ErrInvalidRow, tc.table.Name, col.Name, n, col.MaxLength)
				}
			}
			out = append(appendVarint(out, int64(len(v.s))), v.s...)
		default: // int, long, date, timestamps: all varints
			out = appendVarint(out, v.n)
		}
	}
	s.buf = out // keep the grown buffer for the next row
	return append([]byte(nil), out...), nil
}
