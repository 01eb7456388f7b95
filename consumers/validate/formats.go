package validate

import (
	"strings"
	"time"

	"github.com/fhirstream/fhirstream/schemas"
)

// Primitive formats of FHIR R4 (http://hl7.org/fhir/R4/datatypes.html), checked by hand
// rather than with the spec's regular expressions: these run on every date of every
// resource, and a small scanner is an order of magnitude faster than regexp.

// checkDate reports why s is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD), or "".
func checkDate(s string) string {
	if !datePart(s) {
		return "not a date (YYYY, YYYY-MM or YYYY-MM-DD)"
	}
	return ""
}

// checkDateTime reports why s is not a FHIR dateTime, or "". A dateTime is a date, or a
// full date with a time; when a time is given, a timezone (Z or ±hh:mm) is required.
func checkDateTime(s string) string {
	d, t, hasTime := strings.Cut(s, "T")
	if !datePart(d) {
		return "not a dateTime: bad date part"
	}
	if !hasTime {
		return ""
	}
	if len(d) != 10 {
		return "not a dateTime: a time needs a full date"
	}
	return checkTime(s, t)
}

// checkInstant reports why s is not a FHIR instant, or "": a full date, a time with
// seconds, and a timezone, always.
func checkInstant(s string) string {
	d, t, hasTime := strings.Cut(s, "T")
	if len(d) != 10 || !datePart(d) || !hasTime {
		return "not an instant: needs YYYY-MM-DDThh:mm:ss with a timezone"
	}
	return checkTime(s, t)
}

// checkTime checks "hh:mm:ss[.fff](Z|±hh:mm)" and that the whole value is a real
// point in time (no 25:00, no February 30th).
func checkTime(whole, t string) string {
	if len(t) < 8 || !digits(t[0:2]) || t[2] != ':' || !digits(t[3:5]) || t[5] != ':' || !digits(t[6:8]) {
		return "bad time: want hh:mm:ss"
	}
	rest := t[8:]
	if strings.HasPrefix(rest, ".") {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 1 {
			return "bad time: empty fraction of a second"
		}
		rest = rest[i:]
	}
	switch {
	case rest == "":
		return "time without a timezone"
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && digits(rest[1:3]) && rest[3] == ':' && digits(rest[4:6]):
		if rest[1:3] > "14" || (rest[1:3] == "14" && rest[4:6] != "00") {
			return "bad timezone offset"
		}
	default:
		return "bad timezone: want Z or ±hh:mm"
	}
	if realTime(whole, t, rest) {
		return ""
	}
	// Out of range somewhere: let time.Parse, the reference, decide (and say no).
	// Leap seconds (:60) are allowed by FHIR but not by time.Parse; accept them here.
	check := whole
	if t[6:8] == "60" {
		check = strings.Replace(whole, ":60", ":59", 1)
	}
	if _, err := time.Parse(time.RFC3339Nano, check); err != nil {
		return "not a valid point in time"
	}
	return ""
}

// datePart checks YYYY, YYYY-MM or YYYY-MM-DD, with a real calendar day.
func datePart(s string) bool {
	switch len(s) {
	case 4:
		return digits(s) && s != "0000"
	case 7:
		return digits(s[:4]) && s[4] == '-' && digits(s[5:7]) && s[5:7] >= "01" && s[5:7] <= "12" && s[:4] != "0000"
	case 10:
		if !digits(s[:4]) || s[4] != '-' || !digits(s[5:7]) || s[7] != '-' || !digits(s[8:10]) || s[:4] == "0000" {
			return false
		}
		if realDay(s) {
			return true
		}
		_, err := time.Parse(time.DateOnly, s) // the reference, for what realDay rules out
		return err == nil
	}
	return false
}

// realDay reports whether the YYYY-MM-DD s (digits already checked) is a calendar day.
// It accepts only what time.Parse accepts, without its cost: dates are in every resource.
func realDay(s string) bool {
	year := num4(s[:4])
	month, day := num2(s[5:7]), num2(s[8:10])
	if month < 1 || month > 12 || day < 1 {
		return false
	}
	return day <= daysIn(month, year)
}

