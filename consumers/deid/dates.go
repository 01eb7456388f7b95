package deid

import (
	"fmt"
	"time"
)

// fhirDate is a FHIR date, dateTime or instant split into its parts: year, month and
// day (0 when absent), and the rest after the day ("T10:20:30.5+02:00").
type fhirDate struct {
	year, month, day int
	rest             string
}

// datePrefix parses the date part of s (YYYY, YYYY-MM, YYYY-MM-DD, then an optional
// time), reporting false when s is not one.
func datePrefix(s string) (fhirDate, bool) {
	var d fhirDate
	num := func(from, n int) (int, bool) {
		if len(s) < from+n {
			return 0, false
		}
		v := 0
		for _, c := range []byte(s[from : from+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	var ok bool
	if d.year, ok = num(0, 4); !ok {
		return d, false
	}
	if len(s) == 4 {
		return d, true
	}
	if s[4] != '-' {
		return d, false
	}
	if d.month, ok = num(5, 2); !ok || d.month < 1 || d.month > 12 {
		return d, false
	}
	if len(s) == 7 {
		return d, true
	}
	if s[7] != '-' {
		return d, false
	}
	if d.day, ok = num(8, 2); !ok || d.day < 1 || d.day > daysIn(d.year, d.month) {
		return d, false
	}
	d.rest = s[10:]
	if d.rest != "" && d.rest[0] != 'T' {
		return d, false
	}
	return d, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// ageThreshold is HIPAA Safe Harbor's: ages over 89, and dates indicating them, are
// identifiers.
const ageThreshold = 89

// overThreshold reports whether d is more than 89 years before now: the anonymizer's
// test for a date "indicative of age over 89" (a missing month or day counts as the
// first).
func (d fhirDate) overThreshold(now time.Time) bool {
	month, day := max(d.month, 1), max(d.day, 1)
	age := now.Year() - d.year
	if int(now.Month()) < month || int(now.Month()) == month && now.Day() < day {
		age--
	}
	return age > ageThreshold
}

// shifted returns d moved by days, with the digits of its time of day set to zero and
// its time zone kept (the anonymizer's dateShift: the time of day is redacted).
func (d fhirDate) shifted(days int) string {
	t := time.Date(d.year, time.Month(d.month), d.day, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
	b := t.AppendFormat(make([]byte, 0, 10+len(d.rest)), "2006-01-02")
	if d.rest == "" {
		return string(b)
	}
	// rest is "T" hh:mm:ss[.fff] [zone]: zero the digits up to the zone.
	b = append(b, 'T')
	i := 1
	for ; i < len(d.rest); i++ {
		c := d.rest[i]
		if c == 'Z' || c == '+' || c == '-' {
			break
		}
		if c >= '0' && c <= '9' {
			c = '0'
		}
		b = append(b, c)
	}
	return string(append(b, d.rest[i:]...))
}

// yearOnly returns the year of d as a FHIR date.
func (d fhirDate) yearOnly() string { return fmt.Sprintf("%04d", d.year) }
