package omop

import (
	"strings"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/vocab"
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
		return stage.Reject("missing-required", "Patient.birthDate", "no birthDate: person.year_of_birth is required")
	}
	personID := m.rowID(0)
	gender := str(m.res, "gender")
	row := m.newRow("person")
	row["person_id"] = personID
	row["gender_concept_id"] = vocab.GenderConcepts[gender]
	row["year_of_birth"] = int32(birth.t.Year())
	row["month_of_birth"] = nil
	row["day_of_birth"] = nil
	row["birth_datetime"] = nil
	row["race_concept_id"] = int32(0)
	row["ethnicity_concept_id"] = int32(0)
	row["provider_id"] = optID(m.providerRef(first(m.res, "generalPractitioner")))
	row["care_site_id"] = optID(m.ref(m.res.Get("managingOrganization"), "Organization"))
	row["person_source_value"] = str(m.res, "id")
	row["gender_source_value"] = optString(gender)
	if birth.precision >= 2 {
		row["month_of_birth"] = int32(birth.t.Month())
	}
	if birth.precision >= 3 {
		row["day_of_birth"] = int32(birth.t.Day())
		// The CDM asks for birth_datetime whenever the date is known, midnight when the
		// time is not.
		row["birth_datetime"] = birth.t
	}
	for _, ext := range m.res.GetArray("extension") {
		switch str(ext, "url") {
		case extRace:
			if code := ombCategory(ext); code != "" {
				row["race_concept_id"] = vocab.RaceConcepts[code]
				row["race_source_value"] = code
			}
		case extEthnicity:
			if code := ombCategory(ext); code != "" {
				row["ethnicity_concept_id"] = vocab.EthnicityConcepts[code]
				row["ethnicity_source_value"] = code
			}
		}
	}
	if addr := homeAddress(m.res); addr != nil {
		locID := m.checkedID(m.key + "#address")
		row["location_id"] = locID
		m.add("location", 0, addressRow(addr, locID))
	}
	m.add("person", 0, row)

	deceased, err := m.time("deceasedDateTime", "deceasedDateTime")
	if err != nil {
		return err
	}
	switch {
	case deceased.valid():
		m.add("death", 0, map[string]any{
			"person_id":             personID,
			"death_date":            deceased.date(),
			"death_datetime":        deceased.datetime(),
			"death_type_concept_id": vocab.TypeEHR,
		})
	case m.res.GetBool("deceasedBoolean"):
		// death_date is required and a boolean gives none: the death is known but cannot
		// be a death row. Counted, not dropped silently.
		m.skip("deceased-without-date")
	}
	return nil
}

// ombCategory returns the first ombCategory code of a US Core race/ethnicity extension.
func ombCategory(ext *fastjson.Value) string {
	for _, sub := range ext.GetArray("extension") {
		if str(sub, "url") == "ombCategory" {
			return str(sub, "valueCoding", "code")
		}
	}
	return ""
}

