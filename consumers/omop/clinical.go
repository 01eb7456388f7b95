package omop

import (
	"strings"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

// notHappened is true of the status values that mean "this did not happen": such
// resources give no row.
func notHappened(status string) bool {
	switch status {
	case "entered-in-error", "cancelled", "not-done", "not-taken", "draft", "planned":
		return true
	}
	return false
}

// eventDates says where a resource type keeps the patient of its event and the event's
// dates, and how a missing start date is reported: every event table's start date is
// required, so a resource without one is rejected.
type eventDates struct {
	subject string     // element referencing the Patient: "subject" or "patient"
	start   [][]string // start date elements (paths), the first present wins
	end     [][]string // end date elements, likewise; none for point events
	element string     // the element a missing start is reported against
	missing string     // the rejection message for a missing start
}

var (
	conditionDates = eventDates{subject: "subject",
		start:   [][]string{{"onsetDateTime"}, {"onsetPeriod", "start"}, {"recordedDate"}},
		end:     [][]string{{"abatementDateTime"}, {"abatementPeriod", "end"}},
		element: "Condition.onset[x]",
		missing: "no onsetDateTime, onsetPeriod.start or recordedDate: condition_start_date is required"}
	procedureDates = eventDates{subject: "subject",
		start:   [][]string{{"performedDateTime"}, {"performedPeriod", "start"}},
		end:     [][]string{{"performedPeriod", "end"}},
		element: "Procedure.performed[x]",
		missing: "no performedDateTime or performedPeriod.start: procedure_date is required"}
	observationDates = eventDates{subject: "subject",
		start:   [][]string{{"effectiveDateTime"}, {"effectivePeriod", "start"}, {"effectiveInstant"}, {"issued"}},
		element: "Observation.effective[x]",
		missing: "no effectiveDateTime, effectivePeriod.start, effectiveInstant or issued: the row date is required"}
	immunizationDates = eventDates{subject: "patient",
		start:   [][]string{{"occurrenceDateTime"}, {"recorded"}},
		element: "Immunization.occurrence[x]",
		missing: "no occurrenceDateTime or recorded date: drug_exposure_start_date is required"}
	allergyDates = eventDates{subject: "patient",
		start:   [][]string{{"onsetDateTime"}, {"onsetPeriod", "start"}, {"recordedDate"}},
		element: "AllergyIntolerance.onset[x]",
		missing: "no onsetDateTime, onsetPeriod.start or recordedDate: observation_date is required"}
	// A Device has no date of use of its own. The gold layer dates its exposure from a
	// procedure (focalDevice) or DeviceUseStatement naming it; manufactureDate stands in
	// only where neither exists (Synthea sets it three weeks before the implant).
	deviceDates = eventDates{subject: "patient",
		start:   [][]string{{"manufactureDate"}},
		element: "Device.manufactureDate",
		missing: "a Device has no date of use other than manufactureDate: device_exposure_start_date is required"}
	deviceUseDates = eventDates{subject: "subject",
		start:   [][]string{{"timingDateTime"}, {"timingPeriod", "start"}, {"recordedOn"}},
		end:     [][]string{{"timingPeriod", "end"}},
		element: "DeviceUseStatement.timing[x]",
		missing: "no timingDateTime, timingPeriod.start or recordedOn: device_exposure_start_date is required"}
	encounterDates = eventDates{subject: "subject",
		start:   [][]string{{"period", "start"}},
		end:     [][]string{{"period", "end"}},
		element: "Encounter.period.start",
		missing: "no period.start: visit_start_date is required"}
)

// skipStatus counts the resource as skipped, with its status as the reason, when
// didNotHappen says its status means no event took place.
func (m *mapper) skipStatus(didNotHappen func(status string) bool) bool {
	status := str(m.res, "status")
	if !didNotHappen(status) {
		return false
	}
	m.skip("status-" + status)
	return true
}

// eventAt starts the event of a clinical resource: its person and dates (d), the
// encounter it belongs to, the practitioner referenced by provider (nil for none) and
// its type concept.
func (m *mapper) eventAt(d subjectDates, provider *jsontree.Value, typeConcept int32) event {
	return event{person: d.person, start: d.start, end: d.end,
		visit: m.ref(m.res.Get("encounter"), "Encounter"), provider: m.providerRef(provider), typeConcept: typeConcept}
}

// subjectDates is an event's person and dates; end is zero when not given.
type subjectDates struct {
	person     int64
	start, end fhirTime
}

// subjectAndDates resolves the patient reference, then the start and end dates, in
// that order, as d says; the first failure is the resource's rejection.
func (m *mapper) subjectAndDates(d *eventDates) (subjectDates, error) {
	var r subjectDates
	var err error
	if r.person, err = m.person(d.subject); err != nil {
		return r, err
	}
	if r.start, err = m.firstTime(d.start...); err != nil {
		return r, err
	}
	if !r.start.valid() {
		return r, stage.Reject(schemas.ClassMissingRequired, d.element, "%s", d.missing)
	}
	r.end, err = m.firstTime(d.end...)
	return r, err
}

func (m *mapper) condition() error {
	switch statusCode(m.res, "verificationStatus") {
	case "entered-in-error", "refuted":
		m.skip("verification-" + statusCode(m.res, "verificationStatus"))
		return nil
	}
	d, err := m.subjectAndDates(&conditionDates)
	if err != nil {
		return err
	}
	ev := m.eventAt(d, m.res.Get("asserter"), vocab.TypeEHR)
	ev.code = m.codeable(m.res.Get("code"))
	ev.statusSource = statusCode(m.res, "clinicalStatus")
	if ev.provider == 0 {
		ev.provider = m.providerRef(m.res.Get("recorder"))
	}
	m.emit(m.route(ev.code, m.p.t.condition), &ev)
	return nil
}

func (m *mapper) procedure() error {
	if m.skipStatus(notHappened) {
		return nil
	}
	d, err := m.subjectAndDates(&procedureDates)
	if err != nil {
		return err
	}
	performer := first(m.res, "performer").Get("actor")
	ev := m.eventAt(d, performer, vocab.TypeEHR)
	ev.code = m.codeable(m.res.Get("code"))
	m.emit(m.route(ev.code, m.p.t.procedure), &ev)
	// A device the procedure implanted, changed or removed (focalDevice.manipulated) is
	// exposed from the procedure's date: a device_exposure row naming the Device, which
	// the gold layer merges with the Device's own row (gold: device dating).
	for i, fd := range m.res.Elems("focalDevice") {
		key, ok := m.deviceKey(fd.Get("manipulated"))
		if !ok {
			continue
		}
		dev := m.eventAt(d, performer, vocab.TypeEHR)
		dev.component = i + 1
		dev.code = coded{present: true, vocabulary: "Device-reference"}
		dev.sourceValue = key
		m.emit(m.p.t.device, &dev)
	}
	return nil
}

// deviceKey is "Device/<id>" of a Device reference, the device_source_value of the rows
// that date a Device's exposure (a procedure's focalDevice, a DeviceUseStatement).
func (m *mapper) deviceKey(v *jsontree.Value) (string, bool) {
	if v == nil {
		return "", false
	}
	key, typ, ok := refKey(str(v, "reference"), "Device", m.p.idSystems)
	return key, ok && typ == "Device"
}

// observationCategoryTable is the default table of an Observation by its category, used
// when no vocabulary decides by domain.
func (m *mapper) observationCategoryTable() *tableInfo {
	for _, cat := range m.res.Elems("category") {
		for _, c := range cat.Elems("coding") {
			switch c.String("code") {
			case "laboratory", "vital-signs":
				return m.p.t.measurement
			case "social-history", "survey", "exam", "therapy", "activity":
				return m.p.t.observation
			}
		}
	}
	if m.res.Exists("valueQuantity") {
		return m.p.t.measurement
	}
	return m.p.t.observation
}

func (m *mapper) observation() error {
	if m.skipStatus(func(s string) bool { return s == "entered-in-error" || s == "cancelled" }) {
		return nil
	}
	d, err := m.subjectAndDates(&observationDates)
	if err != nil {
		return err
	}
	def := m.observationCategoryTable()
	base := m.eventAt(d, first(m.res, "performer"), vocab.TypeEHR)
	hasValue := hasValueX(m.res)
	// A panel (blood pressure 85354-9) carries its values in components; the panel code
	// itself is then not a row. Without components the observation is one row, value or not.
	if hasValue || m.res.Len("component") == 0 {
		ev := base
		ev.code = m.codeable(m.res.Get("code"))
		if err := m.value(&ev, m.res, -1); err != nil {
			return err
		}
		m.referenceRange(&ev, m.res)
		m.emit(m.route(ev.code, def), &ev)
	}
	for i, c := range m.res.Elems("component") {
		ev := base
		ev.component = i + 1
		ev.code = m.codeable(c.Get("code"))
		if err := m.value(&ev, c, i); err != nil {
			return err
		}
		m.referenceRange(&ev, c)
		m.emit(m.route(ev.code, def), &ev)
	}
	return nil
}

func hasValueX(v *jsontree.Value) bool {
	for k := range v.Members() {
		if len(k) > 5 && k[:5] == "value" {
			return true
		}
	}
	return false
}

// value fills the value columns from value[x] of v: the Observation when component is
// -1, else its component of that index (which names the element in a rejection).
func (m *mapper) value(ev *event, v *jsontree.Value, component int) error {
	switch {
	case v.Exists("valueQuantity"):
		q := v.Get("valueQuantity")
		if n, ok := num(q, "value"); ok {
			ev.hasNum, ev.num = true, n
		} else if q.Exists("value") {
			path := "Observation"
			if component >= 0 {
				path = "Observation.component[" + itoa(component) + "]"
			}
			return stage.Reject(schemas.ClassTypeMismatch, path+".valueQuantity.value", "not a number")
		}
		ev.operator = vocab.ComparatorConcepts[str(q, "comparator")]
		m.unit(ev, q)
	case v.Exists("valueCodeableConcept"):
		ev.value = m.codeable(v.Get("valueCodeableConcept"))
		if ev.value.present && ev.value.concept == 0 {
			m.counts.unmapped = append(m.counts.unmapped, [2]string{ev.value.vocabulary, "value"})
		}
	case v.Exists("valueString"):
		ev.valueString = str(v, "valueString")
	case v.Exists("valueBoolean"):
		ev.valueString = "false"
		if v.Bool("valueBoolean") {
			ev.valueString = "true"
		}
	case v.Exists("valueInteger"):
		if n, ok := num(v, "valueInteger"); ok {
			ev.hasNum, ev.num = true, n
		}
	case v.Exists("valueDateTime"):
		ev.valueString = str(v, "valueDateTime")
	}
	return nil
}

// unit resolves a Quantity's unit: the UCUM code when the system is UCUM, else the unit
// text as source value only.
func (m *mapper) unit(ev *event, q *jsontree.Value) {
	code, system := str(q, "code"), str(q, "system")
	if code == "" {
		code = str(q, "unit")
	}
	if code == "" {
		return
	}
	ev.hasUnit = true
	ev.unit = coded{source: code, present: true, vocabulary: "UCUM"}
	if system != "" && system != "http://unitsofmeasure.org" {
		ev.unit.vocabulary = strings.Clone(system) // a metric label: see lookup
		return
	}
	if match, _, ok := m.p.lookup("http://unitsofmeasure.org", code); ok {
		ev.unit.concept = match.Standard.ID
		ev.unit.sourceConcept = match.Source.ID
	}
}

func (m *mapper) referenceRange(ev *event, v *jsontree.Value) {
	rr := first(v, "referenceRange")
	if rr == nil {
		return
	}
	ev.low, ev.hasLow = num(rr, "low", "value")
	ev.high, ev.hasHigh = num(rr, "high", "value")
}

// medication maps MedicationRequest, MedicationStatement and MedicationAdministration.
func (m *mapper) medication() error {
	if m.skipStatus(notHappened) {
		return nil
	}
	person, err := m.person("subject")
	if err != nil {
		return err
	}
	ev := &event{person: person}
	var start, end fhirTime
	switch m.rtype {
	case "MedicationRequest":
		ev.typeConcept = vocab.TypeEHRPrescription
		ev.visit = m.ref(m.res.Get("encounter"), "Encounter")
		ev.provider = m.providerRef(m.res.Get("requester"))
		if start, err = m.firstTime([]string{"authoredOn"}); err != nil {
			return err
		}
		dosage := first(m.res, "dosageInstruction")
		if dosage != nil {
			ev.sig = str(dosage, "text")
			ev.route = m.codeable(dosage.Get("route"))
			if b := dosage.Get("timing", "repeat", "boundsPeriod"); b != nil {
				bs, err1 := timeAt(b, "start")
				be, err2 := timeAt(b, "end")
				if err1 != nil || err2 != nil {
					return stage.Reject(schemas.ClassBadFormat, "MedicationRequest.dosageInstruction[0].timing.repeat.boundsPeriod", "not a FHIR dateTime")
				}
				if bs.valid() {
					start = bs
				}
				end = be
			}
		}
		if dr := m.res.Get("dispenseRequest"); dr != nil {
			if q, ok := num(dr, "quantity", "value"); ok {
				ev.quantity = &q
			}
			if n, ok := num(dr, "numberOfRepeatsAllowed"); ok {
				r := int32(n)
				ev.refills = &r
			}
			if d, ok := durationDays(dr.Get("expectedSupplyDuration")); ok {
				ev.daysSupply = &d
				if !end.valid() && start.valid() {
					end = fhirTime{t: start.t.AddDate(0, 0, int(d)-1), precision: 3}
				}
			}
		}
	case "MedicationStatement":
		ev.typeConcept = vocab.TypePatientReported
		ev.visit = m.ref(m.res.Get("context"), "Encounter")
		if start, err = m.firstTime([]string{"effectiveDateTime"}, []string{"effectivePeriod", "start"}, []string{"dateAsserted"}); err != nil {
			return err
		}
		if end, err = m.time("effectivePeriod.end", "effectivePeriod", "end"); err != nil {
			return err
		}
		dosage := first(m.res, "dosage")
		if dosage != nil {
			ev.sig = str(dosage, "text")
			ev.route = m.codeable(dosage.Get("route"))
		}
	case "MedicationAdministration":
		ev.typeConcept = vocab.TypeEHRAdministration
		ev.visit = m.ref(m.res.Get("context"), "Encounter")
		ev.provider = m.providerRef(first(m.res, "performer").Get("actor"))
		if start, err = m.firstTime([]string{"effectiveDateTime"}, []string{"effectivePeriod", "start"}); err != nil {
			return err
		}
		if end, err = m.time("effectivePeriod.end", "effectivePeriod", "end"); err != nil {
			return err
		}
		if d := m.res.Get("dosage"); d != nil {
			ev.route = m.codeable(d.Get("route"))
			if q, ok := num(d, "dose", "value"); ok {
				ev.quantity = &q
				ev.unit = coded{source: str(d, "dose", "unit"), present: true}
			}
		}
	}
	if !start.valid() {
		return stage.Reject(schemas.ClassMissingRequired, m.rtype+".authoredOn|effective[x]", "no start date: drug_exposure_start_date is required")
	}
	ev.start, ev.end = start, end
	if m.res.Exists("medicationCodeableConcept") {
		ev.code = m.codeable(m.res.Get("medicationCodeableConcept"))
	} else if r := str(m.res, "medicationReference", "reference"); r != "" {
		// The code is in a Medication resource this stage cannot look up; keep the
		// reference so the row can be completed downstream.
		ev.code = coded{present: true, vocabulary: "Medication-reference"}
		ev.sourceValue = r
	}
	if ev.route.present && ev.route.concept == 0 {
		m.counts.unmapped = append(m.counts.unmapped, [2]string{ev.route.vocabulary, "route"})
	}
	m.emit(m.route(ev.code, m.p.t.drug), ev)
	return nil
}

// durationDays converts a Duration to whole days.
func durationDays(d *jsontree.Value) (int32, bool) {
	if d == nil {
		return 0, false
	}
	n, ok := num(d, "value")
	if !ok {
		return 0, false
	}
	unit := str(d, "code")
	if unit == "" {
		unit = str(d, "unit")
	}
	switch strings.ToLower(unit) {
	case "d", "day", "days":
	case "wk", "week", "weeks":
		n *= 7
	case "mo", "month", "months":
		n *= 30
	case "h", "hour", "hours":
		n /= 24
	default:
		return 0, false
	}
	if n < 0 || n > 1<<20 {
		return 0, false
	}
	return int32(n + 0.5), true
}

func (m *mapper) immunization() error {
	if m.skipStatus(notHappened) {
		return nil
	}
	d, err := m.subjectAndDates(&immunizationDates)
	if err != nil {
		return err
	}
	ev := m.eventAt(d, first(m.res, "performer").Get("actor"), vocab.TypeEHRAdministration)
	ev.code = m.codeable(m.res.Get("vaccineCode"))
	ev.lot = str(m.res, "lotNumber")
	ev.route = m.codeable(m.res.Get("route"))
	if v := m.res.Get("primarySource"); v != nil && v.Type() == jsontree.TypeFalse {
		ev.typeConcept = vocab.TypePatientReported
	}
	if q, ok := num(m.res, "doseQuantity", "value"); ok {
		ev.quantity = &q
		ev.unit = coded{source: str(m.res, "doseQuantity", "unit"), present: true}
	}
	m.emit(m.route(ev.code, m.p.t.drug), &ev)
	return nil
}

// allergy maps an AllergyIntolerance to an observation. The allergy is a fact about the
// person, not an exposure, so the code's domain does not route it: a substance code (a
// Drug-domain RxNorm ingredient) becomes the value, an allergy finding the concept.
func (m *mapper) allergy() error {
	switch v := statusCode(m.res, "verificationStatus"); v {
	case "entered-in-error", "refuted":
		m.skip("verification-" + v)
		return nil
	}
	d, err := m.subjectAndDates(&allergyDates)
	if err != nil {
		return err
	}
	code := m.codeable(m.res.Get("code"))
	ev := m.eventAt(d, m.res.Get("asserter"), vocab.TypeEHR)
	ev.code = code
	if code.domain != "Observation" && code.domain != "Condition" {
		// A substance or drug code: the concept stays 0 (the code kept as source value)
		// and the substance, when the vocabulary knows it, is the value.
		ev.value = coded{concept: code.concept, source: code.source, present: code.present, sourceConcept: code.sourceConcept, vocabulary: code.vocabulary}
		ev.code.concept = 0
		ev.codeIsValue = true
	}
	if crit := str(m.res, "criticality"); crit != "" {
		ev.qualifier = coded{source: crit, present: true}
	}
	m.emit(m.p.t.observation, &ev)
	return nil
}

func (m *mapper) device() error {
	if m.skipStatus(func(s string) bool { return s == "entered-in-error" }) {
		return nil
	}
	if !m.res.Exists("patient") {
		// A Device without a patient is inventory, not an exposure.
		m.skip("no-patient")
		return nil
	}
	d, err := m.subjectAndDates(&deviceDates)
	if err != nil {
		return err
	}
	ev := m.eventAt(d, nil, vocab.TypeEHR) // a Device names no encounter or practitioner
	ev.code = m.codeable(m.res.Get("type"))
	ev.udi = str(first(m.res, "udiCarrier"), "deviceIdentifier")
	ev.productionID = str(m.res, "serialNumber")
	if ev.udi == "" {
		ev.udi = str(m.res, "distinctIdentifier")
	}
	if ev.productionID == "" {
		ev.productionID = str(m.res, "lotNumber")
	}
	m.emit(m.route(ev.code, m.p.t.device), &ev)
	return nil
}

func (m *mapper) deviceUse() error {
	if m.skipStatus(func(s string) bool { return s == "entered-in-error" || s == "not-done" }) {
		return nil
	}
	d, err := m.subjectAndDates(&deviceUseDates)
	if err != nil {
		return err
	}
	ev := m.eventAt(d, nil, vocab.TypeEHR) // nor does a DeviceUseStatement
	// The device's code lives in the Device resource; keep its key as the source value,
	// by which the gold layer merges this row with the Device's own.
	ev.code = coded{present: true, vocabulary: "Device-reference"}
	ev.sourceValue, _ = m.deviceKey(m.res.Get("device"))
	m.emit(m.p.t.device, &ev)
	return nil
}
