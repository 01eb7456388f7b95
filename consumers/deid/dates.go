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
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		return 29
	}
	return monthDays[month]
}

var monthDays = [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// ageThreshold is HIPAA Safe Harbor's: ages over 89, and dates indicating them, are
// identifiers.
const ageThreshold = 89

// overThreshold reports whether d is more than 89 years before today: the
// anonymizer's test for a date "indicative of age over 89" (a missing month or day
// counts as the first).
func (d fhirDate) overThreshold(today fhirDate) bool {
	month, day := max(d.month, 1), max(d.day, 1)
	age := today.year - d.year
	if today.month < month || today.month == month && today.day < day {
		age--
	}
	return age > ageThreshold
}

// dateOf returns t's date.
func dateOf(t time.Time) fhirDate {
	y, m, dd := t.Date()
	return fhirDate{year: y, month: int(m), day: dd}
}

// shifted returns d moved by days, with the digits of its time of day set to zero and
// its time zone kept (the anonymizer's dateShift: the time of day is redacted). The
// arithmetic is on the proleptic Gregorian calendar, not time.Time: it runs for every
// date of every resource.
func (d fhirDate) shifted(days int) string { return string(d.appendShifted(nil, days)) }

// appendShifted appends d.shifted(days) to b.
func (d fhirDate) appendShifted(b []byte, days int) []byte {
	y, m, dd := d.plusDays(days)
	b = append(b, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+dd/10), byte('0'+dd%10))
	if d.rest == "" {
		return b
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
	return append(b, d.rest[i:]...)
}

// plusDays returns the date days after d (before, for a negative days), stepping over
// month ends: a shift is a few weeks, so this takes a step or two.
func (d fhirDate) plusDays(days int) (y, m, dd int) {
	if days > 366 || days < -366 {
		return civilFromDays(daysFromCivil(d.year, d.month, d.day) + days)
	}
	y, m, dd = d.year, d.month, d.day+days
	for dd < 1 {
		if m--; m < 1 {
			y, m = y-1, 12
		}
		dd += daysIn(y, m)
	}
	for n := daysIn(y, m); dd > n; n = daysIn(y, m) {
		dd -= n
		if m++; m > 12 {
			y, m = y+1, 1
		}
	}
	return y, m, dd
}

// daysFromCivil is the number of days from 1970-01-01 to y-m-d (Howard Hinnant's
// algorithm, chrono-Compatible Low-Level Date Algorithms).
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int) (y, m, d int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

// appendYear appends d's year to b, in at least four digits.
func (d fhirDate) appendYear(b []byte) []byte {
	if d.year < 0 || d.year > 9999 {
		return fmt.Appendf(b, "%04d", d.year)
	}
	y := d.year
	return append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10))
}
