package synth

// Chronic conditions: each patient either has one (decided at birth, with an onset age) or
// not. It is diagnosed at the first wellness, follow-up or inpatient visit after onset,
// stays on the problem list, and brings long-term medication and monitoring labs.
type chronicDef struct {
	c                  concept
	prevalence         float64 // probability for a patient who lives past the onset age
	onsetMin, onsetMax float64 // years
	meds               []*medication
	labs               []*panel
	procs              []*concept
}

const (
	chHypertension = iota
	chHyperlipidemia
	chDiabetes
	chPrediabetes
	chObesity
	chAsthmaChild
	chAsthmaAdult
	chCOPD
	chCAD
	chOsteoarthritis
	chDepression
	chAnxiety
	chChronicSinusitis
	chAnemia
	numChronic
)

var chronicDefs = [numChronic]chronicDef{
	chHypertension: {snomed("38341003", "Hypertensive disorder, systemic arterial (disorder)"), 0.30, 30, 70,
		[]*medication{&medLisinopril, &medAmlodipine, &medHCTZ}, []*panel{&panelCMP}, nil},
	chHyperlipidemia: {snomed("55822004", "Hyperlipidemia (disorder)"), 0.28, 35, 70,
		[]*medication{&medAtorvastatin, &medSimvastatin}, []*panel{&panelLipid}, nil},
	chDiabetes: {snomed("44054006", "Diabetes mellitus type 2 (disorder)"), 0.11, 35, 70,
		[]*medication{&medMetformin, &medInsulin}, []*panel{&panelHbA1c, &panelCMP}, nil},
	chPrediabetes: {snomed("15777000", "Prediabetes (finding)"), 0.15, 30, 60,
		nil, []*panel{&panelHbA1c}, nil},
	// Obesity follows from the patient's BMI, not from a prevalence draw.
	chObesity: {snomed("162864005", "Body mass index 30+ - obesity (finding)"), 0, 18, 18,
		nil, nil, nil},
	chAsthmaChild: {snomed("233678006", "Childhood asthma (disorder)"), 0.07, 2, 12,
		[]*medication{&medAlbuterol, &medFluticasone}, nil, []*concept{&procSpirometry}},
	chAsthmaAdult: {snomed("195967001", "Asthma (disorder)"), 0.04, 18, 60,
		[]*medication{&medAlbuterol, &medFluticasone}, nil, []*concept{&procSpirometry}},
	// COPD is only drawn for patients who smoke or smoked.
	chCOPD: {snomed("13645005", "Chronic obstructive lung disease (disorder)"), 0.15, 45, 75,
		[]*medication{&medAlbuterol}, nil, []*concept{&procSpirometry, &procChestXRay}},
	chCAD: {snomed("53741008", "Coronary arteriosclerosis (disorder)"), 0.07, 50, 80,
		[]*medication{&medAspirin, &medClopidogrel, &medNitroglycerin}, []*panel{&panelLipid}, []*concept{&procECG, &procEchocardiogram}},
	chOsteoarthritis: {snomed("239873007", "Osteoarthritis of knee (disorder)"), 0.12, 45, 80,
		[]*medication{&medNaproxen, &medAcetaminophen}, nil, nil},
	chDepression: {snomed("35489007", "Depressive disorder (disorder)"), 0.10, 15, 60,
		nil, nil, []*concept{&procDepressionScr}},
	chAnxiety: {snomed("197480006", "Anxiety disorder (disorder)"), 0.10, 12, 50,
		nil, nil, nil},
	chChronicSinusitis: {snomed("40055000", "Chronic sinusitis (disorder)"), 0.03, 20, 60,
		nil, nil, nil},
	chAnemia: {snomed("271737000", "Anemia (disorder)"), 0.05, 1, 80,
		nil, []*panel{&panelCBC}, nil},
}

// Acute problems: the reason for a sick, emergency or inpatient visit. Each becomes a
// Condition that resolves after a few days or weeks.
type acuteDef struct {
	c              concept
	weight         float64
	minAge, maxAge float64
	since          int // first calendar year it can occur (COVID-19), 0 if always
	days           [2]int
	meds           []*medication // one is picked; antibiotics switch for penicillin allergy
	medP           float64
	proc           *concept
	procP          float64
	labs           []*panel
}

