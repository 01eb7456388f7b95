package schemas

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// rowFromMap builds the positional Row of a map-form row through the typed setters.
func rowFromMap(t *testing.T, tab *Table, m map[string]any) *Row {
	t.Helper()
	r := tab.NewRow()
	for name, v := range m {
		i, ok := tab.ColumnIndex(name)
		if !ok {
			t.Fatalf("%s has no column %s", tab.Name, name)
		}
		if v == nil {
			continue
		}
		switch tab.Columns[i].Type {
		case TypeInt:
			r.SetInt(i, int32(toInt64(t, v)))
		case TypeLong:
			r.SetLong(i, toInt64(t, v))
		case TypeDouble:
			switch f := v.(type) {
			case float64:
				r.SetDouble(i, f)
			case float32:
				r.SetDouble(i, float64(f))
			default:
				r.SetDouble(i, float64(toInt64(t, v)))
			}
		case TypeString:
			r.SetString(i, v.(string))
		case TypeBoolean:
			r.SetBool(i, v.(bool))
		case TypeDate:
			r.SetDate(i, v.(time.Time))
		case TypeTimestamp:
			r.SetTimestamp(i, v.(time.Time))
		case TypeLocalTimestamp:
			r.SetLocalTimestamp(i, v.(time.Time))
		}
	}
	if err := r.Err(); err != nil {
		t.Fatalf("%s: setters: %v", tab.Name, err)
	}
	return r
}

// TestEncodeRowMatchesGoavro holds the positional encoder to the same reference as the
// map one: for every table and the same kinds of rows as TestEncoderMatchesGoavro, the
// bytes EncodeRow writes must equal goavro's encoding of the row, and Row.Map must give
// back a row that Encode writes identically.
func TestEncodeRowMatchesGoavro(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	rng := rand.New(rand.NewPCG(11, 26))
	for _, name := range OMOPTables() {
		tc := c.tables[name]
		tab := tc.table
		for label, m := range referenceRows(tab, rng) {
			want := goavroEncode(t, tc, label, m)
			r := rowFromMap(t, tab, m)
			got, err := c.EncodeRow(ctx, r)
			if err != nil {
				t.Fatalf("%s %s: %v", name, label, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s:\n got  %x\n want %x", name, label, got, want)
				continue
			}
			viaMap, err := c.Encode(ctx, name, r.Map())
			switch {
			case hasZeroTime(r.Map()):
				// 0001-01-01T00:00:00Z is a valid Row value but the map form's "unset".
				if !errors.Is(err, ErrInvalidRow) {
					t.Errorf("%s %s: Encode(Row.Map()) with a zero time: %v, want ErrInvalidRow", name, label, err)
				}
			case err != nil || !bytes.Equal(viaMap, want):
				t.Errorf("%s %s: Encode(Row.Map()) = %x, %v; want %x", name, label, viaMap, err, want)
			}
			// A reset row is reusable: filled again, it encodes the same.
			r.Reset()
			again, err := c.EncodeRow(ctx, rowInto(t, r, m))
			if err != nil || !bytes.Equal(again, want) {
				t.Errorf("%s %s: after Reset: %x, %v", name, label, again, err)
			}
		}
	}
}

func hasZeroTime(m map[string]any) bool {
	for _, v := range m {
		if tm, ok := v.(time.Time); ok && tm.IsZero() {
			return true
		}
	}
	return false
}

// rowInto fills r (already Reset) from m, as rowFromMap does.
func rowInto(t *testing.T, r *Row, m map[string]any) *Row {
	t.Helper()
	fresh := rowFromMap(t, r.Table(), m)
	copy(r.vals, fresh.vals)
	return r
}

func TestEncodeRowRejects(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	person, err := OMOPTable("person")
	if err != nil {
		t.Fatal(err)
	}
	col := func(name string) int {
		i, ok := person.ColumnIndex(name)
		if !ok {
			t.Fatalf("person has no %s", name)
		}
		return i
	}
	full := func() *Row { return rowFromMap(t, person, fullRow(person)) }
	cases := map[string]struct {
		row  func() *Row
		want string
	}{
		"wrong type": {func() *Row {
			r := full()
			r.SetString(col("year_of_birth"), "1970")
			return r
		}, "column year_of_birth: int column given string"},
		"zero date": {func() *Row {
			r := full()
			r.SetLocalTimestamp(col("birth_datetime"), time.Time{})
			return r
		}, "column birth_datetime: zero time.Time"},
		"missing required": {func() *Row {
			r := full()
			r.vals[col("gender_concept_id")] = rowValue{}
			return r
		}, "required column gender_concept_id is missing"},
		"too long": {func() *Row {
			r := full()
			r.SetString(col("gender_source_value"), strings.Repeat("é", 51))
			return r
		}, "column gender_source_value: 51 characters, more than its varchar(50)"},
		"other table": {func() *Row {
			other, err := parseTable([]byte(person.Schema))
			if err != nil {
				t.Fatal(err)
			}
			return rowFromMap(t, other, fullRow(other))
		}, "row of another person table"},
	}
	for label, tc := range cases {
		_, err := c.EncodeRow(ctx, tc.row())
		if !errors.Is(err, ErrInvalidRow) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrInvalidRow containing %q", label, err, tc.want)
		}
	}
}

func TestRowTruncateStrings(t *testing.T) {
	person, err := OMOPTable("person")
	if err != nil {
		t.Fatal(err)
	}
	r := rowFromMap(t, person, fullRow(person))
	i, _ := person.ColumnIndex("gender_source_value")
	r.SetString(i, strings.Repeat("é", 60))
	cut := r.TruncateStrings()
	if len(cut) != 1 || cut[0] != "gender_source_value" {
		t.Fatalf("cut %v, want [gender_source_value]", cut)
	}
	if got := r.Map()["gender_source_value"]; got != strings.Repeat("é", 50) {
		t.Errorf("truncated to %q", got)
	}
	if cut := r.TruncateStrings(); cut != nil {
		t.Errorf("second pass cut %v", cut)
	}
}
