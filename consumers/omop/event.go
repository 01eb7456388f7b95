package omop

import (
	"strconv"
	"strings"
	"unsafe"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
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
		// SOURCE_TO_CONCEPT_MAP rows may name the system URI itself. A copy: system is a
		// view of the parser's buffer, and the vocabulary id outlives the record as the
		// unmapped-code metric's label.
		vid = strings.Clone(system)
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
func (m *mapper) codeable(cc *jsontree.Value) coded {
	if cc == nil {
		return coded{}
	}
	var fallback coded
	for _, c := range cc.Elems("coding") {
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

// route returns the table for a code: its domain's table when the vocabulary knows it,
// else the resource type's default table. OHDSI requires routing by domain: the table is
// decided by what the concept is, not by the FHIR resource it came in.
func (m *mapper) route(c coded, def *tableInfo) *tableInfo {
	t := &m.p.t
	switch c.domain {
	case "Condition":
		return t.condition
	case "Measurement":
		return t.measurement
	case "Observation":
		return t.observation
	case "Procedure":
		return t.procedure
	case "Drug":
		return t.drug
	case "Device":
		return t.device
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

// emit writes ev to table, counting its unmapped code.
func (m *mapper) emit(table *tableInfo, ev *event) {
	id := m.rowID(ev.component)
	src := ev.code.source
	if ev.sourceValue != "" {
		src = ev.sourceValue
	}
	if ev.codeIsValue {
		m.noteUnmapped(ev.value, table.name)
	} else {
		m.noteUnmapped(ev.code, table.name)
	}
	row := m.newRow(table)
	t, cols := &m.p.t, &m.p.cols
	end := ev.end
	if table == t.drug && !end.valid() {
		// drug_exposure_end_date is required; OHDSI's convention without a known end or
		// days supply is the start date.
		end = ev.start
	}
	e := &table.event
	row.SetLong(e.ID, id)
	row.SetLong(e.PersonID, ev.person)
	row.SetInt(e.ConceptID, ev.code.concept)
	row.SetInt(e.TypeConceptID, ev.typeConcept)
	setDate(row, e.StartDate, ev.start)
	setDatetime(row, e.StartDatetime, ev.start)
	if e.EndDate >= 0 {
		setDate(row, e.EndDate, end)
		setDatetime(row, e.EndDatetime, end)
	}
	setOptID(row, e.ProviderID, ev.provider)
	setOptID(row, e.VisitOccurrenceID, ev.visit)
	setOptString(row, e.SourceValue, src)
	// 0 when the code is unknown or absent, as OHDSI's conventions ask: never null.
	row.SetInt(e.SourceConceptID, ev.code.sourceConcept)
	switch table {
	case t.condition:
		c := &cols.condition
		setOptString(row, c.StopReason, ev.stopReason)
		setOptString(row, c.ConditionStatusSourceValue, ev.statusSource)
	case t.measurement:
		c := &cols.measurement
		setOptFloat(row, c.ValueAsNumber, ev.hasNum, ev.num)
		setConcept(row, c.ValueAsConceptID, ev.value)
		setConcept(row, c.UnitConceptID, ev.unit)
		setOptFloat(row, c.RangeLow, ev.hasLow, ev.low)
		setOptFloat(row, c.RangeHigh, ev.hasHigh, ev.high)
		setOptString(row, c.UnitSourceValue, ev.unit.source)
		setSourceConcept(row, c.UnitSourceConceptID, ev.unit)
		if ev.operator != 0 {
			row.SetInt(c.OperatorConceptID, ev.operator)
		}
		switch {
		case ev.value.present:
			row.SetString(c.ValueSourceValue, ev.value.source)
		case ev.valueString != "":
			row.SetString(c.ValueSourceValue, ev.valueString)
		case ev.code.valueConcept != 0:
			row.SetInt(c.ValueAsConceptID, ev.code.valueConcept)
		}
	case t.observation:
		c := &cols.observation
		setOptFloat(row, c.ValueAsNumber, ev.hasNum, ev.num)
		setOptString(row, c.ValueAsString, ev.valueString)
		setConcept(row, c.ValueAsConceptID, ev.value)
		setConcept(row, c.QualifierConceptID, ev.qualifier)
		setConcept(row, c.UnitConceptID, ev.unit)
		setOptString(row, c.UnitSourceValue, ev.unit.source)
		setOptString(row, c.QualifierSourceValue, ev.qualifier.source)
		setOptString(row, c.ValueSourceValue, ev.value.source)
		if !ev.value.present && ev.code.valueConcept != 0 {
			// A pre-coordinated code ("history of X"): the vocabulary's 'Maps to value'
			// supplies the answer.
			row.SetInt(c.ValueAsConceptID, ev.code.valueConcept)
		}
	case t.drug:
		c := &cols.drug
		setDate(row, c.VerbatimEndDate, ev.verbatimEnd)
		setOptString(row, c.StopReason, ev.stopReason)
		setOptInt32(row, c.Refills, ev.refills)
		setOptInt32(row, c.DaysSupply, ev.daysSupply)
		setOptString(row, c.Sig, ev.sig)
		setConcept(row, c.RouteConceptID, ev.route)
		setOptString(row, c.LotNumber, ev.lot)
		setOptString(row, c.RouteSourceValue, ev.route.source)
		setOptString(row, c.DoseUnitSourceValue, ev.unit.source)
		if ev.quantity != nil {
			row.SetDouble(c.Quantity, *ev.quantity)
		}
	case t.device:
		c := &cols.device
		setOptString(row, c.UniqueDeviceID, ev.udi)
		setOptString(row, c.ProductionID, ev.productionID)
	}
	if ev.hasUnit {
		m.noteUnmappedUnit(ev.unit, table.name)
	}
	m.add(table, ev.component, row)
}

func (m *mapper) noteUnmappedUnit(u coded, table string) {
	if u.present && u.concept == 0 {
		m.counts.unmapped = append(m.counts.unmapped, [2]string{u.vocabulary, table})
	}
}

// reference resolution -----------------------------------------------------------------

// ref resolves the reference at v.reference to the OMOP id of a resource of type want,
// counting how (refOutcome). An absent reference gives 0; so does one that names no
// resource (a contained "#x", a display only) and one to another type (a Group subject,
// a PractitionerRole or Organization performer), since no row of the wanted kind exists
// for it: the column is then null, never a dangling id.
func (m *mapper) ref(v *jsontree.Value, want string) int64 {
	if v == nil {
		return 0
	}
	key, typ, ok := refKey(str(v, "reference"), want, m.p.idSystems)
	if !ok {
		if ident := v.Get("identifier"); ident != nil {
			// A logical reference by identifier only: resolve it as a conditional one.
			if sys, val := str(ident, "system"), str(ident, "value"); sys != "" && val != "" {
				if m.p.idSystems[sys] {
					m.noteRef(want, refLiteral)
					m.scratch = append(append(append(m.scratch[:0], want...), '/'), val...)
					return ID(unsafe.String(&m.scratch[0], len(m.scratch)))
				}
				m.noteRef(want, refIdentifier)
				return ID(identifierKey(want, sys, val))
			}
		}
		m.noteRef(want, refUnresolvable)
		return 0
	}
	if typ != want {
		m.noteRef(want, refOtherType)
		return 0
	}
	if strings.Contains(key, "?identifier=") {
		m.noteRef(want, refIdentifier)
	} else {
		m.noteRef(want, refLiteral)
	}
	return ID(key)
}

// How a reference resolved: the label values of fhirstream_omop_references_total and the
// keys of Summary.References.
const (
	// refLiteral: "Type/id" (also absolute, versioned, urn:uuid, or by an identifier
	// whose values are the ids): its id is the target row's id.
	refLiteral = "literal"
	// refIdentifier: by a business identifier (NPI): its id is the hash of the
	// identifier key, which the gold layer's link resolution maps to the row carrying
	// that identifier (provider.npi) or, failing that, sets to null and counts.
	refIdentifier = "identifier"
	// refUnresolvable: names no resource (a contained or display-only reference): null.
	refUnresolvable = "unresolvable"
	// refOtherType: names a resource of a type with no row of the wanted kind: null.
	refOtherType = "other-type"
)

func (m *mapper) noteRef(target, outcome string) {
	m.counts.refs = append(m.counts.refs, [2]string{target, outcome})
}

// person resolves the subject (or patient) reference every clinical row needs; without
// it the resource cannot map.
func (m *mapper) person(element string) (int64, error) {
	v := m.res.Get(element)
	if v == nil {
		return 0, stage.Reject(schemas.ClassMissingRequired, m.rtype+"."+element, "no %s reference: OMOP rows need a person", element)
	}
	key, typ, ok := refKey(str(v, "reference"), "Patient", m.p.idSystems)
	if !ok {
		return 0, stage.Reject(schemas.ClassUnmappedReference, m.rtype+"."+element+".reference", "the %s reference is not a resolvable Patient reference", element)
	}
	if typ != "Patient" {
		return 0, stage.Reject(schemas.ClassUnmappedReference, m.rtype+"."+element+".reference", "%s refers to a %s, not a Patient", element, typ)
	}
	if strings.Contains(key, "?identifier=") {
		// A person row carries no identifier to resolve this by later: it would dangle.
		return 0, stage.Reject(schemas.ClassUnmappedReference, m.rtype+"."+element+".reference", "%s names the Patient by an identifier whose values are not Patient ids (Config.IDSystems)", element)
	}
	m.noteRef("Patient", refLiteral)
	return ID(key), nil
}

// providerRef resolves a reference that may name a Practitioner (a provider) or
// something else (an Organization, a PractitionerRole, a Patient), giving 0 for the rest.
func (m *mapper) providerRef(v *jsontree.Value) int64 { return m.ref(v, "Practitioner") }

// time parses the date at keys, rejecting a malformed one with its element path.
func (m *mapper) time(path string, keys ...string) (fhirTime, error) {
	t, err := timeAt(m.res, keys...)
	if err != nil {
		return t, stage.Reject(schemas.ClassBadFormat, m.rtype+"."+path, "%v", err)
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
			return t, stage.Reject(schemas.ClassBadFormat, m.rtype+"."+strings.Join(keys, "."), "%v", err)
		}
		if t.valid() {
			return t, nil
		}
	}
	return fhirTime{}, nil
}

// statusCode is the first coding's code of a status CodeableConcept.
func statusCode(v *jsontree.Value, element string) string {
	c := first(v, element, "coding")
	if c == nil {
		return ""
	}
	return str(c, "code")
}
