package vocab

import "strings"

// systemVocabularies maps FHIR code system URIs to OMOP vocabulary_id values. The URIs
// are those FHIR R4, US Core and terminology.hl7.org publish; the vocabulary ids are
// Athena's.
var systemVocabularies = map[string]string{
	"http://loinc.org":                                               "LOINC",
	"http://snomed.info/sct":                                         "SNOMED",
	"http://www.nlm.nih.gov/research/umls/rxnorm":                    "RxNorm",
	"http://hl7.org/fhir/sid/cvx":                                    "CVX",
	"http://unitsofmeasure.org":                                      "UCUM",
	"http://hl7.org/fhir/sid/icd-10-cm":                              "ICD10CM",
	"http://hl7.org/fhir/sid/icd-10":                                 "ICD10",
	"http://hl7.org/fhir/sid/icd-9-cm":                               "ICD9CM",
	"http://www.ama-assn.org/go/cpt":                                 "CPT4",
	"http://hl7.org/fhir/sid/ndc":                                    "NDC",
	"https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets":       "HCPCS",
	"http://www.cms.gov/Medicare/Coding/ICD10":                       "ICD10PCS",
	"http://www.whocc.no/atc":                                        "ATC",
	"urn:oid:2.16.840.1.113883.6.238":                                "CDC race", // not an Athena vocabulary; built-in race/ethnicity tables decide
	"http://terminology.hl7.org/CodeSystem/v3-ActCode":               "ActCode",
	"http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration": "HL7 route",
	"http://nucc.org/provider-taxonomy":                              "NUCC",
}

// SystemVocabulary returns the OMOP vocabulary_id of a FHIR code system URI. Version
// suffixes ("|2.74") and trailing slashes are ignored. ok is false for systems OMOP has no
// vocabulary for; callers may still find such codes in SOURCE_TO_CONCEPT_MAP rows whose
// source_vocabulary_id is the system URI itself.
func SystemVocabulary(system string) (vocabularyID string, ok bool) {
	if v, ok := systemVocabularies[system]; ok {
		return v, true
	}
	s, _, _ := strings.Cut(system, "|")
	s = strings.TrimSuffix(s, "/")
	if strings.HasPrefix(s, "https://") {
		if v, ok := systemVocabularies["http://"+s[len("https://"):]]; ok {
			return v, true
		}
	}
	v, ok := systemVocabularies[s]
	return v, ok
}