var (
	sickReasons = []acuteDef{
		{c: snomed("195662009", "Acute viral pharyngitis (disorder)"), weight: 20, maxAge: 200, days: [2]int{5, 10},
			meds: []*medication{&medIbuprofen, &medAcetaminophen}, medP: 0.5, proc: &procThroatCulture, procP: 0.5},
		{c: snomed("43878008", "Streptococcal sore throat (disorder)"), weight: 8, maxAge: 200, days: [2]int{7, 12},
			meds: []*medication{&medPenicillinV, &medAmoxicillin}, medP: 0.95, proc: &procThroatCulture, procP: 0.9},
		{c: snomed("10509002", "Acute bronchitis (disorder)"), weight: 15, maxAge: 200, days: [2]int{10, 21},
			meds: []*medication{&medAcetaminophen}, medP: 0.5, proc: &procChestXRay, procP: 0.2},
		{c: snomed("444814009", "Viral sinusitis (disorder)"), weight: 25, maxAge: 200, days: [2]int{7, 14},
			meds: []*medication{&medAcetaminophen, &medIbuprofen}, medP: 0.3},
		{c: snomed("75498004", "Acute bacterial sinusitis (disorder)"), weight: 5, maxAge: 200, days: [2]int{10, 21},
			meds: []*medication{&medAmoxClav}, medP: 0.9},
		{c: snomed("65363002", "Otitis media (disorder)"), weight: 12, maxAge: 12, days: [2]int{5, 14},
			meds: []*medication{&medAmoxicillin}, medP: 0.8},
		{c: snomed("840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2 (disorder)"), weight: 10, maxAge: 200, since: 2020, days: [2]int{7, 21},
			meds: []*medication{&medAcetaminophen}, medP: 0.6},
		{c: snomed("44465007", "Sprain of ankle (disorder)"), weight: 5, minAge: 5, maxAge: 200, days: [2]int{14, 42},
			meds: []*medication{&medIbuprofen, &medNaproxen}, medP: 0.7},
	}
	emergencyReasons = []acuteDef{
		{c: snomed("29857009", "Chest pain (finding)"), weight: 20, minAge: 25, maxAge: 200, days: [2]int{1, 3},
			proc: &procECG, procP: 0.95, labs: []*panel{&panelCBC, &panelCMP}},
		{c: snomed("370247008", "Facial laceration (disorder)"), weight: 15, maxAge: 200, days: [2]int{10, 21},
			proc: &procSuture, procP: 0.9},
		{c: snomed("44465007", "Sprain of ankle (disorder)"), weight: 20, minAge: 5, maxAge: 200, days: [2]int{14, 42},
			meds: []*medication{&medIbuprofen, &medNaproxen}, medP: 0.8},
		{c: snomed("62106007", "Concussion with no loss of consciousness (disorder)"), weight: 10, maxAge: 200, days: [2]int{7, 28},
			meds: []*medication{&medAcetaminophen}, medP: 0.5},
		{c: snomed("10509002", "Acute bronchitis (disorder)"), weight: 15, maxAge: 200, days: [2]int{10, 21},
			proc: &procChestXRay, procP: 0.6, labs: []*panel{&panelCBC}},
		{c: snomed("233604007", "Pneumonia (disorder)"), weight: 10, maxAge: 200, days: [2]int{14, 28},
			meds: []*medication{&medAmoxClav, &medAzithromycin}, medP: 0.9, proc: &procChestXRay, procP: 0.9, labs: []*panel{&panelCBC}},
	}
	inpatientReasons = []acuteDef{
		{c: snomed("233604007", "Pneumonia (disorder)"), weight: 40, maxAge: 200, days: [2]int{14, 28},
			meds: []*medication{&medAmoxClav, &medAzithromycin}, medP: 1, proc: &procChestXRay, procP: 1, labs: []*panel{&panelCBC, &panelCMP}},
		{c: snomed("74400008", "Appendicitis (disorder)"), weight: 25, minAge: 5, maxAge: 80, days: [2]int{14, 28},
			meds: []*medication{&medAcetaminophen}, medP: 0.8, proc: &procAppendectomy, procP: 1, labs: []*panel{&panelCBC}},
		{c: snomed("22298006", "Myocardial infarction (disorder)"), weight: 35, minAge: 40, maxAge: 200, days: [2]int{30, 60},
			meds: []*medication{&medAspirin, &medClopidogrel}, medP: 1, proc: &procPCI, procP: 0.8, labs: []*panel{&panelCBC, &panelCMP, &panelLipid}},
	}
)
