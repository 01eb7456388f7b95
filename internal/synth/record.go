package synth

import "time"

// record writes what a finished visit adds to the chart, in the order a clinician records
// it: diagnoses, allergies, observations, procedures, prescriptions, immunizations.
func (g *gen) record() {
	p, v := &g.p, &g.v
	var newDx [numChronic]bool
	if v.kind != kSick && v.kind != kEmergency {
		for ch := range p.chronic {
			s := &p.chronic[ch]
			if s.has && !s.diagnosed && !s.onset.After(v.start) {
				s.diagnosed = true
				s.condID = g.condition(&chronicDefs[ch].c, nil)
				newDx[ch] = true
			}
		}
	}
	if v.reason != nil {
		v.reasonID = g.condition(&v.reason.c, v.reason)
	}
	if !p.allergyOK && (v.kind == kWellness || v.kind == kCheckUp) && v.age >= 1 {
		g.allergies()
	}
	g.observe()
	g.procedures()
	g.prescribe(&newDx)
	if v.kind == kWellness || v.kind == kCheckUp {
		g.immunize()
	}
}

// condition writes a Condition diagnosed at the start of the visit and returns its id.
// Acute problems (acute != nil) resolve after a while; if that is before the export, the
// resource was updated for it and carries versionId 2.
func (g *gen) condition(c *concept, acute *acuteDef) uuid {
	p, v, e := &g.p, &g.v, &g.e
	id := newUUID(g.r)
	version, lu := 1, v.lu
	var abated time.Time
	if acute != nil {
		t := v.start.Add(g.days(float64(acute.days[0]), float64(acute.days[1])))
		if t.Before(p.lifeEnd) && t.After(v.end) {
			abated, version, lu = t, 2, g.lastUpdated(t)
		}
	}
	e.header(TypeCondition, &id, version, lu)
	if abated.IsZero() {
		e.fieldCodingOnly("clinicalStatus", &condActive)
	} else {
		e.fieldCodingOnly("clinicalStatus", &condResolved)
	}
	e.fieldCodingOnly("verificationStatus", &condConfirmed)
	e.key("category")
	e.arr()
	e.obj()
	e.key("coding")
	e.arr()
	if acute != nil {
		e.coding(&condEncDx)
	} else {
		e.coding(&condProblem)
	}
	e.endArr()
	e.endObj()
	e.endArr()
	e.fieldCodeable("code", c)
	e.fieldRef("subject", TypePatient, &p.id, "")
	e.fieldRef("encounter", TypeEncounter, &v.id, "")
	e.fieldTime("onsetDateTime", v.start)
	if !abated.IsZero() {
		e.fieldTime("abatementDateTime", abated)
	}
	e.fieldTime("recordedDate", v.start)
	e.endObj()
	g.write(TypeCondition)
	return id
}

func (g *gen) allergies() {
	p, v, e := &g.p, &g.v, &g.e
	p.allergyOK = true
	for _, a := range p.allergies {
		if a < 0 {
			continue
		}
		al := &allergies[a]
		id := newUUID(g.r)
		e.header(TypeAllergyIntolerance, &id, 1, v.lu)
		e.fieldCodingOnly("clinicalStatus", &allergyActive)
		e.fieldCodingOnly("verificationStatus", &allergyConfirmed)
		e.field("type", "allergy")
		e.key("category")
		e.arr()
		e.str(al.category)
		e.endArr()
		e.field("criticality", "low")
		e.fieldCodeable("code", &al.c)
		e.fieldRef("patient", TypePatient, &p.id, "")
		e.fieldRef("encounter", TypeEncounter, &v.id, "")
		e.fieldTime("recordedDate", v.at(0.1))
		e.endObj()
		g.write(TypeAllergyIntolerance)
	}
}

func (g *gen) procedures() {
	p, v := &g.p, &g.v
	switch v.kind {
	case kWellness:
		if v.age >= 18 && g.chance(0.4) {
			g.procedure(&procAssessment, nil)
		}
		if v.age >= 12 && g.chance(0.3) {
			g.procedure(&procDepressionScr, nil)
		}
		onMeds := false
		for ch := range p.chronic {
			onMeds = onMeds || p.chronic[ch].meds != 0
		}
		if onMeds && g.chance(0.6) {
			g.procedure(&procMedRecon, nil)
		}
		if v.age >= 50 && g.chance(0.04) {
			g.procedure(&procColonoscopy, nil)
		}
		if p.female && v.age >= 40 && g.chance(0.3) {
			g.procedure(&procMammography, nil)
		}
	case kSick, kEmergency, kInpatient:
		if r := v.reason; r.proc != nil && g.chance(r.procP) {
			g.procedure(r.proc, &v.reasonID)
		}
	case kFollowUp:
		s := &p.chronic[v.followUp]
		for _, pr := range chronicDefs[v.followUp].procs {
			if g.chance(0.3) {
				g.procedure(pr, &s.condID)
			}
		}
	}
}

func (g *gen) procedure(c *concept, reason *uuid) {
	p, v, e := &g.p, &g.v, &g.e
	id := newUUID(g.r)
	start := v.at(g.uniform(0.3, 0.6))
	end := minTime(start.Add(time.Duration(10+g.intn(50))*time.Minute), v.end)
	e.header(TypeProcedure, &id, 1, v.lu)
	e.field("status", "completed")
	e.fieldCodeable("code", c)
	e.fieldRef("subject", TypePatient, &p.id, "")
	e.fieldRef("encounter", TypeEncounter, &v.id, "")
	e.period("performedPeriod", start, end)
	e.fieldRef("location", TypeLocation, &g.grp.locID, g.grp.locName)
	if reason != nil {
		e.key("reasonReference")
		e.arr()
		e.ref(TypeCondition, reason, "")
		e.endArr()
	}
	e.endObj()
	g.write(TypeProcedure)
}

