package omop

import (
	"strings"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

// US Core extension URLs read by the Patient mapping.
const (
	extRace      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	extEthnicity = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
)

func (m *mapper) patient() error {
	birth, err := m.time("birthDate", "birthDate")
	if err != nil {
		return err
	}
	if !birth.valid() {
		// The CDM requires year_of_birth and tells ETLs to drop persons without one.
		return stage.Reject(schemas.ClassMissingRequired, "Patient.birthDate", "no birthDate: person.year_of_birth is required")
	}
	personID := m.rowID(0)
	gender := str(m.res, "gender")
	c := &m.p.cols.person
	row := m.newRow(m.p.t.person)
	row.SetLong(c.PersonID, personID)
	row.SetInt(c.GenderConceptID, vocab.GenderConcepts[gender])
	row.SetInt(c.YearOfBirth, int32(birth.t.Year()))
	row.SetInt(c.RaceConceptID, 0)
	row.SetInt(c.EthnicityConceptID, 0)
	setOptID(row, c.ProviderID, m.providerRef(first(m.res, "generalPractitioner")))
	setOptID(row, c.CareSiteID, m.ref(m.res.Get("managingOrganization"), "Organization"))
	row.SetString(c.PersonSourceValue, str(m.res, "id"))
	setOptString(row, c.GenderSourceValue, gender)
	if birth.precision >= 2 {
		row.SetInt(c.MonthOfBirth, int32(birth.t.Month()))
	}
	if birth.precision >= 3 {
		row.SetInt(c.DayOfBirth, int32(birth.t.Day()))
		// The CDM asks for birth_datetime whenever the date is known, midnight when the
		// time is not.
		row.SetLocalTimestamp(c.BirthDatetime, birth.t)
	}
	for _, ext := range m.res.Elems("extension") {
		switch str(ext, "url") {
		case extRace:
			if code := ombCategory(ext); code != "" {
				row.SetInt(c.RaceConceptID, vocab.RaceConcepts[code])
				row.SetString(c.RaceSourceValue, code)
			}
		case extEthnicity:
			if code := ombCategory(ext); code != "" {
				row.SetInt(c.EthnicityConceptID, vocab.EthnicityConcepts[code])
				row.SetString(c.EthnicitySourceValue, code)
			}
		}
	}
	if addr := homeAddress(m.res); addr != nil {
		locID := m.suffixID("#address")
		row.SetLong(c.LocationID, locID)
		m.add(m.p.t.location, 0, m.addressRow(addr, locID))
	}
	m.add(m.p.t.person, 0, row)

	deceased, err := m.time("deceasedDateTime", "deceasedDateTime")
	if err != nil {
		return err
	}
	switch {
	case deceased.valid():
		d := &m.p.cols.death
		death := m.newRow(m.p.t.death)
		death.SetLong(d.PersonID, personID)
		setDate(death, d.DeathDate, deceased)
		setDatetime(death, d.DeathDatetime, deceased)
		death.SetInt(d.DeathTypeConceptID, vocab.TypeEHR)
		m.add(m.p.t.death, 0, death)
	case m.res.Bool("deceasedBoolean"):
		// death_date is required and a boolean gives none: the death is known but cannot
		// be a death row. Counted, not dropped silently.
		m.skip("deceased-without-date")
	}
	return nil
}

// ombCategory returns the first ombCategory code of a US Core race/ethnicity extension.
func ombCategory(ext *jsontree.Value) string {
	for _, sub := range ext.Elems("extension") {
		if str(sub, "url") == "ombCategory" {
			return str(sub, "valueCoding", "code")
		}
	}
	return ""
}

// homeAddress picks the person's current home address: use=home without an ended
// period, else the first address.
func homeAddress(res *jsontree.Value) *jsontree.Value {
	for _, a := range res.Elems("address") {
		if use := str(a, "use"); (use == "home" || use == "") && !a.Exists("period", "end") {
			return a
		}
	}
	return first(res, "address")
}

// zipSeparators are dropped from postal codes.
var zipSeparators = strings.NewReplacer("-", "", " ", "")

// addressRow builds a location row from a FHIR Address.
func (m *mapper) addressRow(a *jsontree.Value, id int64) *schemas.Row {
	c := &m.p.cols.location
	row := m.newRow(m.p.t.location)
	row.SetLong(c.LocationID, id)
	if l := first(a, "line"); l != nil {
		setOptString(row, c.Address1, l.String())
	}
	if l := a.Elem(1, "line"); l != nil {
		setOptString(row, c.Address2, l.String())
	}
	setOptString(row, c.City, str(a, "city"))
	setOptString(row, c.State, stateCode(str(a, "state")))
	setOptString(row, c.Zip, zipSeparators.Replace(str(a, "postalCode")))
	setOptString(row, c.County, str(a, "district"))
	setOptString(row, c.CountrySourceValue, str(a, "country"))
	return row
}

func (m *mapper) encounter() error {
	status := str(m.res, "status")
	switch status {
	case "planned", "cancelled", "entered-in-error":
		m.skip("status-" + status)
		return nil
	}
	d, err := m.subjectAndDates(&encounterDates)
	if err != nil {
		return err
	}
	person, start, end := d.person, d.start, d.end
	if !end.valid() {
		// visit_end_date is required; an open encounter ends, for now, where it starts.
		end = start
	}
	class := str(m.res, "class", "code")
	visitConcept := vocab.VisitConcepts[class]
	if visitConcept == 0 {
		m.counts.unmapped = append(m.counts.unmapped, [2]string{"ActCode", "visit_occurrence"})
	}
	var provider int64
	for _, p := range m.res.Elems("participant") {
		if provider = m.providerRef(p.Get("individual")); provider != 0 {
			break
		}
	}
	c := &m.p.cols.visit
	row := m.newRow(m.p.t.visit)
	row.SetLong(c.VisitOccurrenceID, m.rowID(0))
	row.SetLong(c.PersonID, person)
	row.SetInt(c.VisitConceptID, visitConcept)
	setDate(row, c.VisitStartDate, start)
	setDatetime(row, c.VisitStartDatetime, start)
	setDate(row, c.VisitEndDate, end)
	setDatetime(row, c.VisitEndDatetime, end)
	row.SetInt(c.VisitTypeConceptID, vocab.TypeEHR)
	setOptID(row, c.ProviderID, provider)
	setOptID(row, c.CareSiteID, m.ref(m.res.Get("serviceProvider"), "Organization"))
	setOptString(row, c.VisitSourceValue, class)
	if h := m.res.Get("hospitalization"); h != nil {
		if src := m.codeable(h.Get("admitSource")); src.present {
			row.SetString(c.AdmittedFromSourceValue, src.source)
			row.SetInt(c.AdmittedFromConceptID, src.concept)
		}
		if dis := m.codeable(h.Get("dischargeDisposition")); dis.present {
			row.SetString(c.DischargedToSourceValue, dis.source)
			row.SetInt(c.DischargedToConceptID, dis.concept)
		}
	}
	m.add(m.p.t.visit, 0, row)
	return nil
}

// npi returns the resource's NPI, "" when it has none.
func (m *mapper) npi() string {
	for _, ident := range m.res.Elems("identifier") {
		if str(ident, "system") == NPISystem {
			if v := str(ident, "value"); v != "" {
				return v
			}
		}
	}
	return ""
}

func (m *mapper) practitioner() error {
	c := &m.p.cols.provider
	row := m.newRow(m.p.t.provider)
	// Like every row, the provider's id is its resource key's: literal references (the
	// usual form) resolve to it as they are; references by NPI are resolved to it through
	// the npi column by the gold layer (docs/omop-mapping.md, "Ids").
	row.SetLong(c.ProviderID, m.rowID(0))
	setOptString(row, c.ProviderName, humanName(first(m.res, "name")))
	setOptString(row, c.NPI, m.npi())
	row.SetString(c.ProviderSourceValue, str(m.res, "id"))
	if g := str(m.res, "gender"); g != "" {
		row.SetInt(c.GenderConceptID, vocab.GenderConcepts[g])
		row.SetString(c.GenderSourceValue, g)
	}
	birth, err := m.time("birthDate", "birthDate")
	if err != nil {
		return err
	}
	if birth.valid() {
		row.SetInt(c.YearOfBirth, int32(birth.t.Year()))
	}
	m.add(m.p.t.provider, 0, row)
	return nil
}

func humanName(n *jsontree.Value) string {
	if n == nil {
		return ""
	}
	if t := str(n, "text"); t != "" {
		return t
	}
	var parts []string
	for _, g := range n.Elems("given") {
		parts = append(parts, g.String())
	}
	if f := str(n, "family"); f != "" {
		parts = append(parts, f)
	}
	return strings.Join(parts, " ")
}

func (m *mapper) organization() error {
	c := &m.p.cols.careSite
	row := m.newRow(m.p.t.careSite)
	row.SetLong(c.CareSiteID, m.rowID(0))
	setOptString(row, c.CareSiteName, str(m.res, "name"))
	row.SetString(c.CareSiteSourceValue, str(m.res, "id"))
	if t := m.codeable(first(m.res, "type")); t.present {
		row.SetString(c.PlaceOfServiceSourceValue, t.source)
	}
	if addr := first(m.res, "address"); addr != nil {
		locID := m.suffixID("#address")
		row.SetLong(c.LocationID, locID)
		m.add(m.p.t.location, 0, m.addressRow(addr, locID))
	}
	m.add(m.p.t.careSite, 0, row)
	return nil
}

func (m *mapper) location() error {
	if str(m.res, "status") == "inactive" && !m.res.Exists("address") {
		m.skip("inactive-without-address")
		return nil
	}
	c := &m.p.cols.location
	var row *schemas.Row
	id := m.rowID(0)
	if addr := m.res.Get("address"); addr != nil {
		row = m.addressRow(addr, id)
	} else {
		row = m.newRow(m.p.t.location)
		row.SetLong(c.LocationID, id)
	}
	row.SetString(c.LocationSourceValue, str(m.res, "id"))
	if lat, ok := num(m.res, "position", "latitude"); ok {
		row.SetDouble(c.Latitude, lat)
	}
	if lon, ok := num(m.res, "position", "longitude"); ok {
		row.SetDouble(c.Longitude, lon)
	}
	m.add(m.p.t.location, 0, row)
	return nil
}

// stateCode returns the two-letter USPS code of a US state given by code or by name; ""
// when it is neither (location.state is varchar(2), so a name cannot be kept there).
func stateCode(s string) string {
	if len(s) == 2 {
		return strings.ToUpper(s)
	}
	return usStates[strings.ToLower(s)]
}

var usStates = map[string]string{
	"alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
	"colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
	"florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
	"indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
	"maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
	"minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT",
	"nebraska": "NE", "nevada": "NV", "new hampshire": "NH", "new jersey": "NJ",
	"new mexico": "NM", "new york": "NY", "north carolina": "NC", "north dakota": "ND",
	"ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
	"rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN",
	"texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA",
	"west virginia": "WV", "wisconsin": "WI", "wyoming": "WY", "puerto rico": "PR",
}
