package omop

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fastjson"
)

// str returns the string at keys, copied out of the parser's buffer ("" when absent or
// not a string).
func str(v *fastjson.Value, keys ...string) string {
	return string(v.GetStringBytes(keys...))
}

// first returns the first element of the array at keys, or nil.
func first(v *fastjson.Value, keys ...string) *fastjson.Value {
	a := v.GetArray(keys...)
	if len(a) == 0 {
		return nil
	}
	return a[0]
}

// num returns the number at keys. FHIR decimals are JSON numbers; a string is not one.
func num(v *fastjson.Value, keys ...string) (float64, bool) {
	x := v.Get(keys...)
	if x == nil || x.Type() != fastjson.TypeNumber {
		return 0, false
	}
	f, err := x.Float64()
	return f, err == nil
}

// fhirTime is a parsed FHIR date, dateTime or instant. hasTime is false for dates
// (YYYY, YYYY-MM, YYYY-MM-DD), which fill only the *_date columns; precision says how
// much of a date was given.
type fhirTime struct {
	t         time.Time
	hasTime   bool
	precision int // 1 year, 2 month, 3 day, 4 time
}

func (f fhirTime) valid() bool { return !f.t.IsZero() }

// date is the *_date column value (the calendar day as recorded, in its own offset).
func (f fhirTime) date() any {
	if !f.valid() {
		return nil
	}
	return f.t
}

// datetime is the *_datetime column value: the instant, or nil for a date without time.
func (f fhirTime) datetime() any {
	if !f.valid() || !f.hasTime {
		return nil
	}
	return f.t
}

var errBadDate = errors.New("not a FHIR date, dateTime or instant")

// parseFHIRTime parses the FHIR R4 date/dateTime/instant forms: YYYY, YYYY-MM,
// YYYY-MM-DD, and YYYY-MM-DDThh:mm:ss(.s+)?(Z|±hh:mm). A partial date stands for its
// first day, as OHDSI's conventions ask.
func parseFHIRTime(s string) (fhirTime, error) {
	switch len(s) {
	case 4:
		y, err := strconv.Atoi(s)
		if err != nil || y < 1 {
			return fhirTime{}, errBadDate
		}
		return fhirTime{t: time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC), precision: 1}, nil
	case 7:
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return fhirTime{}, errBadDate
		}
		return fhirTime{t: t, precision: 2}, nil
	case 10:
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return fhirTime{}, errBadDate
		}
		return fhirTime{t: t, precision: 3}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 1 {
		return fhirTime{}, errBadDate
	}
	return fhirTime{t: t, hasTime: true, precision: 4}, nil
}

// timeAt parses the date at keys; an absent value gives the zero fhirTime and no error.
func timeAt(v *fastjson.Value, keys ...string) (fhirTime, error) {
	b := v.GetStringBytes(keys...)
	if b == nil {
		return fhirTime{}, nil
	}
	return parseFHIRTime(string(b))
}
