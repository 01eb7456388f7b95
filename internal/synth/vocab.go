package synth

// The code tables the generator draws from. Codes and displays are the ones Synthea and US
// Core use, so that the OMOP mapper meets the same vocabulary as in a real export.

func loinc(code, display string) concept  { return concept{sysLOINC, code, display} }
func snomed(code, display string) concept { return concept{sysSNOMED, code, display} }
func rxnorm(code, display string) concept { return concept{sysRxNorm, code, display} }
func cvx(code, display string) concept    { return concept{sysCVX, code, display} }

// Observation categories.
var (
	catVitals = concept{sysObsCategory, "vital-signs", "Vital Signs"}
	catLab    = concept{sysObsCategory, "laboratory", "Laboratory"}
	catSocial = concept{sysObsCategory, "social-history", "Social History"}
)

// Vital signs.
var (
	obsHeartRate   = loinc("8867-4", "Heart rate")
	obsRespRate    = loinc("9279-1", "Respiratory rate")
	obsBodyTemp    = loinc("8310-5", "Body temperature")
	obsHeight      = loinc("8302-2", "Body height")
	obsWeight      = loinc("29463-7", "Body weight")
	obsBMI         = loinc("39156-5", "Body mass index (BMI) [Ratio]")
	obsBPPanel     = loinc("85354-9", "Blood pressure panel with all children optional")
	obsSystolic    = loinc("8480-6", "Systolic blood pressure")
	obsDiastolic   = loinc("8462-4", "Diastolic blood pressure")
	obsO2SatArt    = loinc("2708-6", "Oxygen saturation in Arterial blood")
	obsO2SatPulseO = loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")
)

// Social history.
var (
	obsSmoking       = loinc("72166-2", "Tobacco smoking status")
	obsSocialHistory = loinc("29762-2", "Social history Narrative")

	smokingNever   = snomed("266919005", "Never smoker")
	smokingEx      = snomed("8517006", "Ex-smoker")
	smokingCurrent = snomed("449868002", "Current every day smoker")
)

// socialNarratives are the free-text social histories a clinician types in (valueString).
var socialNarratives = []string{
	"Lives with spouse. Works full time. Exercises twice a week.",
	"Lives alone. Retired. Drinks alcohol socially.",
	"Lives with parents. Student. No alcohol or drug use.",
	"Married, two children. Office job. Walks daily.",
	"Lives with partner. Night-shift worker. Occasional alcohol.",
	"Widowed. Lives in assisted living. Uses a walker.",
}

// Lab tests. Each is a LOINC code with its UCUM unit, the decimals the analyser reports,
// and a reference range.
type labTest struct {
	c         concept
	unit      string
	prec      int
	low, high float64
}

const (
	labGlucose = iota
	labBUN
	labCreatinine
	labCalcium
	labSodium
	labPotassium
	labChloride
	labCO2
	labCholesterol
	labTriglycerides
	labLDL
	labHDL
	labWBC
	labRBC
	labHemoglobin
	labHematocrit
	labPlatelets
	labHbA1c
	labUrineColor
	labUrineAppearance
	numLabs
)

var labTests = [numLabs]labTest{
	labGlucose:         {loinc("2339-0", "Glucose [Mass/volume] in Blood"), "mg/dL", 1, 70, 99},
	labBUN:             {loinc("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma"), "mg/dL", 1, 7, 20},
	labCreatinine:      {loinc("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"), "mg/dL", 2, 0.6, 1.3},
	labCalcium:         {loinc("17861-6", "Calcium [Mass/volume] in Serum or Plasma"), "mg/dL", 1, 8.5, 10.2},
	labSodium:          {loinc("2951-2", "Sodium [Moles/volume] in Serum or Plasma"), "mmol/L", 0, 136, 145},
	labPotassium:       {loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma"), "mmol/L", 1, 3.5, 5.1},
	labChloride:        {loinc("2075-0", "Chloride [Moles/volume] in Serum or Plasma"), "mmol/L", 0, 98, 107},
	labCO2:             {loinc("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma"), "mmol/L", 0, 22, 29},
	labCholesterol:     {loinc("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"), "mg/dL", 0, 0, 200},
	labTriglycerides:   {loinc("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma"), "mg/dL", 0, 0, 150},
	labLDL:             {loinc("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay"), "mg/dL", 0, 0, 100},
	labHDL:             {loinc("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"), "mg/dL", 0, 40, 100},
	labWBC:             {loinc("6690-2", "Leukocytes [#/volume] in Blood by Automated count"), "10*3/uL", 1, 4.5, 11},
	labRBC:             {loinc("789-8", "Erythrocytes [#/volume] in Blood by Automated count"), "10*6/uL", 2, 4.2, 5.9},
	labHemoglobin:      {loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), "g/dL", 1, 12, 17.5},
	labHematocrit:      {loinc("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count"), "%", 1, 36, 52},
	labPlatelets:       {loinc("777-3", "Platelets [#/volume] in Blood by Automated count"), "10*3/uL", 0, 150, 400},
	labHbA1c:           {loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), "%", 1, 4, 5.6},
	labUrineColor:      {c: loinc("5778-6", "Color of Urine")},
	labUrineAppearance: {c: loinc("5767-9", "Appearance of Urine")},
}

