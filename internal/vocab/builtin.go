package vocab

import (
	"bytes"
	_ "embed"
	"fmt"
	"sync"
)

// Fixed concept ids the mapper writes without consulting a vocabulary: concepts of
// OMOP's own small vocabularies (Gender, Race, Ethnicity, Visit, Type Concept, Meas Value
// Operator) whose ids do not change between Athena releases. Each is checked against
// public sources (listed in docs/omop-mapping.md); TestBuiltinConceptsVerified compares
// them, and builtin_concepts.tsv, with testdata/builtin_concepts_verified.tsv.
const (
	NoMatchingConcept int32 = 0

	GenderMale   int32 = 8507
	GenderFemale int32 = 8532

	RaceAIAN  int32 = 8657 // American Indian or Alaska Native
	RaceAsian int32 = 8515
	RaceBlack int32 = 8516 // Black or African American
	RaceNHPI  int32 = 8557 // Native Hawaiian or Other Pacific Islander
	RaceWhite int32 = 8527

	EthnicityHispanic    int32 = 38003563
	EthnicityNotHispanic int32 = 38003564

	VisitInpatient          int32 = 9201
	VisitOutpatient         int32 = 9202
	VisitEmergency          int32 = 9203
	VisitEmergencyInpatient int32 = 262
	VisitHome               int32 = 581476
	VisitTelehealth         int32 = 5083

	TypeEHR               int32 = 32817
	TypeEHRAdministration int32 = 32818
	TypeEHRPrescription   int32 = 32838
	TypePatientReported   int32 = 32865
	// TypeEHRPeriod ("Standard algorithm from EHR") is the period type OHDSI's
	// ETL-Synthea gives observation periods derived from the span of EHR encounters.
	TypeEHRPeriod int32 = 32882

	OperatorLess         int32 = 4171756
	OperatorLessEqual    int32 = 4171754
	OperatorEqual        int32 = 4172703
	OperatorGreaterEqual int32 = 4171755
	OperatorGreater      int32 = 4172704
)

// CDCRaceSystem is the code system of the US Core race and ethnicity extensions (CDC Race
// & Ethnicity, OID 2.16.840.1.113883.6.238).
const CDCRaceSystem = "urn:oid:2.16.840.1.113883.6.238"

// RaceConcepts maps the five OMB race categories of the US Core race extension
// (ombCategory, CDC codes) to OMOP Race concepts, as the HL7 FHIR-to-OMOP IG does. Other
// codes (detailed codes, ASKU/UNK, and 2131-1 "Other Race", which the IG sends to 8522)
// map to 0: the CDM asks for 0 when no clear race is known.
var RaceConcepts = map[string]int32{
	"1002-5": RaceAIAN,
	"2028-9": RaceAsian,
	"2054-5": RaceBlack,
	"2076-8": RaceNHPI,
	"2106-3": RaceWhite,
}

// EthnicityConcepts maps the two OMB ethnicity categories of the US Core ethnicity
// extension to OMOP Ethnicity concepts.
var EthnicityConcepts = map[string]int32{
	"2135-2": EthnicityHispanic,
	"2186-5": EthnicityNotHispanic,
}

// GenderConcepts maps FHIR administrative gender (Patient.gender) to OMOP Gender
// concepts. "other" and "unknown" map to 0, as OHDSI's conventions (Themis) ask: the
// Gender domain's standard concepts are only male and female, and 8551 UNKNOWN is not
// standard, so a Data Quality Dashboard run would flag it. gender_source_value keeps
// what the source said.
var GenderConcepts = map[string]int32{
	"male":   GenderMale,
	"female": GenderFemale,
}

// VisitConcepts maps HL7 v3 ActEncounterCode (Encounter.class) to OMOP Visit concepts,
// as the HL7 FHIR-to-OMOP IG does.
var VisitConcepts = map[string]int32{
	"AMB":    VisitOutpatient,
	"EMER":   VisitEmergency,
	"IMP":    VisitInpatient,
	"ACUTE":  VisitInpatient,
	"NONAC":  VisitInpatient,
	"PRENC":  VisitOutpatient, // pre-admission: seen as an outpatient
	"SS":     VisitOutpatient, // short stay (day surgery) is outpatient in OMOP
	"OBSENC": VisitOutpatient, // observation stays are outpatient by OHDSI convention
	"HH":     VisitHome,
	"VR":     VisitTelehealth,
	"FLD":    VisitOutpatient,
}

// ComparatorConcepts maps Quantity.comparator to OMOP Meas Value Operator concepts.
var ComparatorConcepts = map[string]int32{
	"<":  OperatorLess,
	"<=": OperatorLessEqual,
	">=": OperatorGreaterEqual,
	">":  OperatorGreater,
}

//go:embed builtin_concepts.tsv
var builtinTSV []byte

var builtin = sync.OnceValues(func() (*Vocabulary, error) {
	v, _, err := LoadFrom(bytes.NewReader(builtinTSV), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("built-in concepts: %w", err)
	}
	return v, nil
})

// Builtin returns the built-in vocabulary: the fixed concepts above plus the UCUM units
// and LOINC codes of the common vital signs, in Athena form, so that vital signs map to
// standard concepts and route by domain even without an Athena release. It is shared
// and immutable.
func Builtin() *Vocabulary {
	v, err := builtin()
	if err != nil {
		// The table is embedded and covered by tests; failing here is a build defect.
		panic(err)
	}
	return v
}
