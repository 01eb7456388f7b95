package schemas

// Rows are plain Go maps so the mapper never deals with Avro's union wrappers. The rules,
// per column type (see ColumnType):
//
//	int        int32; also int, int64, int16, int8, uint16, uint8 when in range
//	long       int64; also int, int32, uint32, uint64 when in range
//	double     float64; also float32 and the integer types
//	string     string, at most MaxLength characters (see TruncateStrings)
//	boolean    bool
//	date       time.Time: its calendar date in its own location, time of day ignored
//	timestamp  time.Time: the instant, stored as UTC microseconds
//
// nil or an absent key is null. A required column must be present and non-nil unless it
// has a default (_fhir_component 0, _fhir_deleted false). A key that is not a column of
// the table is an error, so a misspelt column cannot vanish silently. A zero time.Time is
// rejected: it is almost always an unset variable, and nil says null.
//
// Decoding returns a map holding every column of the writer's schema, with nil for null,
// the first Go type of each line above, and time.Time in UTC for dates and timestamps.

import (
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
			return appendVarint(b, int64(epochDays(t))), nil
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
	}
	return b, typeError(col, v)
}

// appendVarint appends n as Avro writes an int or a long: zig-zag, then a base-128
// varint, which is exactly what encoding/binary's signed varint is.
func appendVarint(b []byte, n int64) []byte { return binary.AppendVarint(b, n) }

func typeError(col *Column, v any) error {
	return fmt.Errorf("column %s: %s column given %T", col.Name, col.Type, v)
}

// epochDays is the Avro date of t's calendar day. goavro's own conversion divides the
// instant by 86400 s, which shifts the day for non-UTC locations and for times of day
// before 1970 (truncation toward zero); birth dates make both matter.
func epochDays(t time.Time) int32 {
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
