package synth

import "time"

// Which vital signs a visit measures.
const (
	vHR = 1 << iota
	vRR
	vTemp
	vHeight
	vWeight
	vBMI
	vBP
	vO2
)

// observe writes the Observations (and DiagnosticReports) of the current visit.
func (g *gen) observe() {
	p, v := &g.p, &g.v
	a := v.age
	growth := 0 // height, weight and BMI as far as they are measured at this age
	if a >= 2 {
		growth = vHeight | vWeight | vBMI
	} else {
		growth = vHeight | vWeight
	}
	bp := 0
	if a >= 3 {
		bp = vBP
	}
	switch v.kind {
	case kWellness:
		flags := vHR | growth | bp
		if g.chance(0.8) {
			flags |= vRR
		}
		if g.chance(0.15) {
			flags |= vTemp
		}
		if g.chance(0.15) {
			flags |= vO2
		}
		g.vitals(v.at(0.1), flags, false, false)
		if a >= 15 && g.chance(0.9) {
			g.smokingStatus(v.at(0.15))
		}
		if a >= 15 && g.chance(0.08) {
			g.socialNarrative(v.at(0.15))
		}
		if a >= 18 {
			if g.chance(0.15) {
				g.labPanel(&panelCMP, v.at(0.3))
			}
			if a >= 20 && g.chance(0.15) {
				g.labPanel(&panelLipid, v.at(0.3))
			}
			if g.chance(0.1) {
				g.labPanel(&panelCBC, v.at(0.3))
			}
			if g.chance(0.06) {
				g.labPanel(&panelUrinalysis, v.at(0.3))
			}
		}
		if (p.chronic[chDiabetes].diagnosed || p.chronic[chPrediabetes].diagnosed) && g.chance(0.7) {
			g.labPanel(&panelHbA1c, v.at(0.3))
		}
	case kSick:
		flags := vHR | vTemp
		if g.chance(0.6) {
			flags |= vRR
		}
		if g.chance(0.3) {
			flags |= vO2
		}
		if a >= 18 && g.chance(0.3) {
			flags |= bp
		}
		g.vitals(v.at(0.1), flags, v.reason.fever() && g.chance(0.6), false)
	case kFollowUp:
		flags := vHR | vWeight | bp
		g.vitals(v.at(0.1), flags, false, false)
		for _, pn := range chronicDefs[v.followUp].labs {
			if g.chance(0.5) {
				g.labPanel(pn, v.at(0.3))
			}
		}
	case kCheckUp:
		flags := vWeight | bp
		if g.chance(0.3) {
			flags |= vHR
		}
		g.vitals(v.at(0.1), flags, false, false)
	case kEmergency:
		g.vitals(v.at(0.05), vHR|vRR|vTemp|vO2|bp, v.reason.fever(), v.reason.hypoxic())
		for _, pn := range v.reason.labs {
			if g.chance(0.6) {
				g.labPanel(pn, v.at(0.2))
			}
		}
	case kInpatient:
		// Daily vitals for the first few days of the stay, labs on admission.
		for d := 0; d < 3; d++ {
			t := v.start.Add(time.Duration(d)*24*time.Hour + 2*time.Hour)
			if !t.Before(v.end) {
				break
			}
			g.vitals(t, vHR|vRR|vTemp|vO2|bp, d == 0 && v.reason.fever(), d < 2 && v.reason.hypoxic())
		}
		for _, pn := range v.reason.labs {
			g.labPanel(pn, minTime(v.start.Add(3*time.Hour), v.at(0.5)))
		}
	}
}

func (d *acuteDef) fever() bool {
	switch d.c.code {
	case "195662009", "43878008", "10509002", "444814009", "75498004", "65363002", "840539006", "233604007":
		return true
	}
	return false
}

func (d *acuteDef) hypoxic() bool { return d.c.code == "233604007" || d.c.code == "840539006" }

// obsStart writes an Observation up to and including its effective time. alt, if not nil,
// is a second coding of the same code (pulse oximetry is coded twice in US Core).
func (g *gen) obsStart(id *uuid, cat, code, alt *concept, t time.Time) {
	e := &g.e
	e.header(TypeObservation, id, 1, g.v.lu)
	e.field("status", "final")
	e.key("category")
	e.arr()
	e.obj()
	e.key("coding")
	e.arr()
	e.coding(cat)
	e.endArr()
	e.endObj()
	e.endArr()
	e.key("code")
	e.obj()
	e.key("coding")
	e.arr()
	e.coding(code)
	if alt != nil {
		e.coding(alt)
	}
	e.endArr()
	e.field("text", code.display)
	e.endObj()
	e.fieldRef("subject", TypePatient, &g.p.id, "")
	e.fieldRef("encounter", TypeEncounter, &g.v.id, "")
	e.fieldTime("effectiveDateTime", t)
	e.fieldTime("issued", t)
}

