package omop

import (
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

func itoa(n int) string { return strconv.Itoa(n) }

// coded is a CodeableConcept resolved against the vocabulary.
type coded struct {
	concept       int32  // standard concept id, 0 when unmapped
	sourceConcept int32  // the code's own concept id, 0 when unknown
	valueConcept  int32  // 'Maps to value' target
	domain        string // the standard concept's domain, "" when unmapped
	source        string // the code as given (*_source_value)
	vocabulary    string // OMOP vocabulary id, or the system URI, for the unmapped metric
	present       bool   // a code (or text) was given
}

// lookup resolves (system, code) in the loaded vocabulary, then the built-in one.
func (p *Processor) lookup(system, code string) (vocab.Match, string, bool) {
	vid, known := vocab.SystemVocabulary(system)
	if !known {
		vid = system // SOURCE_TO_CONCEPT_MAP rows may name the system URI itself
	}
	var (
		m     vocab.Match
		found bool
	)
	if p.vocab != nil {
		m, found = p.vocab.Lookup(vid, code)
	}
	if !found || m.Standard.ID == 0 {
		// Not in the release, or there without a standard concept: the built-in table
		// may still map it.
		if b, ok := p.builtin.Lookup(vid, code); ok && (b.Standard.ID != 0 || !found) {
			return b, vid, true
		}
	}
	return m, vid, found
}

// codeable resolves a CodeableConcept: the first coding with a standard concept wins;
// failing that, the first coding with a code is kept as the source value. Text alone is
// kept as the source value with concept 0.
func (m *mapper) codeable(cc *fastjson.Value) coded {
	if cc == nil {
		return coded{}
	}
	var fallback coded
	for _, c := range cc.GetArray("coding") {
		code := str(c, "code")
		if code == "" {
			continue
		}
		system := str(c, "system")
		match, vid, found := m.p.lookup(system, code)
		r := coded{source: code, vocabulary: vid, present: true}
		if vid == "" {
			r.vocabulary = "none"
		}
		if found {
			r.sourceConcept = match.Source.ID
			r.concept = match.Standard.ID
			r.domain = match.Standard.DomainID
			r.valueConcept = match.Value.ID
		}
		if r.concept != 0 {
			return r
		}
		if !fallback.present {
			fallback = r
		}
	}
	if fallback.present {
		return fallback
	}
	if text := str(cc, "text"); text != "" {
		return coded{source: text, vocabulary: "text", present: true}
	}
	return coded{}
}

// noteUnmapped counts a code written to table with concept_id 0.
func (m *mapper) noteUnmapped(c coded, table string) {
	if c.concept != 0 {
		return
	}
	v := c.vocabulary
	if !c.present {
		v = "none"
	}
	m.counts.unmapped = append(m.counts.unmapped, [2]string{v, table})
}

// domainTables routes a standard concept by its domain, as OHDSI requires: the table is
// decided by what the concept is, not by the FHIR resource it came in.
var domainTables = map[string]string{
	"Condition":   "condition_occurrence",
	"Measurement": "measurement",
	"Observation": "observation",
	"Procedure":   "procedure_occurrence",
	"Drug":        "drug_exposure",
	"Device":      "device_exposure",
}

// route returns the table for a code: its domain's table when the vocabulary knows it,
// else the resource type's default table.
func route(c coded, def string) string {
	if t, ok := domainTables[c.domain]; ok {
		return t
	}
	return def
}

// event is what every clinical resource maps to before it is written to a table; one
// struct lets a resource land in whichever table its concept's domain names.
type event struct {
	component   int
	code        coded
	person      int64
	visit       int64 // 0 = none
	provider    int64 // 0 = none
	start, end  fhirTime
	typeConcept int32

	// values (measurement, observation)
	hasNum       bool
	num          float64
	operator     int32
	value        coded // valueCodeableConcept
	valueString  string
	unit         coded
	hasUnit      bool
	hasLow       bool
	low          float64
	hasHigh      bool
	high         float64
	qualifier    coded
	statusSource string // condition_status_source_value
	stopReason   string

	// drug_exposure
	quantity    *float64
	daysSupply  *int32
	refills     *int32
	sig         string
	route       coded
	lot         string
	verbatimEnd fhirTime

	// device_exposure
	udi          string
	productionID string
	sourceValue  string // overrides code.source when the code is not a code (references)
	// codeIsValue: the code was moved to the value (allergy substances), so the concept
	// 0 left behind is not an unmapped code.
	codeIsValue bool
}

func optID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func optConcept(c coded) any {
	if !c.present {
		return nil
	}
	return c.concept
}

func optInt32(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}

func optFloat(ok bool, f float64) any {
	if !ok {
		return nil
	}
	return f
}

func optSourceConcept(c coded) any {
	if !c.present {
		return nil
	}
	return c.sourceConcept
}

// emit writes ev to table, counting its unmapped code.
func (m *mapper) emit(table string, ev *event) {
	id := m.rowID(ev.component)
	src := ev.code.source
	if ev.sourceValue != "" {
		src = ev.sourceValue
	}
	if ev.codeIsValue {
		m.noteUnmapped(ev.value, table)
	} else {
		m.noteUnmapped(ev.code, table)
	}
	var row map[string]any
	switch table {
	case "condition_occurrence":
		row = m.newRow(table)
		row["condition_occurrence_id"] = id
		row["person_id"] = ev.person
		row["condition_concept_id"] = ev.code.concept
		row["condition_start_date"] = ev.start.date()
		row["condition_start_datetime"] = ev.start.datetime()
		row["condition_end_date"] = ev.end.date()
		row["condition_end_datetime"] = ev.end.datetime()
		row["condition_type_concept_id"] = ev.typeConcept
		row["stop_reason"] = optString(ev.stopReason)
		row["provider_id"] = optID(ev.provider)
		row["visit_occurrence_id"] = optID(ev.visit)
		row["condition_source_value"] = optString(src)
		row["condition_source_concept_id"] = optSourceConcept(ev.code)
		row["condition_status_source_value"] = optString(ev.statusSource)
	case "measurement":
		row = m.newRow(table)
		row["measurement_id"] = id
		row["person_id"] = ev.person
		row["measurement_concept_id"] = ev.code.concept
		row["measurement_date"] = ev.start.date()
		row["measurement_datetime"] = ev.start.datetime()
		row["measurement_type_concept_id"] = ev.typeConcept
		row["value_as_number"] = optFloat(ev.hasNum, ev.num)
		row["value_as_concept_id"] = optConcept(ev.value)
		row["unit_concept_id"] = optConcept(ev.unit)
		row["range_low"] = optFloat(ev.hasLow, ev.low)
		row["range_high"] = optFloat(ev.hasHigh, ev.high)
		row["provider_id"] = optID(ev.provider)
		row["visit_occurrence_id"] = optID(ev.visit)
		row["measurement_source_value"] = optString(src)
		row["measurement_source_concept_id"] = optSourceConcept(ev.code)
		row["unit_source_value"] = optString(ev.unit.source)
		row["unit_source_concept_id"] = optSourceConcept(ev.unit)
		if ev.operator != 0 {
			row["operator_concept_id"] = ev.operator
		}
		switch {
		case ev.value.present:
			row["value_source_value"] = ev.value.source
		case ev.valueString != "":
			row["value_source_value"] = ev.valueString
		case ev.code.valueConcept != 0:
			row["value_as_concept_id"] = ev.code.valueConcept
		}
	case "observation":
		row = m.newRow(table)
		row["observation_id"] = id
		row["person_id"] = ev.person
		row["observation_concept_id"] = ev.code.concept
		row["observation_date"] = ev.start.date()
		row["observation_datetime"] = ev.start.datetime()
		row["observation_type_concept_id"] = ev.typeConcept
		row["value_as_number"] = optFloat(ev.hasNum, ev.num)
		row["value_as_string"] = optString(ev.valueString)
		row["value_as_concept_id"] = optConcept(ev.value)
		row["qualifier_concept_id"] = optConcept(ev.qualifier)
		row["unit_concept_id"] = optConcept(ev.unit)
		row["provider_id"] = optID(ev.provider)
		row["visit_occurrence_id"] = optID(ev.visit)
		row["observation_source_value"] = optString(src)
		row["observation_source_concept_id"] = optSourceConcept(ev.code)
		row["unit_source_value"] = optString(ev.unit.source)
		row["qualifier_source_value"] = optString(ev.qualifier.source)
		row["value_source_value"] = optString(ev.value.source)
		if !ev.value.present && ev.code.valueConcept != 0 {
			// A pre-coordinated code ("history of X"): the vocabulary's 'Maps to value'
			// supplies the answer.
			row["value_as_concept_id"] = ev.code.valueConcept
		}
	case "procedure_occurrence":
		row = m.newRow(table)
		row["procedure_occurrence_id"] = id
		row["person_id"] = ev.person
		row["procedure_concept_id"] = ev.code.concept
		row["procedure_date"] = ev.start.date()
		row["procedure_datetime"] = ev.start.datetime()
		row["procedure_end_date"] = ev.end.date()
		row["procedure_end_datetime"] = ev.end.datetime()
		row["procedure_type_concept_id"] = ev.typeConcept
		row["provider_id"] = optID(ev.provider)
		row["visit_occurrence_id"] = optID(ev.visit)
		row["procedure_source_value"] = optString(src)
		row["procedure_source_concept_id"] = optSourceConcept(ev.code)
	case "drug_exposure":
		end := ev.end
		if !end.valid() {
			// drug_exposure_end_date is required; OHDSI's convention without a known end or
			// days supply is the start date.
			end = ev.start
		}
		row = m.newRow(table)
		row["drug_exposure_id"] = id
		row["person_id"] = ev.person
		row["drug_concept_id"] = ev.code.concept
		row["drug_exposure_start_date"] = ev.start.date()
		row["drug_exposure_start_datetime"] = ev.start.datetime()
		row["drug_exposure_end_date"] = end.date()
		row["drug_exposure_end_datetime"] = end.datetime()
		row["verbatim_end_date"] = ev.verbatimEnd.date()
		row["drug_type_concept_id"] = ev.typeConcept
		row["stop_reason"] = optString(ev.stopReason)
		row["refills"] = optInt32(ev.refills)
		row["days_supply"] = optInt32(ev.daysSupply)
		row["sig"] = optString(ev.sig)
		row["route_concept_id"] = optConcept(ev.route)
		row["lot_number"] = optString(ev.lot)
		row["provider_id"] = optID(ev.provider)
		row["visit_occurrence_id"] = optID(ev.visit)
		row["drug_source_value"] = optString(src)
		row["drug_source_concept_id"] = optSourceConcept(ev.code)
		row["route_source_value"] = optString(ev.route.source)
		row["dose_unit_source_value"] = optString(ev.unit.source)
		if ev.quantity != nil {
			row["quantity"] = *ev.quantity
		}
	case "device_exposure":
		row = m.newRow(table)
		row["device_exposure_id"] = id
		row["person_id"] = ev.person
		row["device_concept_id"] = ev.code.concept
		row["device_exposure_start_date"] = ev.start.date()
		row["device_exposure_start_datetime"] = ev.start.datetime()
		row["device_exposure_end_date"] = ev.end.date()
		row["device_exposure_end_datetime"] = ev.end.datetime()
		row["device_type_concept_id"] = ev.typeConcept
		row["unique_device_id"] = optString(ev.udi)
		row["production_id"] = optString(ev.productionID)
		row["provider_id"] = optID(ev.provider)
		row["visit_occurrence_id"] = optID(ev.visit)
		row["device_source_value"] = optString(src)
		row["device_source_concept_id"] = optSourceConcept(ev.code)
	}
	if ev.hasUnit {
		m.noteUnmappedUnit(ev.unit, table)
	}
	m.add(table, ev.component, row)
}

func (m *mapper) noteUnmappedUnit(u coded, table string) {
	if u.present && u.concept == 0 {
		m.counts.unmapped = append(m.counts.unmapped, [2]string{u.vocabulary, table})
	}
}

// reference resolution -----------------------------------------------------------------

// ref resolves the reference at v.reference to the OMOP id of a resource of type want.
// An absent reference gives 0; a reference to another type gives 0 too (a Group subject,
// a PractitionerRole performer), since no OMOP row of the wanted kind exists for it.
func (m *mapper) ref(v *fastjson.Value, want string) int64 {
	if v == nil {
		return 0
	}
	key, typ, ok := refKey(str(v, "reference"), want, m.p.idSystems)
	if !ok {
		if ident := v.Get("identifier"); ident != nil {
			// A logical reference by identifier only: resolve it as a conditional one.
			if sys, val := str(ident, "system"), str(ident, "value"); sys != "" && val != "" && want != "" {
				if m.p.idSystems[sys] {
					return ID(want + "/" + val)
				}
				return ID(identifierKey(want, sys, val))
			}
		}
		return 0
	}
	if typ != want {
		return 0
	}
	return ID(key)
}

// person resolves the subject (or patient) reference every clinical row needs; without
// it the resource cannot map.
func (m *mapper) person(element string) (int64, error) {
	v := m.res.Get(element)
	if v == nil {
		return 0, stage.Reject("missing-required", m.rtype+"."+element, "no %s reference: OMOP rows need a person", element)
	}
	key, typ, ok := refKey(str(v, "reference"), "Patient", m.p.idSystems)
	if !ok {
		return 0, stage.Reject("unmapped-reference", m.rtype+"."+element+".reference", "the %s reference is not a resolvable Patient reference", element)
	}
	if typ != "Patient" {
		return 0, stage.Reject("unmapped-reference", m.rtype+"."+element+".reference", "%s refers to a %s, not a Patient", element, typ)
	}
	return ID(key), nil
}

// providerRef resolves a reference that may name a Practitioner (a provider) or
// something else (an Organization, a PractitionerRole, a Patient), giving 0 for the rest.
func (m *mapper) providerRef(v *fastjson.Value) int64 { return m.ref(v, "Practitioner") }

// time parses the date at keys, rejecting a malformed one with its element path.
func (m *mapper) time(path string, keys ...string) (fhirTime, error) {
	t, err := timeAt(m.res, keys...)
	if err != nil {
		return t, stage.Reject("bad-format", m.rtype+"."+path, "%v", err)
	}
	return t, nil
}

// firstTime returns the first present of several date elements (paths relative to the
// resource); a malformed one is rejected with its dot-separated path, which is built only
// then, as this runs for every date of every record.
func (m *mapper) firstTime(paths ...[]string) (fhirTime, error) {
	for _, keys := range paths {
		t, err := timeAt(m.res, keys...)
		if err != nil {
			return t, stage.Reject("bad-format", m.rtype+"."+strings.Join(keys, "."), "%v", err)
		}
		if t.valid() {
			return t, nil
		}
	}
	return fhirTime{}, nil
}

// statusCode is the first coding's code of a status CodeableConcept.
func statusCode(v *fastjson.Value, element string) string {
	c := first(v, element, "coding")
	if c == nil {
		return ""
	}
	return str(c, "code")
}