// panel is a lab order: its results become Observations and one DiagnosticReport.
type panel struct {
	c     concept
	tests []int
}

var (
	panelCMP = panel{loinc("24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
		[]int{labGlucose, labBUN, labCreatinine, labCalcium, labSodium, labPotassium, labChloride, labCO2}}
	panelLipid = panel{loinc("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
		[]int{labCholesterol, labTriglycerides, labLDL, labHDL}}
	panelCBC = panel{loinc("58410-2", "CBC panel - Blood by Automated count"),
		[]int{labWBC, labRBC, labHemoglobin, labHematocrit, labPlatelets}}
	panelUrinalysis = panel{loinc("24357-6", "Urinalysis macro (dipstick) panel - Urine"),
		[]int{labUrineColor, labUrineAppearance}}
	// panelHbA1c is a single test ordered alone; it gets no DiagnosticReport, as in Synthea.
	panelHbA1c = panel{tests: []int{labHbA1c}}
)

var (
	urineColors      = []string{"yellow", "yellow", "yellow", "straw", "amber", "dark yellow"}
	urineAppearances = []string{"clear", "clear", "clear", "slightly cloudy", "cloudy"}
)

// Encounter classes and types.
var (
	classAMB  = concept{sysActCode, "AMB", "ambulatory"}
	classEMER = concept{sysActCode, "EMER", "emergency"}
	classIMP  = concept{sysActCode, "IMP", "inpatient encounter"}

	typeGeneralExam    = snomed("162673000", "General examination of patient (procedure)")
	typeWellChild      = snomed("410620009", "Well child visit (procedure)")
	typeSymptom        = snomed("185345009", "Encounter for symptom (procedure)")
	typeFollowUp       = snomed("390906007", "Follow-up encounter (procedure)")
	typeCheckUp        = snomed("185349003", "Encounter for check up (procedure)")
	typeEmergency      = snomed("50849002", "Emergency room admission (procedure)")
	typeAdmission      = snomed("32485007", "Hospital admission (procedure)")
	typeEmergencyAdm   = snomed("183452005", "Emergency hospital admission (procedure)")
	participantPrimary = concept{"http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer"}

	admitEmergency = concept{"http://terminology.hl7.org/CodeSystem/admit-source", "emd", "From accident/emergency department"}
	admitGP        = concept{"http://terminology.hl7.org/CodeSystem/admit-source", "gp", "General Practitioner referral"}
	dischargeHome  = concept{"http://terminology.hl7.org/CodeSystem/discharge-disposition", "home", "Home"}
	dischargeSNF   = concept{"http://terminology.hl7.org/CodeSystem/discharge-disposition", "snf", "Skilled nursing facility"}
	dischargeRehab = concept{"http://terminology.hl7.org/CodeSystem/discharge-disposition", "rehab", "Rehabilitation"}
	dischargeDied  = concept{"http://terminology.hl7.org/CodeSystem/discharge-disposition", "exp", "Expired"}
)

// Status codings of Condition and AllergyIntolerance.
var (
	condActive    = concept{"http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"}
	condResolved  = concept{"http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved", "Resolved"}
	condConfirmed = concept{"http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"}
	condEncDx     = concept{"http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis"}
	condProblem   = concept{"http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item"}

	allergyActive    = concept{"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"}
	allergyConfirmed = concept{"http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"}

	reportLab = concept{"http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory"}
)

// Medications (RxNorm clinical drugs) with the dosage a prescriber would write.
type medication struct {
	c        concept
	text     string
	perDay   int // administrations per day
	asNeeded bool
	days     int // supply of an acute course; 0 for long-term medication
}

var (
	medLisinopril    = medication{rxnorm("314076", "lisinopril 10 MG Oral Tablet"), "Take 1 tablet by mouth once daily", 1, false, 0}
	medAmlodipine    = medication{rxnorm("197361", "amlodipine 5 MG Oral Tablet"), "Take 1 tablet by mouth once daily", 1, false, 0}
	medHCTZ          = medication{rxnorm("310798", "hydrochlorothiazide 25 MG Oral Tablet"), "Take 1 tablet by mouth every morning", 1, false, 0}
	medMetformin     = medication{rxnorm("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"), "Take 1 tablet by mouth with the evening meal", 1, false, 0}
	medInsulin       = medication{rxnorm("106892", "insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension"), "Inject 20 units subcutaneously twice daily before meals", 2, false, 0}
	medAtorvastatin  = medication{rxnorm("617314", "atorvastatin 10 MG Oral Tablet"), "Take 1 tablet by mouth at bedtime", 1, false, 0}
	medSimvastatin   = medication{rxnorm("312961", "simvastatin 20 MG Oral Tablet"), "Take 1 tablet by mouth at bedtime", 1, false, 0}
	medAlbuterol     = medication{rxnorm("745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"), "Inhale 2 puffs every 4 to 6 hours as needed for wheezing", 4, true, 0}
	medFluticasone   = medication{rxnorm("895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"), "Inhale 2 puffs twice daily", 2, false, 0}
	medAspirin       = medication{rxnorm("243670", "aspirin 81 MG Oral Tablet"), "Take 1 tablet by mouth once daily", 1, false, 0}
	medClopidogrel   = medication{rxnorm("309362", "clopidogrel 75 MG Oral Tablet"), "Take 1 tablet by mouth once daily", 1, false, 0}
	medNitroglycerin = medication{rxnorm("705129", "nitroglycerin 0.4 MG/ACTUAT Mucosal Spray"), "1 spray under the tongue as needed for chest pain", 3, true, 0}
	medIbuprofen     = medication{rxnorm("310965", "ibuprofen 200 MG Oral Tablet"), "Take 2 tablets by mouth every 6 hours as needed for pain", 4, true, 7}
	medNaproxen      = medication{rxnorm("849574", "naproxen sodium 220 MG Oral Tablet"), "Take 1 tablet by mouth every 12 hours as needed for pain", 2, true, 10}
	medAcetaminophen = medication{rxnorm("313782", "acetaminophen 325 MG Oral Tablet"), "Take 2 tablets by mouth every 6 hours as needed for fever or pain", 4, true, 7}
	medAmoxicillin   = medication{rxnorm("308182", "amoxicillin 250 MG Oral Capsule"), "Take 2 capsules by mouth three times daily for 10 days", 3, false, 10}
	medAmoxClav      = medication{rxnorm("562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet"), "Take 1 tablet by mouth every 8 hours for 7 days", 3, false, 7}
	medPenicillinV   = medication{rxnorm("834061", "penicillin V potassium 250 MG Oral Tablet"), "Take 2 tablets by mouth twice daily for 10 days", 2, false, 10}
	medAzithromycin  = medication{rxnorm("308460", "azithromycin 250 MG Oral Tablet"), "Take 2 tablets on day 1, then 1 tablet daily for 4 days", 1, false, 5}
)

// Procedures.
var (
	procAssessment     = snomed("710824005", "Assessment of health and social care needs (procedure)")
	procDepressionScr  = snomed("171207006", "Depression screening (procedure)")
	procMedRecon       = snomed("430193006", "Medication reconciliation (procedure)")
	procColonoscopy    = snomed("73761001", "Colonoscopy (procedure)")
	procMammography    = snomed("71651007", "Mammography (procedure)")
	procThroatCulture  = snomed("117015009", "Throat culture (procedure)")
	procSpirometry     = snomed("127783003", "Spirometry (procedure)")
	procChestXRay      = snomed("399208008", "Plain chest X-ray (procedure)")
	procECG            = snomed("29303009", "Electrocardiographic procedure (procedure)")
	procSuture         = snomed("288086009", "Suture open wound (procedure)")
	procAppendectomy   = snomed("80146002", "Appendectomy (procedure)")
	procPCI            = snomed("415070008", "Percutaneous coronary intervention (procedure)")
	procEchocardiogram = snomed("433236007", "Transthoracic echocardiography (procedure)")
)

// Vaccines (CVX) and the schedule they are given on at wellness visits.
type vaccine struct {
	c              concept
	minAge, maxAge float64 // years
	doses          int     // lifetime doses; 0 means repeated every interval for life
	intervalDays   int     // minimum days between doses
	since          int     // first calendar year the vaccine existed, 0 if always
}

var vaccines = []vaccine{
	{cvx("08", "Hep B, adolescent or pediatric"), 0, 1.5, 3, 28, 0},
	{cvx("20", "DTaP"), 0.15, 6.5, 5, 28, 0},
	{cvx("10", "IPV"), 0.15, 6.5, 4, 28, 0},
	{cvx("133", "Pneumococcal conjugate PCV 13"), 0.15, 1.5, 4, 28, 2010},
	{cvx("03", "MMR"), 1, 6.5, 2, 28, 0},
	{cvx("21", "varicella"), 1, 6.5, 2, 90, 1995},
	{cvx("83", "Hep A, ped/adol, 2 dose"), 1, 2.5, 2, 180, 1996},
	{cvx("115", "Tdap"), 11, 13, 1, 0, 2005},
	{cvx("62", "HPV, quadrivalent"), 11, 14, 2, 180, 2006},
	{cvx("114", "meningococcal MCV4P"), 11, 17, 2, 1500, 2005},
	{cvx("113", "Td (adult) preservative free"), 19, 200, 0, 3650, 0},
	{cvx("140", "Influenza, seasonal, injectable, preservative free"), 0.5, 200, 0, 300, 0},
	{cvx("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"), 12, 200, 3, 21, 2021},
	{cvx("187", "zoster vaccine recombinant"), 50, 200, 2, 60, 2018},
	{cvx("33", "pneumococcal polysaccharide vaccine, 23 valent"), 65, 200, 1, 0, 0},
}

// Allergies (SNOMED CT findings) with their AllergyIntolerance.category.
type allergy struct {
	c        concept
	category string
}

var allergies = []allergy{
	{snomed("91936005", "Allergy to penicillin"), "medication"},
	{snomed("300913006", "Shellfish allergy"), "food"},
	{snomed("91935009", "Allergy to peanuts"), "food"},
	{snomed("91934008", "Allergy to nut"), "food"},
	{snomed("417532002", "Allergy to fish"), "food"},
	{snomed("425525006", "Allergy to dairy product"), "food"},
	{snomed("714035009", "Allergy to soya"), "food"},
	{snomed("232347008", "Dander (animal) allergy"), "environment"},
	{snomed("418689008", "Allergy to grass pollen"), "environment"},
	{snomed("419474003", "Allergy to mould"), "environment"},
	{snomed("232350006", "House dust mite allergy"), "environment"},
	{snomed("300916003", "Latex allergy"), "environment"},
}

const allergyPenicillin = 0 // index in allergies: steers antibiotic choice

// Patient demographics.
var (
	races = []struct {
		c      concept
		weight float64
	}{
		{concept{sysCDCRace, "2106-3", "White"}, 0.72},
		{concept{sysCDCRace, "2054-5", "Black or African American"}, 0.13},
		{concept{sysCDCRace, "2028-9", "Asian"}, 0.06},
		{concept{sysCDCRace, "1002-5", "American Indian or Alaska Native"}, 0.01},
		{concept{sysCDCRace, "2076-8", "Native Hawaiian or Other Pacific Islander"}, 0.005},
		{concept{sysCDCRace, "2131-1", "Other Race"}, 0.075},
	}
	ethHispanic    = concept{sysCDCRace, "2135-2", "Hispanic or Latino"}
	ethNotHispanic = concept{sysCDCRace, "2186-5", "Not Hispanic or Latino"}
	// Detailed ethnicity codes under 2135-2.
	ethDetailed = []concept{
		{sysCDCRace, "2148-5", "Mexican"},
		{sysCDCRace, "2180-8", "Puerto Rican"},
		{sysCDCRace, "2182-4", "Cuban"},
		{sysCDCRace, "2155-0", "Central American"},
	}

	maritalStatuses = []concept{
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"},
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "S", "Never Married"},
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "D", "Divorced"},
		{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "W", "Widowed"},
	}
	langEnglish = concept{"urn:ietf:bcp:47", "en-US", "English (United States)"}
	langSpanish = concept{"urn:ietf:bcp:47", "es", "Spanish"}

	idTypeMRN       = concept{sysV20203, "MR", "Medical Record Number"}
	idTypeSSN       = concept{sysV20203, "SS", "Social Security Number"}
	orgTypeProvider = concept{"http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider"}
)