// homeAddress picks the person's current home address: use=home without an ended
// period, else the first address.
func homeAddress(res *fastjson.Value) *fastjson.Value {
	addrs := res.GetArray("address")
	for _, a := range addrs {
		if use := str(a, "use"); (use == "home" || use == "") && !a.Exists("period", "end") {
			return a
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return nil
}

// addressRow builds a location row from a FHIR Address.
func addressRow(a *fastjson.Value, id int64) map[string]any {
	lines := a.GetArray("line")
	row := map[string]any{"location_id": id}
	if len(lines) > 0 {
		row["address_1"] = optString(string(lines[0].GetStringBytes()))
	}
	if len(lines) > 1 {
		row["address_2"] = optString(string(lines[1].GetStringBytes()))
	}
	row["city"] = optString(str(a, "city"))
	if st := stateCode(str(a, "state")); st != "" {
		row["state"] = st
	}
	if zip := strings.NewReplacer("-", "", " ", "").Replace(str(a, "postalCode")); zip != "" {
		row["zip"] = zip
	}
	row["county"] = optString(str(a, "district"))
	row["country_source_value"] = optString(str(a, "country"))
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
	for _, p := range m.res.GetArray("participant") {
		if provider = m.providerRef(p.Get("individual")); provider != 0 {
			break
		}
	}
	row := m.newRow("visit_occurrence")
	row["visit_occurrence_id"] = m.rowID(0)
	row["person_id"] = person
	row["visit_concept_id"] = visitConcept
	row["visit_start_date"] = start.date()
	row["visit_start_datetime"] = start.datetime()
	row["visit_end_date"] = end.date()
	row["visit_end_datetime"] = end.datetime()
	row["visit_type_concept_id"] = vocab.TypeEHR
	row["provider_id"] = optID(provider)
	row["care_site_id"] = optID(m.ref(m.res.Get("serviceProvider"), "Organization"))
	row["visit_source_value"] = optString(class)
	if h := m.res.Get("hospitalization"); h != nil {
		if src := m.codeable(h.Get("admitSource")); src.present {
			row["admitted_from_source_value"] = src.source
			row["admitted_from_concept_id"] = src.concept
		}
		if dis := m.codeable(h.Get("dischargeDisposition")); dis.present {
			row["discharged_to_source_value"] = dis.source
			row["discharged_to_concept_id"] = dis.concept
		}
	}
	m.add("visit_occurrence", 0, row)
	return nil
}

// practitionerKey is the key a Practitioner's or Organization's OMOP id is hashed from:
// its NPI when it has one (the identifier other systems reference it by, and stable
// across exports), else "<Type>/<id>". See docs/omop-mapping.md, "Ids".
func (m *mapper) npiKey() (key, npi string) {
	for _, ident := range m.res.GetArray("identifier") {
		if str(ident, "system") == NPISystem {
			if v := str(ident, "value"); v != "" {
				return identifierKey(m.rtype, NPISystem, v), v
			}
		}
	}
	return m.key, ""
}

func (m *mapper) practitioner() error {
	key, npi := m.npiKey()
	row := m.newRow("provider")
	row["provider_id"] = m.checkedID(key)
	row["provider_name"] = optString(humanName(first(m.res, "name")))
	row["npi"] = optString(npi)
	row["provider_source_value"] = str(m.res, "id")
	if g := str(m.res, "gender"); g != "" {
		row["gender_concept_id"] = vocab.GenderConcepts[g]
		row["gender_source_value"] = g
	}
	birth, err := m.time("birthDate", "birthDate")
	if err != nil {
		return err
	}
	if birth.valid() {
		row["year_of_birth"] = int32(birth.t.Year())
	}
	m.add("provider", 0, row)
	return nil
}

func humanName(n *fastjson.Value) string {
	if n == nil {
		return ""
	}
	if t := str(n, "text"); t != "" {
		return t
	}
	var parts []string
	for _, g := range n.GetArray("given") {
		parts = append(parts, string(g.GetStringBytes()))
	}
	if f := str(n, "family"); f != "" {
		parts = append(parts, f)
	}
	return strings.Join(parts, " ")
}

func (m *mapper) organization() error {
	key, _ := m.npiKey()
	row := m.newRow("care_site")
	row["care_site_id"] = m.checkedID(key)
	row["care_site_name"] = optString(str(m.res, "name"))
	row["care_site_source_value"] = str(m.res, "id")
	if t := m.codeable(first(m.res, "type")); t.present {
		row["place_of_service_source_value"] = t.source
	}
	if addr := first(m.res, "address"); addr != nil {
		locID := m.checkedID(m.key + "#address")
		row["location_id"] = locID
		m.add("location", 0, addressRow(addr, locID))
	}
	m.add("care_site", 0, row)
	return nil
}

func (m *mapper) location() error {
	if str(m.res, "status") == "inactive" && !m.res.Exists("address") {
		m.skip("inactive-without-address")
		return nil
	}
	var row map[string]any
	id := m.rowID(0)
	if addr := m.res.Get("address"); addr != nil {
		row = addressRow(addr, id)
	} else {
		row = map[string]any{"location_id": id}
	}
	row["location_source_value"] = str(m.res, "id")
	if lat, ok := num(m.res, "position", "latitude"); ok {
		row["latitude"] = lat
	}
	if lon, ok := num(m.res, "position", "longitude"); ok {
		row["longitude"] = lon
	}
	m.add("location", 0, row)
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