// prescribe writes the visit's MedicationRequests: first-line drugs for conditions just
// diagnosed, renewals (and sometimes an added drug) at follow-ups, and a course for the
// acute problem.
func (g *gen) prescribe(newDx *[numChronic]bool) {
	p, v := &g.p, &g.v
	for ch, isNew := range newDx {
		d := &chronicDefs[ch]
		if !isNew || len(d.meds) == 0 {
			continue
		}
		s := &p.chronic[ch]
		s.meds = 1
		if len(d.meds) > 1 && g.chance(0.4) {
			s.meds |= 2
		}
		g.chronicMeds(ch)
	}
	if v.kind == kFollowUp {
		ch := v.followUp
		d, s := &chronicDefs[ch], &p.chronic[ch]
		if len(d.meds) > 0 {
			if g.chance(0.15) {
				for k := range d.meds {
					if s.meds&(1<<k) == 0 {
						s.meds |= 1 << k
						break
					}
				}
			}
			if s.meds == 0 {
				s.meds = 1
			}
			if g.chance(0.8) {
				g.chronicMeds(ch)
			}
		}
	}
	if r := v.reason; r != nil && len(r.meds) > 0 && g.chance(r.medP) {
		m := *pick(g, r.meds)
		if p.penicillinAllergy && (m == &medAmoxicillin || m == &medAmoxClav || m == &medPenicillinV) {
			m = &medAzithromycin
		}
		g.medicationRequest(m, &v.reasonID)
	}
}

func (g *gen) chronicMeds(ch int) {
	s := &g.p.chronic[ch]
	for k, m := range chronicDefs[ch].meds {
		if s.meds&(1<<k) != 0 {
			g.medicationRequest(m, &s.condID)
		}
	}
}

func (g *gen) medicationRequest(m *medication, reason *uuid) {
	p, v, e := &g.p, &g.v, &g.e
	id := newUUID(g.r)
	t := v.at(g.uniform(0.85, 0.98))
	// Long-term prescriptions run for a year; courses for their days of supply.
	until := t.Add(year)
	if m.days > 0 {
		until = t.Add(time.Duration(m.days) * 24 * time.Hour)
	}
	status := "completed"
	if until.After(p.lifeEnd) {
		status = "active"
		if !p.death.IsZero() {
			status = "stopped"
		}
	}
	e.header(TypeMedicationRequest, &id, 1, v.lu)
	e.field("status", status)
	e.field("intent", "order")
	e.fieldCodeable("medicationCodeableConcept", &m.c)
	e.fieldRef("subject", TypePatient, &p.id, "")
	e.fieldRef("encounter", TypeEncounter, &v.id, "")
	e.fieldTime("authoredOn", t)
	e.fieldRef("requester", TypePractitioner, &v.pract.id, v.pract.display)
	e.key("reasonReference")
	e.arr()
	e.ref(TypeCondition, reason, "")
	e.endArr()
	e.key("dosageInstruction")
	e.arr()
	e.obj()
	e.fieldInt("sequence", 1)
	e.field("text", m.text)
	e.key("timing")
	e.obj()
	e.key("repeat")
	e.obj()
	e.fieldInt("frequency", m.perDay)
	e.fieldInt("period", 1)
	e.field("periodUnit", "d")
	e.endObj()
	e.endObj()
	e.fieldBool("asNeededBoolean", m.asNeeded)
	e.endObj()
	e.endArr()
	if m.days > 0 {
		e.key("dispenseRequest")
		e.obj()
		e.key("expectedSupplyDuration")
		e.obj()
		e.fieldInt("value", m.days)
		e.field("unit", "days")
		e.field("system", sysUCUM)
		e.field("code", "d")
		e.endObj()
		e.endObj()
	}
	e.endObj()
	g.write(TypeMedicationRequest)
}

// immunize gives the vaccines due at this visit under a simplified US schedule.
func (g *gen) immunize() {
	p, v, e := &g.p, &g.v, &g.e
	for k := range vaccines {
		vc, st := &vaccines[k], &p.vaccines[k]
		if v.age < vc.minAge || v.age > vc.maxAge || v.start.Year() < vc.since {
			continue
		}
		if vc.doses > 0 && st.doses >= vc.doses {
			continue
		}
		if st.doses > 0 && v.start.Sub(st.last) < time.Duration(vc.intervalDays)*24*time.Hour {
			continue
		}
		uptake := 0.85
		if vc.minAge >= 19 || vc.maxAge > 100 {
			uptake = 0.4 // adults keep up less than children
		}
		if !g.chance(uptake) {
			continue
		}
		st.doses++
		st.last = v.start
		id := newUUID(g.r)
		e.header(TypeImmunization, &id, 1, v.lu)
		e.field("status", "completed")
		e.fieldCodeable("vaccineCode", &vc.c)
		e.fieldRef("patient", TypePatient, &p.id, "")
		e.fieldRef("encounter", TypeEncounter, &v.id, "")
		e.fieldTime("occurrenceDateTime", v.at(0.8))
		e.fieldBool("primarySource", true)
		e.fieldRef("location", TypeLocation, &g.grp.locID, g.grp.locName)
		e.endObj()
		g.write(TypeImmunization)
	}
}