func (g *gen) quantityObs(cat, code, alt *concept, t time.Time, v float64, prec int, unit string) {
	id := newUUID(g.r)
	g.obsStart(&id, cat, code, alt, t)
	g.e.quantity("valueQuantity", v, prec, unit)
	g.e.endObj()
	g.write(TypeObservation)
}

// vitals writes the vital signs in flags, measured at t.
func (g *gen) vitals(t time.Time, flags int, fever, hypoxic bool) {
	p := &g.p
	a := p.ageAt(t)
	if flags&vHR != 0 {
		var hr float64
		switch {
		case a < 1:
			hr = g.normal(125, 10, 100, 160)
		case a < 12:
			hr = g.normal(95, 10, 70, 130)
		default:
			hr = g.normal(p.heartRate, 5, 45, 140)
		}
		if fever {
			hr += 12
		}
		g.quantityObs(&catVitals, &obsHeartRate, nil, t, hr, 0, "/min")
	}
	if flags&vRR != 0 {
		var rr float64
		switch {
		case a < 1:
			rr = g.normal(36, 5, 25, 55)
		case a < 12:
			rr = g.normal(22, 3, 16, 30)
		default:
			rr = g.normal(15, 2, 11, 22)
		}
		if hypoxic {
			rr += 6
		}
		g.quantityObs(&catVitals, &obsRespRate, nil, t, rr, 0, "/min")
	}
	if flags&vTemp != 0 {
		temp := g.normal(36.8, 0.25, 36, 37.4)
		if fever {
			temp = g.normal(38.4, 0.5, 37.8, 40.2)
		}
		g.quantityObs(&catVitals, &obsBodyTemp, nil, t, temp, 1, "Cel")
	}
	h := p.heightAt(a) + g.normal(0, 0.4, -1, 1)
	bmi := p.bmiAt(a) + g.normal(0, 0.4, -1, 1)
	if flags&vHeight != 0 {
		g.quantityObs(&catVitals, &obsHeight, nil, t, h, 1, "cm")
	}
	if flags&vWeight != 0 {
		g.quantityObs(&catVitals, &obsWeight, nil, t, bmi*h*h/1e4, 1, "kg")
	}
	if flags&vBMI != 0 {
		g.quantityObs(&catVitals, &obsBMI, nil, t, bmi, 1, "kg/m2")
	}
	if flags&vBP != 0 {
		sys := g.normal(102, 7, 85, 125)
		if a >= 18 {
			sys = p.systolic + g.normal(0, 6, -15, 15)
			if s := &p.chronic[chHypertension]; p.activeChronic(chHypertension, t) {
				if s.meds != 0 {
					sys += 10 // treated, not quite at target
				} else {
					sys += 28
				}
			}
		}
		dia := sys*0.63 + g.normal(0, 4, -10, 10)
		id := newUUID(g.r)
		g.obsStart(&id, &catVitals, &obsBPPanel, nil, t)
		e := &g.e
		e.key("component")
		e.arr()
		e.obj()
		e.fieldCodeable("code", &obsSystolic)
		e.quantity("valueQuantity", sys, 0, "mm[Hg]")
		e.endObj()
		e.obj()
		e.fieldCodeable("code", &obsDiastolic)
		e.quantity("valueQuantity", dia, 0, "mm[Hg]")
		e.endObj()
		e.endArr()
		e.endObj()
		g.write(TypeObservation)
	}
	if flags&vO2 != 0 {
		o2 := g.normal(97.6, 1, 94, 100)
		if hypoxic || p.activeChronic(chCOPD, t) {
			o2 = g.normal(91, 2, 84, 95)
		}
		g.quantityObs(&catVitals, &obsO2SatArt, &obsO2SatPulseO, t, o2, 0, "%")
	}
}

func (g *gen) smokingStatus(t time.Time) {
	status := g.p.smoking
	if g.p.ageAt(t) < 18 {
		status = &smokingNever
	}
	id := newUUID(g.r)
	g.obsStart(&id, &catSocial, &obsSmoking, nil, t)
	g.e.fieldCodeable("valueCodeableConcept", status)
	g.e.endObj()
	g.write(TypeObservation)
}

func (g *gen) socialNarrative(t time.Time) {
	id := newUUID(g.r)
	g.obsStart(&id, &catSocial, &obsSocialHistory, nil, t)
	g.e.field("valueString", *pick(g, socialNarratives))
	g.e.endObj()
	g.write(TypeObservation)
}

