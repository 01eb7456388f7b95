package synth

import (
	"math"
	"slices"
	"time"
)

// patient is the per-patient state: who they are, their physiology and what is known
// about them so far. It is overwritten for each patient.
type patient struct {
	index   int
	id      uuid
	display string
	female  bool
	city    int
	zone    *time.Location
	birth   time.Time
	death   time.Time // zero while alive
	lifeEnd time.Time // death, or the export time
	pcp     int       // index of the primary-care practitioner in the group

	// Physiology: adult baselines that vitals and labs vary around.
	heightAdult, bmiAdult float64
	heartRate, systolic   float64
	hemoglobin            float64
	smoking               *concept

	chronic           [numChronic]chronicState
	vaccines          [numVaccines]vaccineState
	allergies         [3]int8 // indexes into allergies; -1 for none
	allergyOK         bool    // allergies have been recorded
	penicillinAllergy bool
}

type chronicState struct {
	has       bool
	onset     time.Time
	diagnosed bool
	condID    uuid
	meds      uint8 // bit i: chronicDefs[].meds[i] is prescribed
}

type vaccineState struct {
	doses int
	last  time.Time
}

const numVaccines = 15

var _ = [1]struct{}{}[len(vaccines)-numVaccines] // numVaccines must match the table

// activeChronic reports whether the patient has condition ch by time t, diagnosed or not.
func (p *patient) activeChronic(ch int, t time.Time) bool {
	s := &p.chronic[ch]
	return s.has && !s.onset.After(t)
}

func (p *patient) ageAt(t time.Time) float64 { return yearsBetween(p.birth, t) }

// patient generates and writes patient i and everything that happened to them.
func (g *gen) patient(i int) {
	reseed(&g.src, g.cfg.Seed, saltPatient, i)
	p := &g.p
	*p = patient{index: i}
	p.id = newUUID(g.r)
	p.female = g.chance(0.51)
	p.pcp = g.intn(PractitionersPerGroup)
	// Most patients live where their provider practises.
	p.city = g.grp.city
	if g.chance(0.15) {
		p.city = g.intn(len(cities))
	}
	p.zone = g.zones[p.city]

	if g.chance(0.10) {
		p.death = g.end.Add(-g.days(2, 12*365)).In(p.zone)
		p.birth = addYears(p.death, -g.normal(74, 13, 1, 104))
		p.lifeEnd = p.death
	} else {
		p.birth = addYears(g.end, -g.uniform(0.25, 92)).In(p.zone)
		p.lifeEnd = g.end.In(p.zone)
	}

	if p.female {
		p.heightAdult = g.normal(162, 6.5, 140, 190)
		p.hemoglobin = g.normal(13.5, 0.9, 10, 16)
	} else {
		p.heightAdult = g.normal(176, 7, 150, 205)
		p.hemoglobin = g.normal(15.0, 1.0, 11, 18)
	}
	p.bmiAdult = g.normal(28, 5.5, 17, 50)
	p.heartRate = g.normal(72, 8, 52, 100)
	p.systolic = g.normal(117, 9, 95, 135)
	switch r := g.r.Float64(); {
	case r < 0.60:
		p.smoking = &smokingNever
	case r < 0.85:
		p.smoking = &smokingEx
	default:
		p.smoking = &smokingCurrent
	}
	g.drawChronic()
	p.allergies = [3]int8{-1, -1, -1}
	if g.chance(0.2) {
		n := 1 + g.intn(3)
		for k := 0; k < n; k++ {
			a := int8(g.intn(len(allergies)))
			if slices.Contains(p.allergies[:], a) {
				continue
			}
			p.allergies[k] = a
			if a == allergyPenicillin {
				p.penicillinAllergy = true
			}
		}
	}

	given := g.givenName(p.female)
	family := *pick(g, familyNames)
	p.display = given + " " + family
	g.layout()
	g.writePatient(given, family)
	g.encounters()
}

// drawChronic decides which chronic conditions the patient will develop and when.
func (g *gen) drawChronic() {
	p := &g.p
	obese := p.bmiAdult >= 30
	for ch := range chronicDefs {
		d := &chronicDefs[ch]
		prev := d.prevalence
		switch ch {
		case chObesity:
			if obese {
				prev = 1
			}
		case chHypertension, chDiabetes:
			if obese {
				prev += 0.10
			}
		case chPrediabetes:
			if p.chronic[chDiabetes].has {
				prev = 0
			}
		case chCOPD:
			if p.smoking == &smokingNever {
				prev = 0
			}
		}
		if !g.chance(prev) {
			continue
		}
		s := &p.chronic[ch]
		s.has = true
		onset := g.uniform(d.onsetMin, d.onsetMax)
		if ch == chObesity {
			onset = 60 - (p.bmiAdult-30)/bmiDriftPerYear // when bmiAt crosses 30
			onset = math.Max(18, math.Min(60, onset))
		}
		s.onset = addYears(p.birth, onset)
	}
}

