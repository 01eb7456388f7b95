package omop

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// wall is the wall-clock reading of a FHIR dateTime in its own offset, as the CDM's
// datetime columns hold it (decoded as that reading in UTC).
func wall(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	return time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), time.UTC)
}

func instant(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// want is an expected row: its table and the columns checked (all columns given are
// compared exactly; envelope columns are checked separately).
type want struct {
	table string
	cols  map[string]any
}

type golden struct {
	name  string
	key   string
	json  string
	vocab bool // map with testdata/vocab loaded
	rows  []want
	// reject, when set, is the expected rejection class and path.
	reject, path string
}

var patientJSON = `{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"2024-05-01T10:00:00Z"},
 "extension":[
  {"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2054-5","display":"Black or African American"}},{"url":"text","valueString":"Black"}]},
  {"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2135-2"}}]}],
 "gender":"female","birthDate":"1970-03-15",
 "address":[{"use":"old","line":["1 Old St"],"city":"Gone","state":"MA","period":{"end":"2000-01-01"}},
            {"use":"home","line":["10 Main St","Apt 2"],"city":"Boston","state":"Massachusetts","postalCode":"02135-1234","district":"Suffolk","country":"US"}],
 "generalPractitioner":[{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999974493"}],
 "managingOrganization":{"reference":"Organization?identifier=https://github.com/synthetichealth/synthea|org-1"},
 "deceasedDateTime":"2020-07-04T08:30:00-04:00"}`

func goldens() []golden {
	p1 := ID("Patient/p1")
	e1 := ID("Encounter/e1")
	return []golden{
		{name: "patient, deceased, race, ethnicity, address, conditional references", key: "Patient/p1", json: patientJSON, rows: []want{
			{"location", map[string]any{"location_id": ID("Patient/p1#address"), "address_1": "10 Main St", "address_2": "Apt 2",
				"city": "Boston", "state": "MA", "zip": "021351234", "county": "Suffolk", "country_source_value": "US", "latitude": nil}},
			{"person", map[string]any{"person_id": p1, "gender_concept_id": vocab.GenderFemale, "year_of_birth": int32(1970),
				"month_of_birth": int32(3), "day_of_birth": int32(15), "birth_datetime": day(1970, 3, 15),
				"race_concept_id": vocab.RaceBlack, "race_source_value": "2054-5",
				"ethnicity_concept_id": vocab.EthnicityHispanic, "ethnicity_source_value": "2135-2",
				"location_id":  ID("Patient/p1#address"),
				"provider_id":  ID("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999974493"),
				"care_site_id": ID("Organization/org-1"), "person_source_value": "p1", "gender_source_value": "female"}},
			{"death", map[string]any{"person_id": p1, "death_date": day(2020, 7, 4), "death_datetime": wall("2020-07-04T08:30:00-04:00"),
				"death_type_concept_id": vocab.TypeEHR}},
		}},
		{name: "patient with partial birth date and deceasedBoolean", key: "Patient/p2",
			json: `{"resourceType":"Patient","id":"p2","gender":"other","birthDate":"1950","deceasedBoolean":true}`,
			rows: []want{{"person", map[string]any{"person_id": ID("Patient/p2"), "gender_concept_id": int32(0), "year_of_birth": int32(1950),
				"month_of_birth": nil, "day_of_birth": nil, "birth_datetime": nil, "race_concept_id": int32(0), "ethnicity_concept_id": int32(0),
				"location_id": nil, "gender_source_value": "other"}}}},
		{name: "patient of unknown gender: concept 0, as Themis asks (8551 is not standard)", key: "Patient/p5",
			json: `{"resourceType":"Patient","id":"p5","gender":"unknown","birthDate":"1990-07-01"}`,
			rows: []want{{"person", map[string]any{"person_id": ID("Patient/p5"), "gender_concept_id": int32(0), "year_of_birth": int32(1990),
				"gender_source_value": "unknown"}}}},
		{name: "patient without birth date", key: "Patient/p3", json: `{"resourceType":"Patient","id":"p3","gender":"male"}`,
			reject: "missing-required", path: "Patient.birthDate"},
		{name: "patient with unparseable birth date", key: "Patient/p4", json: `{"resourceType":"Patient","id":"p4","birthDate":"15/03/1970"}`,
			reject: "bad-format", path: "Patient.birthDate"},
		{name: "inpatient encounter with hospitalization", key: "Encounter/e1",
			json: `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"IMP"},"subject":{"reference":"Patient/p1"},
			 "participant":[{"individual":{"reference":"Practitioner/pr1"}}],"period":{"start":"2021-01-02T03:04:05Z","end":"2021-01-05T10:00:00Z"},
			 "serviceProvider":{"reference":"Organization/org-1"},
			 "hospitalization":{"admitSource":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/admit-source","code":"emd"}]},
			   "dischargeDisposition":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/discharge-disposition","code":"home"}]}}}`,
			rows: []want{{"visit_occurrence", map[string]any{"visit_occurrence_id": e1, "person_id": p1, "visit_concept_id": vocab.VisitInpatient,
				"visit_start_date": day(2021, 1, 2), "visit_start_datetime": instant("2021-01-02T03:04:05Z"),
				"visit_end_date": day(2021, 1, 5), "visit_type_concept_id": vocab.TypeEHR, "provider_id": ID("Practitioner/pr1"),
				"care_site_id": ID("Organization/org-1"), "visit_source_value": "IMP",
				"admitted_from_source_value": "emd", "admitted_from_concept_id": int32(0),
				"discharged_to_source_value": "home", "discharged_to_concept_id": int32(0)}}}},
		{name: "ambulatory encounter without end", key: "Encounter/e2",
			json: `{"resourceType":"Encounter","id":"e2","status":"in-progress","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2021-02-03"}}`,
			rows: []want{{"visit_occurrence", map[string]any{"visit_concept_id": vocab.VisitOutpatient, "visit_start_date": day(2021, 2, 3),
				"visit_start_datetime": nil, "visit_end_date": day(2021, 2, 3), "provider_id": nil}}}},
		{name: "cancelled encounter", key: "Encounter/e3",
			json: `{"resourceType":"Encounter","id":"e3","status":"cancelled","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2021-02-03"}}`},
		{name: "condition without vocabulary", key: "Condition/c1",
			json: `{"resourceType":"Condition","id":"c1","clinicalStatus":{"coding":[{"code":"resolved"}]},"verificationStatus":{"coding":[{"code":"confirmed"}]},
			 "code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},
			 "onsetDateTime":"2010-06-19T18:35:39+00:00","abatementDateTime":"2010-06-26"}`,
			rows: []want{{"condition_occurrence", map[string]any{"condition_occurrence_id": ID("Condition/c1"), "person_id": p1,
				"condition_concept_id": int32(0), "condition_start_date": day(2010, 6, 19), "condition_start_datetime": instant("2010-06-19T18:35:39Z"),
				"condition_end_date": day(2010, 6, 26), "condition_end_datetime": nil, "condition_type_concept_id": vocab.TypeEHR,
				"visit_occurrence_id": e1, "condition_source_value": "44054006", "condition_source_concept_id": int32(0),
				"condition_status_source_value": "resolved"}}}},
		{name: "condition with vocabulary: ICD-10-CM maps to SNOMED", key: "Condition/c2", vocab: true,
			json: `{"resourceType":"Condition","id":"c2","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}]},"subject":{"reference":"Patient/p1"},"recordedDate":"2011-01-01"}`,
			rows: []want{{"condition_occurrence", map[string]any{"condition_concept_id": int32(201826), "condition_source_concept_id": int32(45576876),
				"condition_source_value": "E11.9", "condition_start_date": day(2011, 1, 1)}}}},
		{name: "condition whose code is an Observation-domain concept with a value goes to observation", key: "Condition/c3", vocab: true,
			json: `{"resourceType":"Condition","id":"c3","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"Z87.891"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2012-02-02"}`,
			rows: []want{{"observation", map[string]any{"observation_id": ID("Condition/c3"), "observation_concept_id": int32(4214956),
				"observation_source_concept_id": int32(35225339), "value_as_concept_id": int32(4209423), "observation_source_value": "Z87.891"}}}},
		{name: "condition entered in error", key: "Condition/c4",
			json: `{"resourceType":"Condition","id":"c4","verificationStatus":{"coding":[{"code":"entered-in-error"}]},"code":{"text":"x"},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2012-02-02"}`},
		{name: "condition refuted", key: "Condition/c5",
			json: `{"resourceType":"Condition","id":"c5","verificationStatus":{"coding":[{"code":"refuted"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2012-02-02"}`},
		{name: "condition without subject", key: "Condition/c6",
			json:   `{"resourceType":"Condition","id":"c6","code":{"text":"x"},"onsetDateTime":"2012-02-02"}`,
			reject: "missing-required", path: "Condition.subject"},
		{name: "condition about a group", key: "Condition/c7",
			json:   `{"resourceType":"Condition","id":"c7","subject":{"reference":"Group/g1"},"onsetDateTime":"2012-02-02"}`,
			reject: "unmapped-reference", path: "Condition.subject.reference"},
		{name: "condition with an unparseable onset", key: "Condition/c8",
			json:   `{"resourceType":"Condition","id":"c8","subject":{"reference":"Patient/p1"},"onsetDateTime":"yesterday"}`,
			reject: "bad-format", path: "Condition.onsetDateTime"},
		{name: "blood pressure panel: one row per component, built-in vitals", key: "Observation/bp",
			json: `{"resourceType":"Observation","id":"bp","status":"final","category":[{"coding":[{"code":"vital-signs"}]}],
			 "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},
			 "effectiveDateTime":"2020-01-01T10:00:00Z",
			 "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
			              {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"},
			               "referenceRange":[{"low":{"value":60},"high":{"value":90}}]}]}`,
			rows: []want{
				{"measurement", map[string]any{"measurement_id": ID("Observation/bp#1"), "person_id": p1, "measurement_concept_id": int32(3004249),
					"measurement_date": day(2020, 1, 1), "value_as_number": 120.0, "unit_concept_id": int32(8876), "unit_source_value": "mm[Hg]",
					"measurement_source_value": "8480-6", "visit_occurrence_id": e1, "range_low": nil, "_fhir_component": int32(1)}},
				{"measurement", map[string]any{"measurement_id": ID("Observation/bp#2"), "measurement_concept_id": int32(3012888),
					"value_as_number": 80.0, "range_low": 60.0, "range_high": 90.0, "_fhir_component": int32(2)}},
			}},
		{name: "lab with comparator and unknown code and unit", key: "Observation/lab",
			json: `{"resourceType":"Observation","id":"lab","status":"final","category":[{"coding":[{"code":"laboratory"}]}],
			 "code":{"coding":[{"system":"http://loinc.org","code":"99999-9"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01",
			 "valueQuantity":{"value":5.5,"comparator":"<","unit":"widgets","system":"http://unitsofmeasure.org","code":"{widget}"}}`,
			rows: []want{{"measurement", map[string]any{"measurement_concept_id": int32(0), "measurement_source_value": "99999-9",
				"value_as_number": 5.5, "operator_concept_id": vocab.OperatorLess, "unit_concept_id": int32(0), "unit_source_value": "{widget}",
				"measurement_datetime": nil}}}},
		{name: "social history with a coded value routes by domain to observation", key: "Observation/smoke", vocab: true,
			json: `{"resourceType":"Observation","id":"smoke","status":"final","category":[{"coding":[{"code":"social-history"}]}],
			 "code":{"coding":[{"system":"http://loinc.org","code":"72166-2"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01T00:00:00Z",
			 "valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"266919005"}]}}`,
			rows: []want{{"observation", map[string]any{"observation_concept_id": int32(40766362), "value_as_concept_id": int32(4144272),
				"value_source_value": "266919005", "observation_type_concept_id": vocab.TypeEHR, "value_as_string": nil}}}},
		{name: "an Observation-domain LOINC code in a laboratory observation still goes to observation", key: "Observation/lab2", vocab: true,
			json: `{"resourceType":"Observation","id":"lab2","status":"final","category":[{"coding":[{"code":"laboratory"}]}],
			 "code":{"coding":[{"system":"http://loinc.org","code":"72166-2"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01",
			 "valueString":"never"}`,
			rows: []want{{"observation", map[string]any{"observation_concept_id": int32(40766362), "value_as_string": "never"}}}},
		{name: "observation with string value and no category", key: "Observation/note",
			json: `{"resourceType":"Observation","id":"note","status":"final","code":{"text":"Comment"},"subject":{"reference":"Patient/p1"},"issued":"2020-01-01T01:02:03Z","valueString":"fine"}`,
			rows: []want{{"observation", map[string]any{"observation_concept_id": int32(0), "observation_source_value": "Comment",
				"value_as_string": "fine", "observation_date": day(2020, 1, 1)}}}},
		{name: "observation without a value", key: "Observation/empty",
			json: `{"resourceType":"Observation","id":"empty","status":"final","category":[{"coding":[{"code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},
			 "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01","dataAbsentReason":{"text":"refused"}}`,
			rows: []want{{"measurement", map[string]any{"measurement_concept_id": int32(3036277), "value_as_number": nil, "unit_concept_id": nil}}}},
		{name: "observation entered in error", key: "Observation/bad",
			json: `{"resourceType":"Observation","id":"bad","status":"entered-in-error","code":{"text":"x"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01"}`},
		{name: "observation without a date", key: "Observation/nodate",
			json:   `{"resourceType":"Observation","id":"nodate","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`,
			reject: "missing-required", path: "Observation.effective[x]"},
		{name: "SNOMED procedure code in the Measurement domain goes to measurement", key: "Procedure/a1c", vocab: true,
			json: `{"resourceType":"Procedure","id":"a1c","status":"completed","code":{"coding":[{"system":"http://snomed.info/sct","code":"43396009"}]},
			 "subject":{"reference":"Patient/p1"},"performedDateTime":"2019-05-05T05:05:05Z"}`,
			rows: []want{{"measurement", map[string]any{"measurement_id": ID("Procedure/a1c"), "measurement_concept_id": int32(4184637),
				"measurement_source_value": "43396009", "measurement_date": day(2019, 5, 5)}}}},
		{name: "procedure with period and conditional performer", key: "Procedure/col", vocab: true,
			json: `{"resourceType":"Procedure","id":"col","status":"completed","code":{"coding":[{"system":"http://snomed.info/sct","code":"73761001"}]},
			 "subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},
			 "performer":[{"actor":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"}}],
			 "performedPeriod":{"start":"2019-05-05T05:05:05Z","end":"2019-05-05T06:00:00Z"}}`,
			rows: []want{{"procedure_occurrence", map[string]any{"procedure_concept_id": int32(4249893), "procedure_end_date": day(2019, 5, 5),
				"procedure_end_datetime": instant("2019-05-05T06:00:00Z"), "provider_id": ID("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"),
				"visit_occurrence_id": e1}}}},
		{name: "procedure that implanted a device: a device_exposure row naming the Device, dated by the procedure", key: "Procedure/impl",
			json: `{"resourceType":"Procedure","id":"impl","status":"completed","code":{"text":"implant"},"subject":{"reference":"Patient/p1"},
			 "encounter":{"reference":"Encounter/e1"},"performedDateTime":"2001-01-21T10:00:00Z",
			 "focalDevice":[{"action":{"text":"implanted"},"manipulated":{"reference":"urn:uuid:d1"}}]}`,
			rows: []want{
				{"procedure_occurrence", map[string]any{"procedure_occurrence_id": ID("Procedure/impl"), "procedure_date": day(2001, 1, 21)}},
				{"device_exposure", map[string]any{"device_exposure_id": ID("Procedure/impl#1"), "person_id": p1, "device_concept_id": int32(0),
					"device_source_value": "Device/d1", "device_exposure_start_date": day(2001, 1, 21), "visit_occurrence_id": e1,
					"device_source_concept_id": int32(0), "_fhir_component": int32(1)}},
			}},
		{name: "procedure not done", key: "Procedure/nd",
			json: `{"resourceType":"Procedure","id":"nd","status":"not-done","subject":{"reference":"Patient/p1"},"performedDateTime":"2019-05-05"}`},
		{name: "medication request with days supply", key: "MedicationRequest/m1", vocab: true,
			json: `{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order",
			 "medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"197361"}]},
			 "subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},"authoredOn":"2020-03-01T09:00:00Z",
			 "requester":{"reference":"Practitioner/pr1"},"dosageInstruction":[{"text":"1 tablet daily"}],
			 "dispenseRequest":{"numberOfRepeatsAllowed":2,"quantity":{"value":30},"expectedSupplyDuration":{"value":30,"unit":"days","code":"d"}}}`,
			rows: []want{{"drug_exposure", map[string]any{"drug_exposure_id": ID("MedicationRequest/m1"), "drug_concept_id": int32(1332419),
				"drug_exposure_start_date": day(2020, 3, 1), "drug_exposure_end_date": day(2020, 3, 30), "days_supply": int32(30),
				"refills": int32(2), "quantity": 30.0, "sig": "1 tablet daily", "drug_type_concept_id": vocab.TypeEHRPrescription,
				"provider_id": ID("Practitioner/pr1"), "drug_source_value": "197361", "drug_source_concept_id": int32(1332419)}}}},
		{name: "medication request by reference, no end", key: "MedicationRequest/m2",
			json: `{"resourceType":"MedicationRequest","id":"m2","status":"stopped","intent":"order","medicationReference":{"reference":"Medication/med9"},
			 "subject":{"reference":"Patient/p1"},"authoredOn":"2020-03-01"}`,
			rows: []want{{"drug_exposure", map[string]any{"drug_concept_id": int32(0), "drug_source_value": "Medication/med9",
				"drug_exposure_end_date": day(2020, 3, 1), "days_supply": nil}}}},
		{name: "cancelled medication request", key: "MedicationRequest/m3",
			json: `{"resourceType":"MedicationRequest","id":"m3","status":"cancelled","intent":"order","subject":{"reference":"Patient/p1"},"authoredOn":"2020-03-01"}`},
		{name: "medication administration", key: "MedicationAdministration/ma1",
			json: `{"resourceType":"MedicationAdministration","id":"ma1","status":"completed","medicationCodeableConcept":{"text":"saline"},
			 "subject":{"reference":"Patient/p1"},"context":{"reference":"Encounter/e1"},"effectivePeriod":{"start":"2020-03-01T09:00:00Z","end":"2020-03-01T10:00:00Z"}}`,
			rows: []want{{"drug_exposure", map[string]any{"drug_type_concept_id": vocab.TypeEHRAdministration, "drug_source_value": "saline",
				"drug_exposure_end_datetime": instant("2020-03-01T10:00:00Z"), "visit_occurrence_id": e1}}}},
		{name: "medication statement", key: "MedicationStatement/ms1",
			json: `{"resourceType":"MedicationStatement","id":"ms1","status":"active","medicationCodeableConcept":{"text":"aspirin"},
			 "subject":{"reference":"Patient/p1"},"dateAsserted":"2020-04-01"}`,
			rows: []want{{"drug_exposure", map[string]any{"drug_type_concept_id": vocab.TypePatientReported, "drug_exposure_start_date": day(2020, 4, 1)}}}},
		{name: "immunization with an unknown CVX code", key: "Immunization/i1",
			json: `{"resourceType":"Immunization","id":"i1","status":"completed","vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"140"}]},
			 "patient":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},"occurrenceDateTime":"2015-10-10T10:10:10Z","lotNumber":"LOT42","primarySource":true}`,
			rows: []want{{"drug_exposure", map[string]any{"drug_concept_id": int32(0), "drug_source_value": "140", "lot_number": "LOT42",
				"drug_type_concept_id": vocab.TypeEHRAdministration, "drug_exposure_end_date": day(2015, 10, 10)}}}},
		{name: "allergy to a drug substance", key: "AllergyIntolerance/a1", vocab: true,
			json: `{"resourceType":"AllergyIntolerance","id":"a1","verificationStatus":{"coding":[{"code":"confirmed"}]},"criticality":"low",
			 "code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1191"}]},"patient":{"reference":"Patient/p1"},"recordedDate":"1996-12-27"}`,
			rows: []want{{"observation", map[string]any{"observation_concept_id": int32(0), "value_as_concept_id": int32(1112807),
				"observation_source_value": "1191", "qualifier_source_value": "low", "observation_date": day(1996, 12, 27)}}}},
		{name: "device with a patient", key: "Device/d1",
			json: `{"resourceType":"Device","id":"d1","udiCarrier":[{"deviceIdentifier":"0123"}],"status":"active","manufactureDate":"1958-07-12T23:58:16-04:00",
			 "serialNumber":"SN1","type":{"coding":[{"system":"http://snomed.info/sct","code":"337414009"}]},"patient":{"reference":"Patient/p1"}}`,
			rows: []want{{"device_exposure", map[string]any{"device_exposure_id": ID("Device/d1"), "person_id": p1, "device_concept_id": int32(0),
				"device_exposure_start_date": day(1958, 7, 12), "unique_device_id": "0123", "production_id": "SN1", "device_source_value": "337414009"}}}},
		{name: "device without a patient", key: "Device/d2", json: `{"resourceType":"Device","id":"d2","status":"active"}`},
		{name: "device use statement", key: "DeviceUseStatement/du1",
			json: `{"resourceType":"DeviceUseStatement","id":"du1","status":"active","subject":{"reference":"Patient/p1"},"device":{"reference":"https://ehr.example/fhir/Device/d1"},"timingPeriod":{"start":"2001-01-01"}}`,
			rows: []want{{"device_exposure", map[string]any{"device_source_value": "Device/d1", "device_exposure_start_date": day(2001, 1, 1)}}}},
		{name: "practitioner: id from its key, NPI in its column", key: "Practitioner/pr9",
			json: `{"resourceType":"Practitioner","id":"pr9","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999974493"}],
			 "name":[{"family":"Simonis280","given":["Chelsey293"],"prefix":["Dr."]}],"gender":"female"}`,
			rows: []want{{"provider", map[string]any{"provider_id": ID("Practitioner/pr9"),
				"provider_name": "Chelsey293 Simonis280", "npi": "9999974493", "gender_concept_id": vocab.GenderFemale, "provider_source_value": "pr9"}}}},
		{name: "organization with address", key: "Organization/org-1",
			json: `{"resourceType":"Organization","id":"org-1","identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"org-1"}],
			 "name":"NEWMAN MEMORIAL","type":[{"coding":[{"code":"prov"}]}],"address":[{"line":["1 A St"],"city":"X","state":"KS","postalCode":"66801"}]}`,
			rows: []want{
				{"location", map[string]any{"location_id": ID("Organization/org-1#address"), "state": "KS", "zip": "66801"}},
				{"care_site", map[string]any{"care_site_id": ID("Organization/org-1"), "care_site_name": "NEWMAN MEMORIAL",
					"location_id": ID("Organization/org-1#address"), "place_of_service_source_value": "prov"}},
			}},
		{name: "location with position", key: "Location/l1",
			json: `{"resourceType":"Location","id":"l1","status":"active","name":"CLINIC","address":{"line":["601 CROSS STREET"],"city":"BURLINGTON","state":"KS","postalCode":"668391105"},
			 "position":{"longitude":-95.742114,"latitude":38.206373}}`,
			rows: []want{{"location", map[string]any{"location_id": ID("Location/l1"), "latitude": 38.206373, "longitude": -95.742114,
				"location_source_value": "l1", "zip": "668391105"}}}},
		{name: "resource type not mapped", key: "Claim/x", json: `{"resourceType":"Claim","id":"x"}`},
		{name: "key does not match the resource", key: "Patient/other", json: `{"resourceType":"Patient","id":"p1","birthDate":"1970"}`,
			reject: "key-mismatch", path: "Patient.id"},
		{name: "key of the same length, another id", key: "Patient/p2", json: `{"resourceType":"Patient","id":"p1","birthDate":"1970"}`,
			reject: "key-mismatch", path: "Patient.id"},
		{name: "key without the slash", key: "Patient:p1", json: `{"resourceType":"Patient","id":"p1","birthDate":"1970"}`,
			reject: "key-mismatch", path: "Patient.id"},
		{name: "key of another type", key: "Encounter/p1", json: `{"resourceType":"Patient","id":"p1","birthDate":"1970"}`,
			reject: "key-mismatch", path: "Patient.id"},
		// A type the stage does not map is skipped by its key, unparsed (validate has
		// checked upstream that the key names the resource).
		{name: "unmapped type by key, not parsed", key: "ExplanationOfBenefit/e1", json: `{"resourceType":`},
		{name: "not JSON", key: "Patient/p1", json: `{"resourceType":`, reject: "invalid-json"},
	}
}

func TestGolden(t *testing.T) {
	plain := newTestProcessor(t, nil)
	withVocab := newTestProcessor(t, loadTestVocab(t))
	for _, g := range goldens() {
		t.Run(g.name, func(t *testing.T) {
			p := plain
			if g.vocab {
				p = withVocab
			}
			rows, err := run(t, p, g.key, g.json)
			if g.reject != "" {
				r, ok := stage.AsRejection(err)
				if !ok {
					t.Fatalf("want rejection %s, got rows %v, err %v", g.reject, rows, err)
				}
				if r.Class != g.reject || (g.path != "" && r.Path != g.path) {
					t.Fatalf("rejection %s at %s (%s); want %s at %s", r.Class, r.Path, r.Message, g.reject, g.path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(g.rows) {
				t.Fatalf("%d rows, want %d: %v", len(rows), len(g.rows), rows)
			}
			seen := map[string]bool{}
			for i, w := range g.rows {
				got := rows[i]
				if got.table != w.table {
					t.Fatalf("row %d in %s, want %s", i, got.table, w.table)
				}
				if got.key != g.key || got.row[schemas.ColFHIRKey] != g.key || got.row[schemas.ColFHIRDeleted] != false {
					t.Errorf("row %d envelope: record key %q, _fhir_key %v, deleted %v", i, got.key, got.row[schemas.ColFHIRKey], got.row[schemas.ColFHIRDeleted])
				}
				// The first row of each table replaces the key's earlier rows there.
				if got.row[schemas.ColFHIRReplaces] != !seen[w.table] {
					t.Errorf("row %d (%s): _fhir_replaces %v, want %v", i, w.table, got.row[schemas.ColFHIRReplaces], !seen[w.table])
				}
				seen[w.table] = true
				for col, v := range w.cols {
					if gv, ok := got.row[col]; !ok || !reflect.DeepEqual(gv, v) {
						t.Errorf("%s.%s = %#v, want %#v", w.table, col, gv, v)
					}
				}
			}
		})
	}
}

func TestEnvelopeAndHeaders(t *testing.T) {
	p := newTestProcessor(t, nil)
	in := &stage.Record{Key: []byte("Patient/p1"), Value: []byte(patientJSON), Headers: []stage.Header{
		{Key: schemas.HeaderExportID, Value: []byte("exp-1")},
		{Key: schemas.HeaderSourceLine, Value: []byte("7")},
		{Key: schemas.ContentTypeHeader, Value: []byte(schemas.ContentTypeFHIR)},
	}}
	var out collect
	if err := p.Process(t.Context(), in, nil, &out); err != nil {
		t.Fatal(err)
	}
	rows, _ := run(t, p, "Patient/p1", patientJSON)
	for _, r := range rows {
		if r.row[schemas.ColFHIRVersion] != "3" || r.row[schemas.ColFHIRLastUpdated] != instant("2024-05-01T10:00:00Z") ||
			r.row[schemas.ColFHIRComponent] != int32(0) {
			t.Errorf("%s envelope: %v %v %v", r.table, r.row[schemas.ColFHIRVersion], r.row[schemas.ColFHIRLastUpdated], r.row[schemas.ColFHIRComponent])
		}
	}
	for _, rec := range out.recs {
		if string(rec.Key) != "Patient/p1" {
			t.Errorf("key %q", rec.Key)
		}
		ct, _ := rec.Header(schemas.ContentTypeHeader)
		exp, _ := rec.Header(schemas.HeaderExportID)
		line, _ := rec.Header(schemas.HeaderSourceLine)
		if string(ct) != schemas.ContentTypeAvro || string(exp) != "exp-1" || string(line) != "7" {
			t.Errorf("headers %v", rec.Headers)
		}
		n := 0
		for _, h := range rec.Headers {
			if h.Key == schemas.ContentTypeHeader {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d content-type headers", n)
		}
	}
}

func TestTombstoneRetracts(t *testing.T) {
	p := newTestProcessor(t, nil)
	for key, tables := range map[string][]string{
		"Patient/p1":     {"person", "death", "location"},
		"Observation/o1": eventTables,
		"Encounter/e1":   {"visit_occurrence"},
	} {
		rows, err := run(t, p, key, "")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.table)
			if r.row[schemas.ColFHIRDeleted] != true || r.row[schemas.ColFHIRKey] != key || r.key != key {
				t.Errorf("%s retraction row: %v", r.table, r.row)
			}
		}
		if !reflect.DeepEqual(got, tables) {
			t.Errorf("%s retracts %v, want %v", key, got, tables)
		}
	}
	if rows, err := run(t, p, "Claim/c1", ""); err != nil || len(rows) != 0 {
		t.Errorf("unmapped type tombstone: %v %v", rows, err)
	}
	if _, err := run(t, p, "not a key", ""); err == nil {
		t.Error("bad tombstone key accepted")
	}
}

func TestSummaryCountsUnmappedAndSkipped(t *testing.T) {
	p := newTestProcessor(t, nil)
	for _, g := range goldens() {
		if !g.vocab {
			run(t, p, g.key, g.json) //nolint:errcheck // rejections are counted, which is what is checked
		}
	}
	s := p.Summary()
	if s.Skipped["Encounter: status-cancelled"] != 1 || s.Skipped["Condition: verification-entered-in-error"] != 1 ||
		s.Skipped["Patient: deceased-without-date"] != 1 || s.Skipped["Device: no-patient"] != 1 || s.Skipped["Claim: type-not-mapped"] != 1 || s.Skipped["ExplanationOfBenefit: type-not-mapped"] != 1 {
		t.Errorf("skipped %v", s.Skipped)
	}
	found := false
	for _, u := range s.Unmapped {
		if u.Vocabulary == "CVX" && u.Table == "drug_exposure" && u.Count >= 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("unmapped CVX not counted: %v", s.Unmapped)
	}
	if s.Rejected["Patient: missing-required"] != 1 || s.Rejected["Condition: missing-required"] != 1 {
		t.Errorf("rejected %v", s.Rejected)
	}
}

func TestRefKey(t *testing.T) {
	ids := map[string]bool{SyntheaIDSystem: true}
	for ref, wantKey := range map[string]string{
		"Patient/abc":                          "Patient/abc",
		"https://ehr.example/fhir/Patient/abc": "Patient/abc",
		"Patient/abc/_history/3":               "Patient/abc",
		"urn:uuid:123":                         "Patient/123",
		"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|99":                    "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|99",
		"Organization?identifier=https://github.com/synthetichealth/synthea|o-1":       "Organization/o-1",
		"Location?identifier=https%3A%2F%2Fgithub.com%2Fsynthetichealth%2Fsynthea|l-1": "Location/l-1",
		"Organization?identifier=urn:oid:1.2.3|X":                                      "Organization?identifier=urn:oid:1.2.3|X",
	} {
		key, _, ok := refKey(ref, "Patient", ids)
		if !ok || key != wantKey {
			t.Errorf("refKey(%q) = %q, %v; want %q", ref, key, ok, wantKey)
		}
	}
	for _, bad := range []string{"", "Patient", "Patient/", "Practitioner?name=x", "#contained"} {
		if key, _, ok := refKey(bad, "Patient", ids); ok {
			t.Errorf("refKey(%q) = %q, want no key", bad, key)
		}
	}
}

func TestIDs(t *testing.T) {
	// Ids are stored in the lake and referenced across runs: the hash must never change.
	if got := ID("Patient/a"); got != 4891521246061930135 {
		t.Fatalf("ID(Patient/a) = %d: the id function changed, which breaks every stored id", got)
	}
	if ID("Patient/a") == ID("Patient/b") {
		t.Fatal("different keys, same id")
	}
	for _, k := range []string{"Patient/a", "Observation/x#3", strings.Repeat("z", 100)} {
		if id := ID(k); id <= 0 {
			t.Errorf("ID(%q) = %d, want positive", k, id)
		}
	}
	if ComponentID("Observation/x", 0) != ID("Observation/x") || ComponentID("Observation/x", 2) != ID("Observation/x#2") {
		t.Error("ComponentID")
	}
	// Collision detection: TestCollisionsDetectsADifferentKeyForAKnownID.
}

// TestConcurrentProcess runs one Processor from several goroutines, as the runtime does
// for several partitions; run with -race.
func TestConcurrentProcess(t *testing.T) {
	p := newTestProcessor(t, loadTestVocab(t))
	gs := goldens()
	done := make(chan map[string]int, 4)
	for w := 0; w < 4; w++ {
		go func() {
			n := map[string]int{}
			for i := 0; i < 20; i++ {
				for _, g := range gs {
					var out collect
					in := &stage.Record{Key: []byte(g.key), Value: []byte(g.json)}
					if err := p.Process(context.Background(), in, nil, &out); err == nil {
						n["rows"] += len(out.recs)
					}
				}
			}
			done <- n
		}()
	}
	total := 0
	for w := 0; w < 4; w++ {
		total += (<-done)["rows"]
	}
	var sum int64
	for _, n := range p.Summary().Rows {
		sum += n
	}
	if int64(total) != sum || total == 0 {
		t.Fatalf("emitted %d rows, summary counts %d", total, sum)
	}
}