// labPanel writes the results of panel pn drawn at t and, for a real panel, the
// DiagnosticReport that lists them.
func (g *gen) labPanel(pn *panel, t time.Time) {
	e := &g.e
	g.labIDs = g.labIDs[:0]
	for _, test := range pn.tests {
		lt := &labTests[test]
		id := newUUID(g.r)
		g.labIDs = append(g.labIDs, id)
		g.obsStart(&id, &catLab, &lt.c, nil, t)
		switch test {
		case labUrineColor:
			e.field("valueString", *pick(g, urineColors))
		case labUrineAppearance:
			e.field("valueString", *pick(g, urineAppearances))
		default:
			e.quantity("valueQuantity", g.labValue(test, t), lt.prec, lt.unit)
			e.key("referenceRange")
			e.arr()
			e.obj()
			if lt.low > 0 {
				e.quantity("low", lt.low, lt.prec, lt.unit)
			}
			e.quantity("high", lt.high, lt.prec, lt.unit)
			e.endObj()
			e.endArr()
		}
		e.endObj()
		g.write(TypeObservation)
	}
	if pn.c.code == "" {
		return
	}
	id := newUUID(g.r)
	e.header(TypeDiagnosticReport, &id, 1, g.v.lu)
	e.field("status", "final")
	e.fieldCodeableList("category", &reportLab)
	e.fieldCodeable("code", &pn.c)
	e.fieldRef("subject", TypePatient, &g.p.id, "")
	e.fieldRef("encounter", TypeEncounter, &g.v.id, "")
	e.fieldTime("effectiveDateTime", t)
	e.fieldTime("issued", t)
	e.key("performer")
	e.arr()
	e.ref(TypeOrganization, &g.grp.orgID, g.grp.orgName)
	e.endArr()
	e.key("result")
	e.arr()
	for k := range g.labIDs {
		e.ref(TypeObservation, &g.labIDs[k], "")
	}
	e.endArr()
	e.endObj()
	g.write(TypeDiagnosticReport)
}

// labValue is a plausible result of test at t for the current patient.
func (g *gen) labValue(test int, t time.Time) float64 {
	p := &g.p
	switch test {
	case labGlucose:
		switch {
		case p.activeChronic(chDiabetes, t):
			return g.normal(155, 35, 90, 400)
		case p.activeChronic(chPrediabetes, t):
			return g.normal(108, 7, 95, 125)
		}
		return g.normal(88, 9, 65, 110)
	case labHbA1c:
		switch {
		case p.activeChronic(chDiabetes, t):
			return g.normal(7.6, 1, 6.5, 12)
		case p.activeChronic(chPrediabetes, t):
			return g.normal(6.0, 0.2, 5.7, 6.4)
		}
		return g.normal(5.3, 0.25, 4.3, 5.6)
	case labBUN:
		return g.normal(14, 4, 5, 40)
	case labCreatinine:
		if p.female {
			return g.normal(0.8, 0.15, 0.4, 2)
		}
		return g.normal(1.0, 0.18, 0.5, 2.5)
	case labCalcium:
		return g.normal(9.4, 0.35, 8, 11)
	case labSodium:
		return g.normal(140, 2.2, 130, 150)
	case labPotassium:
		return g.normal(4.2, 0.35, 3.2, 5.6)
	case labChloride:
		return g.normal(103, 2.5, 95, 112)
	case labCO2:
		return g.normal(25, 2, 19, 32)
	case labCholesterol:
		if p.activeChronic(chHyperlipidemia, t) {
			return g.normal(235, 30, 180, 340)
		}
		return g.normal(180, 25, 120, 240)
	case labTriglycerides:
		if p.activeChronic(chHyperlipidemia, t) {
			return g.normal(180, 55, 60, 500)
		}
		return g.normal(115, 40, 40, 300)
	case labLDL:
		if p.activeChronic(chHyperlipidemia, t) {
			return g.normal(155, 25, 100, 250)
		}
		return g.normal(100, 22, 50, 160)
	case labHDL:
		return g.normal(52, 12, 25, 95)
	case labWBC:
		if g.v.reason != nil && g.v.reason.fever() {
			return g.normal(13, 3, 8, 25)
		}
		return g.normal(7, 1.6, 3.5, 12)
	case labRBC:
		return g.normal(p.hemoglobin/3.0, 0.2, 3, 6.5)
	case labHemoglobin:
		if p.activeChronic(chAnemia, t) {
			return g.normal(10.2, 0.8, 7, 11.5)
		}
		return g.normal(p.hemoglobin, 0.4, 9, 19)
	case labHematocrit:
		return g.normal(p.hemoglobin*2.95, 1.2, 28, 56)
	case labPlatelets:
		return g.normal(255, 50, 120, 450)
	}
	return 0
}
