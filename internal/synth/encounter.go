package synth

import (
	"math"
	"slices"
	"time"
)

// Kinds of visit. The kind decides the encounter class and type and what gets recorded.
const (
	kWellness = iota
	kSick
	kFollowUp
	kCheckUp
	kEmergency
	kInpatient
)

// visit is the encounter being generated.
type visit struct {
	kind       int
	id         uuid
	status     string
	start, end time.Time // end is zero for a planned encounter
	age        float64
	pract      *practitioner
	lu         time.Time // meta.lastUpdated of what is recorded in the visit
	reason     *acuteDef // acute problem treated, if any
	followUp   int       // chronic condition followed up, or -1
	died       bool      // the patient died at the end of this (inpatient) visit
	reasonID   uuid      // Condition id of reason, once written
}

// layout places the patient's encounters over their life: g.slots gets their start times
// in order and g.final the start of the hospital stay a deceased patient dies in.
func (g *gen) layout() {
	p := &g.p
	// About one encounter per year of life on average, with a wide spread between
	// patients, which for the age mix below gives Synthea's ~50 per patient.
	rate := math.Exp(g.r.NormFloat64()*0.6 - 0.18)
	n := int(yearsBetween(p.birth, p.lifeEnd)*rate+g.r.Float64()) + 1
	n = min(n, 500)

	lo := p.birth.Add(24 * time.Hour)
	g.slotsEnd = p.lifeEnd.Add(-10 * 24 * time.Hour)
	g.final = time.Time{}
	if !p.death.IsZero() {
		// Patients who die do so at the end of a hospital stay.
		g.final = p.death.Add(-g.days(1, 8))
		g.slotsEnd = g.final.Add(-24 * time.Hour)
		n--
	}
	hi := g.slotsEnd
	g.slots = g.slots[:0]
	if hi.After(lo) {
		span := hi.Unix() - lo.Unix()
		for k := 0; k < n; k++ {
			t := time.Unix(lo.Unix()+int64(g.r.Float64()*float64(span)), 0).In(p.zone)
			// Clinics see patients in office hours.
			t = time.Date(t.Year(), t.Month(), t.Day(), 8+g.intn(9), g.intn(4)*15, 0, 0, p.zone)
			if t.Before(lo) || t.After(hi) {
				continue
			}
			g.slots = append(g.slots, t.Unix())
		}
	}
	slices.Sort(g.slots)
}

// encounters generates the encounters laid out by layout, then the deceased patient's
// final stay or a living patient's next appointment.
func (g *gen) encounters() {
	p := &g.p
	final, hi := g.final, g.slotsEnd
	var prevEnd time.Time
	chronicSeen := false
	for k, s := range g.slots {
		start := time.Unix(s, 0).In(p.zone)
		if !start.After(prevEnd) {
			start = prevEnd.Add(15 * time.Minute)
		}
		next := hi.Add(24 * time.Hour)
		if k+1 < len(g.slots) {
			next = time.Unix(g.slots[k+1], 0)
		} else if !final.IsZero() {
			next = final
		}
		if !chronicSeen {
			for ch := range p.chronic {
				if p.chronic[ch].diagnosed {
					chronicSeen = true
				}
			}
		}
		kind := g.kind(p.ageAt(start), k == 0, chronicSeen)
		var dur time.Duration
		switch kind {
		case kEmergency:
			dur = time.Duration(60+g.intn(300)) * time.Minute
		case kInpatient:
			dur = g.days(1, 8)
			if next.Sub(start) < dur+24*time.Hour {
				kind, dur = kEmergency, 3*time.Hour
			}
		case kWellness:
			dur = time.Duration(20+g.intn(30)) * time.Minute
		default:
			dur = time.Duration(15+g.intn(20)) * time.Minute
		}
		end := start.Add(dur)
		if limit := next.Add(-time.Minute); end.After(limit) {
			end = limit
		}
		if !end.After(start) {
			end = start.Add(5 * time.Minute)
		}
		status := "finished"
		switch r := g.r.Float64(); {
		case r < 0.012:
			status = "cancelled"
		case r < 0.017:
			status = "entered-in-error"
		}
		g.visit(kind, status, start, end, false)
		if g.err != nil {
			return
		}
		prevEnd = end
	}
	switch {
	case !final.IsZero():
		g.visit(kInpatient, "finished", final, p.death, true)
	case g.chance(0.2):
		// Some living patients have an appointment booked after the export.
		t := g.end.In(p.zone).Add(g.days(1, 60))
		t = time.Date(t.Year(), t.Month(), t.Day(), 8+g.intn(9), g.intn(4)*15, 0, 0, p.zone)
		g.visit(kCheckUp, "planned", t, time.Time{}, false)
	}
}

// kind picks the kind of an encounter at age a.
func (g *gen) kind(a float64, first, chronic bool) int {
	if first && a < 1 {
		return kWellness
	}
	r := g.r.Float64()
	switch {
	case r < 0.20:
		return kWellness
	case r < 0.53:
		return kSick
	case r < 0.78:
		if chronic {
			return kFollowUp
		}
		return kCheckUp
	case r < 0.93:
		return kCheckUp
	case r < 0.985:
		return kEmergency
	default:
		return kInpatient
	}
}

