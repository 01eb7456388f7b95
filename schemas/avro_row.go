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
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// toNative checks v against col and returns the value goavro's codec for col's type
// accepts. Values goavro takes as they are come back unchanged, so the common case
// allocates no new interface value.
func toNative(col *Column, v any) (any, error) {
	switch col.Type {
	case TypeInt:
		switch x := v.(type) {
		case int32:
			return v, nil
		case int:
			if x >= math.MinInt32 && x <= math.MaxInt32 {
				return v, nil
			}
		case int64:
			if x >= math.MinInt32 && x <= math.MaxInt32 {
				return v, nil
			}
		case int16:
			return int32(x), nil
		case int8:
			return int32(x), nil
		case uint16:
			return int32(x), nil
		case uint8:
			return int32(x), nil
		default:
			return nil, typeError(col, v)
		}
		return nil, fmt.Errorf("column %s: %v does not fit in a 32-bit int", col.Name, v)
	case TypeLong:
		switch x := v.(type) {
		case int64, int, int32:
			return v, nil
		case uint32:
			return int64(x), nil
		case uint64:
			if x <= math.MaxInt64 {
				return int64(x), nil
			}
			return nil, fmt.Errorf("column %s: %d does not fit in a 64-bit signed long", col.Name, x)
		}
	case TypeDouble:
		switch x := v.(type) {
		case float64:
			return v, nil
		case float32:
			return float64(x), nil
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case int32:
			return float64(x), nil
		}
	case TypeString:
		if s, ok := v.(string); ok {
			// len(s) bounds the character count, so most strings skip the rune count.
			if col.MaxLength > 0 && len(s) > col.MaxLength {
				if n := utf8.RuneCountInString(s); n > col.MaxLength {
					return nil, fmt.Errorf("column %s: %d characters, more than its varchar(%d)", col.Name, n, col.MaxLength)
				}
			}
			return v, nil
		}
	case TypeBoolean:
		if _, ok := v.(bool); ok {
			return v, nil
		}
	case TypeDate:
		if t, ok := v.(time.Time); ok {
			if t.IsZero() {
				return nil, fmt.Errorf("column %s: zero time.Time (use nil for null)", col.Name)
			}
			return epochDays(t), nil
		}
	case TypeTimestamp:
		if t, ok := v.(time.Time); ok {
			if t.IsZero() {
				return nil, fmt.Errorf("column %s: zero time.Time (use nil for null)", col.Name)
			}
			// goavro converts time.Time itself, and correctly for instants before 1970.
			return v, nil
		}
	}
	return nil, typeError(col, v)
}

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
	for name, v := range row {
		s, ok := v.(string)
		if !ok {
			continue
		}
		col, ok := t.Column(name)
		if !ok || col.MaxLength == 0 || len(s) <= col.MaxLength {
			continue
		}
		if short := TruncateString(s, col.MaxLength); len(short) < len(s) {
			row[name] = short
			cut = append(cut, name)
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