// realTime reports whether whole, a full date with the time t already checked as
// hh:mm:ss[.f+] followed by the zone rest (Z or ±hh:mm, at most 14:00), is a point in
// time time.Parse accepts: hours 0-23, minutes and seconds 0-59, zone minutes 0-59.
// When it says no, checkTime asks time.Parse (leap seconds, for one, are accepted).
func realTime(whole, t, rest string) bool {
	if !realDay(whole[:10]) || num2(t[0:2]) > 23 || num2(t[3:5]) > 59 || num2(t[6:8]) > 59 {
		return false
	}
	return rest == "Z" || num2(rest[4:6]) <= 59
}

func num2(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

func num4(s string) int { return num2(s[:2])*100 + num2(s[2:]) }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// hasSpace reports whether s has a tab, newline or carriage return, or a space when
// spaceToo: a plain loop, as these strings are short and strings.ContainsAny builds
// its byte set on every call.
func hasSpace(s string, spaceToo bool) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\t', '\n', '\r':
			return true
		case ' ':
			if spaceToo {
				return true
			}
		}
	}
	return false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// checkCode: a code has no leading or trailing whitespace and single inner spaces.
func checkCode(s string) string {
	if s == "" {
		return "empty code"
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") || hasSpace(s, false) {
		return "code with leading, trailing or repeated whitespace"
	}
	return ""
}

// checkURI: a uri is non-empty and has no whitespace.
func checkURI(s string) string {
	if s == "" {
		return "empty uri"
	}
	if hasSpace(s, true) {
		return "uri with whitespace"
	}
	return ""
}

// checkReference reports why a Reference.reference is malformed, or "". Accepted forms:
// "Type/id" (optionally "/_history/vid"), conditional "Type?query", contained "#id",
// and absolute URIs (http(s)://…/Type/id, urn:uuid:…, urn:oid:…).
func checkReference(s string) string {
	// One pass finds whitespace and the first '?' and '/': references are in every
	// resource, and a search per question was most of their cost.
	space, query, slash := false, -1, -1
	for i := 0; i < len(s); i++ {
		switch refByte[s[i]] {
		case refPlain:
		case refSpace:
			space = true
		case refQuery:
			if query < 0 {
				query = i
			}
		case refSlash:
			if slash < 0 {
				slash = i
			}
		}
	}
	switch {
	case s == "":
		return "empty reference"
	case space:
		return "reference with whitespace"
	case s[0] == '#':
		if !schemas.ValidResourceID(s[1:]) {
			return "contained reference must be #<id>"
		}
		return ""
	case strings.HasPrefix(s, "urn:uuid:"), strings.HasPrefix(s, "urn:oid:"):
		if len(s) <= len("urn:oid:") {
			return "empty urn reference"
		}
		return ""
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		if len(s) <= len("https://") || !strings.Contains(strings.SplitN(s, "://", 2)[1], "/") {
			return "absolute reference without a path"
		}
		return ""
	}
	if query >= 0 {
		if !schemas.ValidResourceType(s[:query]) {
			return "conditional reference must start with a resource type"
		}
		if name, _, ok := strings.Cut(s[query+1:], "="); !ok || name == "" {
			return "conditional reference needs a query name=value"
		}
		return ""
	}
	if slash < 0 {
		return "reference must be Type/id, Type?query, #id or an absolute URL"
	}
	// Type/id or Type/id/_history/vid, split without allocating.
	typ := s[:slash]
	id, rest, more := strings.Cut(s[slash+1:], "/")
	var version string
	if more {
		hist, v, ok := strings.Cut(rest, "/")
		if !ok || hist != "_history" || strings.Contains(v, "/") {
			return "reference must be Type/id, Type?query, #id or an absolute URL"
		}
		version = v
	}
	if !schemas.ValidResourceType(typ) {
		return "reference type is not a FHIR resource type name"
	}
	if !schemas.ValidResourceID(id) {
		return "reference id is not a FHIR id"
	}
	if more && !schemas.ValidResourceID(version) {
		return "reference version is not a FHIR id"
	}
	return ""
}

// Classes of reference bytes for checkReference's scan.
const (
	refPlain = iota
	refSpace
	refQuery
	refSlash
)

var refByte = func() (t [256]uint8) {
	t[' '], t['\t'], t['\n'], t['\r'] = refSpace, refSpace, refSpace, refSpace
	t['?'], t['/'] = refQuery, refSlash
	return t
}()