// at is the instant a fraction f of the way through the visit, to the second.
func (v *visit) at(f float64) time.Time {
	return v.start.Add(time.Duration(f*float64(v.end.Sub(v.start))) / time.Second * time.Second)
}

// visit generates one encounter and, if it took place, everything recorded in it.
func (g *gen) visit(kind int, status string, start, end time.Time, died bool) {
	p := &g.p
	v := &g.v
	*v = visit{kind: kind, status: status, start: start, end: end, died: died, followUp: -1}
	v.id = newUUID(g.r)
	v.age = p.ageAt(start)
	v.pract = &g.grp.pract[p.pcp]
	if kind == kEmergency || kind == kInpatient || g.chance(0.2) {
		v.pract = pick(g, g.grp.pract[:])
	}
	if end.IsZero() {
		v.lu = g.end.Add(-g.days(0, 30))
	} else {
		v.lu = g.lastUpdated(end)
	}
	switch kind {
	case kSick:
		v.reason = g.pickAcute(sickReasons, v.age, start.Year())
	case kEmergency:
		v.reason = g.pickAcute(emergencyReasons, v.age, start.Year())
	case kInpatient:
		v.reason = g.pickAcute(inpatientReasons, v.age, start.Year())
	case kFollowUp:
		v.followUp = g.pickDiagnosed()
		if v.followUp < 0 {
			v.kind = kCheckUp
		}
	}
	g.writeEncounter()
	if status != "finished" {
		return
	}
	g.record()
}

// pickAcute draws an acute problem from defs that fits age a and the calendar year.
func (g *gen) pickAcute(defs []acuteDef, a float64, year int) *acuteDef {
	total := 0.0
	for k := range defs {
		if d := &defs[k]; a >= d.minAge && a <= d.maxAge && year >= d.since {
			total += d.weight
		}
	}
	r := g.r.Float64() * total
	for k := range defs {
		d := &defs[k]
		if a < d.minAge || a > d.maxAge || year < d.since {
			continue
		}
		if r < d.weight {
			return d
		}
		r -= d.weight
	}
	return &defs[0]
}

// pickDiagnosed returns a random diagnosed chronic condition, or -1 if there is none.
func (g *gen) pickDiagnosed() int {
	n := 0
	for ch := range g.p.chronic {
		if g.p.chronic[ch].diagnosed {
			n++
		}
	}
	if n == 0 {
		return -1
	}
	k := g.intn(n)
	for ch := range g.p.chronic {
		if g.p.chronic[ch].diagnosed {
			if k == 0 {
				return ch
			}
			k--
		}
	}
	return -1
}

func (g *gen) writeEncounter() {
	p, v, e := &g.p, &g.v, &g.e
	e.header(TypeEncounter, &v.id, 1, v.lu)
	e.field("status", v.status)
	e.key("class")
	var typ *concept
	switch v.kind {
	case kWellness:
		e.coding(&classAMB)
		typ = &typeGeneralExam
		if v.age < 18 {
			typ = &typeWellChild
		}
	case kSick:
		e.coding(&classAMB)
		typ = &typeSymptom
	case kFollowUp:
		e.coding(&classAMB)
		typ = &typeFollowUp
	case kCheckUp:
		e.coding(&classAMB)
		typ = &typeCheckUp
	case kEmergency:
		e.coding(&classEMER)
		typ = &typeEmergency
	case kInpatient:
		e.coding(&classIMP)
		typ = &typeAdmission
		if v.died || v.reason.c.code == "22298006" {
			typ = &typeEmergencyAdm
		}
	}
	e.fieldCodeableList("type", typ)
	e.fieldRef("subject", TypePatient, &p.id, p.display)
	e.key("participant")
	e.arr()
	e.obj()
	e.fieldCodeableList("type", &participantPrimary)
	e.period("period", v.start, v.end)
	e.fieldRef("individual", TypePractitioner, &v.pract.id, v.pract.display)
	e.endObj()
	e.endArr()
	e.period("period", v.start, v.end)
	switch {
	case v.reason != nil:
		e.fieldCodeableList("reasonCode", &v.reason.c)
	case v.followUp >= 0:
		e.fieldCodeableList("reasonCode", &chronicDefs[v.followUp].c)
	}
	if v.kind == kInpatient {
		e.key("hospitalization")
		e.obj()
		admit := &admitEmergency
		if !v.died && g.chance(0.3) {
			admit = &admitGP
		}
		e.fieldCodeable("admitSource", admit)
		disp := &dischargeHome
		switch r := g.r.Float64(); {
		case v.died:
			disp = &dischargeDied
		case v.age > 70 && r < 0.3:
			disp = &dischargeSNF
		case r < 0.1:
			disp = &dischargeRehab
		}
		e.fieldCodeable("dischargeDisposition", disp)
		e.endObj()
	}
	e.key("location")
	e.arr()
	e.obj()
	e.fieldRef("location", TypeLocation, &g.grp.locID, g.grp.locName)
	e.endObj()
	e.endArr()
	e.fieldRef("serviceProvider", TypeOrganization, &g.grp.orgID, g.grp.orgName)
	e.endObj()
	g.write(TypeEncounter)
}