func (g *gen) writePatient(given, family string) {
	p := &g.p
	e := &g.e
	version := 1
	// The record was last touched at the last visit, or when the death was recorded.
	lu := p.birth
	switch {
	case !p.death.IsZero():
		lu = p.death
	case len(g.slots) > 0:
		lu = time.Unix(g.slots[len(g.slots)-1], 0)
	}
	lu = g.lastUpdated(lu)
	if g.chance(0.05) {
		version = 2 // a demographic correction after registration
	}
	e.header(TypePatient, &p.id, version, lu)

	// US Core race, ethnicity and birth sex.
	race := &races[len(races)-1].c
	r := g.r.Float64()
	acc := 0.0
	for k := range races {
		acc += races[k].weight
		if r < acc {
			race = &races[k].c
			break
		}
	}
	e.key("extension")
	e.arr()
	g.ombExtension("http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", race, nil)
	if g.chance(0.18) {
		g.ombExtension("http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", &ethHispanic, pick(g, ethDetailed))
	} else {
		g.ombExtension("http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", &ethNotHispanic, nil)
	}
	e.obj()
	e.field("url", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex")
	if p.female {
		e.field("valueCode", "F")
	} else {
		e.field("valueCode", "M")
	}
	e.endObj()
	e.endArr()

	e.key("identifier")
	e.arr()
	e.obj()
	e.fieldCodeable("type", &idTypeMRN)
	e.field("system", sysMRN)
	e.key("value")
	e.b = append(e.b, `"MRN`...)
	e.b = appendDigits(e.b, uint64(g.cfg.Seed%1000), 3)
	e.b = appendDigits(e.b, uint64(p.index), 8)
	e.b = append(e.b, '"')
	e.comma = true
	e.endObj()
	if p.ageAt(g.end) >= 1 || !p.death.IsZero() {
		// SSNs starting with 999 are never issued.
		e.obj()
		e.fieldCodeable("type", &idTypeSSN)
		e.field("system", sysSSN)
		e.key("value")
		e.b = append(e.b, `"999-`...)
		e.b = appendDigits(e.b, uint64(g.intn(100)), 2)
		e.b = append(e.b, '-')
		e.b = appendDigits(e.b, uint64(g.intn(10000)), 4)
		e.b = append(e.b, '"')
		e.comma = true
		e.endObj()
	}
	e.endArr()

	e.key("name")
	e.arr()
	e.obj()
	e.field("use", "official")
	e.field("family", family)
	e.key("given")
	e.arr()
	e.str(given)
	if g.chance(0.4) {
		e.str(g.givenName(p.female))
	}
	e.endArr()
	e.endObj()
	e.endArr()
	g.telecomPhone()
	e.field("gender", gender(p.female))
	e.fieldDate("birthDate", p.birth)
	if !p.death.IsZero() {
		e.fieldTime("deceasedDateTime", p.death)
	}
	g.address(p.city, true)
	if p.ageAt(p.lifeEnd) >= 18 {
		e.fieldCodeable("maritalStatus", pick(g, maritalStatuses))
	}
	e.key("communication")
	e.arr()
	e.obj()
	lang := &langEnglish
	if g.chance(0.08) {
		lang = &langSpanish
	}
	e.fieldCodeable("language", lang)
	e.endObj()
	e.endArr()
	e.endObj()
	g.write(TypePatient)
}

// ombExtension writes a US Core race or ethnicity extension: the OMB category, an
// optional detailed code and the text.
func (g *gen) ombExtension(url string, omb, detailed *concept) {
	e := &g.e
	e.obj()
	e.field("url", url)
	e.key("extension")
	e.arr()
	e.obj()
	e.field("url", "ombCategory")
	e.key("valueCoding")
	e.coding(omb)
	e.endObj()
	if detailed != nil {
		e.obj()
		e.field("url", "detailed")
		e.key("valueCoding")
		e.coding(detailed)
		e.endObj()
	}
	e.obj()
	e.field("url", "text")
	e.field("valueString", omb.display)
	e.endObj()
	e.endArr()
	e.endObj()
}

// heightAt is the body height in cm at age a, following an approximate growth curve to the
// adult height and losing a little after 60.
func (p *patient) heightAt(a float64) float64 {
	// Fraction of adult height by age, from CDC growth charts.
	ages := [...]float64{0, 1, 2, 5, 10, 14, 18}
	frac := [...]float64{0.29, 0.44, 0.51, 0.64, 0.80, 0.93, 1}
	if a >= 18 {
		return p.heightAdult - math.Max(0, a-60)*0.15
	}
	for k := 1; k < len(ages); k++ {
		if a < ages[k] {
			f := frac[k-1] + (frac[k]-frac[k-1])*(a-ages[k-1])/(ages[k]-ages[k-1])
			return p.heightAdult * f
		}
	}
	return p.heightAdult
}

const bmiDriftPerYear = 0.05

// bmiAt is the body mass index at age a: children's BMI runs from about 16 towards the
// adult value, which drifts up through middle age.
func (p *patient) bmiAt(a float64) float64 {
	switch {
	case a < 2:
		return 17
	case a < 18:
		return 16 + (math.Min(p.bmiAt(18), 26)-16)*(a-2)/16
	case a < 60:
		return p.bmiAdult - bmiDriftPerYear*(60-a)
	default:
		return p.bmiAdult
	}
}
