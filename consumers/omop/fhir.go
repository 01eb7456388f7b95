package omop

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/fhirstream/fhirstream/internal/jsontree"
)

// str returns the string at keys ("" when absent or not a string). It is not a copy but
// a view of the record's value (or of the mapper's tree, for a value with escapes),
// valid until the mapper that parsed it is released (Processor.release, after its rows
// are encoded): copying every string the mapper reads was a twelfth of its time. A
// string that outlives the record (metric labels, tally keys, rejection paths) must be
// copied or be a constant; see internType and lookup.
func str(v *jsontree.Value, keys ...string) string { return v.String(keys...) }

// internType returns the resource type named by s as a constant for the types this
// stage knows (and the other common ones), else as a copy: the type outlives the
// record, as a metric label and in tallies and rejections.
func internType(s string) string {
	switch s {
	case "Patient":
		return "Patient"
	case "Encounter":
		return "Encounter"
	case "Condition":
		return "Condition"
	case "Observation":
		return "Observation"
	case "Procedure":
		return "Procedure"
	case "MedicationRequest":
		return "MedicationRequest"
	case "MedicationStatement":
		return "MedicationStatement"
	case "MedicationAdministration":
		return "MedicationAdministration"
	case "Immunization":
		return "Immunization"
	case "AllergyIntolerance":
		return "AllergyIntolerance"
	case "Device":
		return "Device"
	case "DeviceUseStatement":
		return "DeviceUseStatement"
	case "Practitioner":
		return "Practitioner"
	case "Organization":
		return "Organization"
	case "Location":
		return "Location"
	case "DiagnosticReport":
		return "DiagnosticReport"
	}
	return strings.Clone(s)
}

// first returns the first element of the array at keys, or nil.
func first(v *jsontree.Value, keys ...string) *jsontree.Value { return v.Elem(0, keys...) }

// num returns the number at keys. FHIR decimals are JSON numbers; a string is not one.
func num(v *jsontree.Value, keys ...string) (float64, bool) {
	f, err := v.Float64(keys...)
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
func timeAt(v *jsontree.Value, keys ...string) (fhirTime, error) {
	s, ok := v.LookupString(keys...)
	if !ok {
		return fhirTime{}, nil
	}
	return parseFHIRTime(s)
}
