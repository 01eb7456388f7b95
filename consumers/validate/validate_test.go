package validate

import (
	"context"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/consumers/stage/stagetest"
	"github.com/fhirstream/fhirstream/schemas"
)

const goodObservation = `{"resourceType":"Observation","id":"obs-1","meta":{"versionId":"2","lastUpdated":"2024-05-01T10:00:00.123+02:00"},` +
	`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
	`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},` +
	`"subject":{"reference":"Patient/p-1"},"encounter":{"reference":"urn:uuid:8c1e5a3b-0000-4000-8000-000000000001"},` +
	`"effectiveDateTime":"2024-05-01T09:58:00Z","issued":"2024-05-01T10:00:00.000Z",` +
	`"valueQuantity":{"value":72.5,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`

func TestValidObservationPasses(t *testing.T) {
	if fails := New(Options{}).Validate("Observation", []byte("Observation/obs-1"), []byte(goodObservation)); len(fails) > 0 {
		t.Fatalf("valid Observation rejected: %v", fails)
	}
}

// mutate replaces old (which must occur) in the good Observation.
func mutate(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(goodObservation, old) {
		t.Fatalf("fixture lacks %q", old)
	}
	return strings.Replace(goodObservation, old, new, 1)
}

func TestRejections(t *testing.T) {
	cases := []struct {
		name, typ, key, value string
		class, path           string
	}{
		{"not json", "Observation", "", `{"resourceType":`, ClassInvalidJSON, ""},
		{"empty", "Observation", "", ``, ClassInvalidJSON, ""},
		{"array", "Observation", "", `[1,2]`, ClassInvalidJSON, ""},
		{"raw control character", "Observation", "", "{\"resourceType\":\"Observation\",\"id\":\"a\x01\"}", ClassInvalidJSON, ""},
		{"number outside JSON's grammar", "Observation", "", `{"resourceType":"Observation","id":"a","valueInteger":01}`, ClassInvalidJSON, ""},
		{"invalid escape", "Observation", "", `{"resourceType":"Observation","id":"a","note":"x\0y"}`, ClassInvalidJSON, ""},
		{"short unicode escape", "Observation", "", `{"resourceType":"Observation","id":"a","note":"x\u12"}`, ClassInvalidJSON, ""},
		{"unicode escape with a non-hex digit", "Observation", "", `{"resourceType":"Observation","id":"a","note":"\u00g1"}`, ClassInvalidJSON, ""},
		{"invalid utf-8", "Observation", "", "{\"resourceType\":\"Observation\",\"id\":\"a\",\"note\":\"\xff\"}", ClassInvalidJSON, ""},
		{"invalid utf-8 deep in a long string", "Observation", "", "{\"resourceType\":\"Observation\",\"id\":\"a\",\"note\":\"abcdefghijklmnop\xc3\x28qrstuvwxyz\"}", ClassInvalidJSON, ""},
		{"invalid utf-8 in a member name", "Observation", "", "{\"resourceType\":\"Observation\",\"id\":\"a\",\"n\xe2\x82ote\":\"x\"}", ClassInvalidJSON, ""},
		{"string", "Observation", "", `"Observation"`, ClassInvalidJSON, ""},
		{"no resourceType", "Observation", "", `{"id":"a"}`, ClassMissingRequired, "resourceType"},
		{"resourceType not a name", "Observation", "", `{"resourceType":"observation","id":"a"}`, ClassBadFormat, "resourceType"},
		{"resourceType a number", "Observation", "", `{"resourceType":7,"id":"a"}`, ClassBadFormat, "resourceType"},
		{"type differs from topic", "Patient", "", goodObservation, ClassTypeMismatch, "resourceType"},
		{"no id", "Observation", "", mutate(t, `"id":"obs-1",`, ``), ClassMissingRequired, "Observation.id"},
		{"bad id", "Observation", "", mutate(t, `"id":"obs-1"`, `"id":"obs_1!"`), ClassBadFormat, "Observation.id"},
		{"id too long", "Observation", "", mutate(t, `"id":"obs-1"`, `"id":"`+strings.Repeat("a", 65)+`"`), ClassBadFormat, "Observation.id"},
		{"numeric id", "Observation", "", mutate(t, `"id":"obs-1"`, `"id":1`), ClassBadFormat, "Observation.id"},
		{"key differs", "Observation", "Observation/other", goodObservation, ClassKeyMismatch, "Observation.id"},
		{"no status", "Observation", "", mutate(t, `"status":"final",`, ``), ClassMissingRequired, "Observation.status"},
		{"status not in value set", "Observation", "", mutate(t, `"status":"final"`, `"status":"done"`), ClassBadCode, "Observation.status"},
		{"status with spaces", "Observation", "", mutate(t, `"status":"final"`, `"status":" final"`), ClassBadFormat, "Observation.status"},
		{"no code", "Observation", "", mutate(t, `"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},`, ``), ClassMissingRequired, "Observation.code"},
		{"code is a string", "Observation", "", mutate(t, `"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"}`, `"code":"8867-4"`), ClassBadFormat, "Observation.code"},
		{"coding without system", "Observation", "", mutate(t, `"system":"http://loinc.org",`, ``), ClassBadCoding, "Observation.code.coding[0].system"},
		{"coding without code", "Observation", "", mutate(t, `"code":"8867-4",`, ``), ClassBadCoding, "Observation.code.coding[0].code"},
		{"coding system with space", "Observation", "", mutate(t, `"system":"http://loinc.org"`, `"system":"http://lo inc.org"`), ClassBadFormat, "Observation.code.coding[0].system"},
		{"nested coding without system", "Observation", "", mutate(t, `"system":"http://terminology.hl7.org/CodeSystem/observation-category",`, ``), ClassBadCoding, "Observation.category[0].coding[0].system"},
		{"reference lowercase type", "Observation", "", mutate(t, `"Patient/p-1"`, `"patient/p-1"`), ClassBadReference, "Observation.subject.reference"},
		{"reference without id", "Observation", "", mutate(t, `"Patient/p-1"`, `"Patient/"`), ClassBadReference, "Observation.subject.reference"},
		{"reference bad id", "Observation", "", mutate(t, `"Patient/p-1"`, `"Patient/p 1"`), ClassBadReference, "Observation.subject.reference"},
		{"reference too many parts", "Observation", "", mutate(t, `"Patient/p-1"`, `"Patient/p-1/x"`), ClassBadReference, "Observation.subject.reference"},
		{"conditional without query", "Observation", "", mutate(t, `"Patient/p-1"`, `"Patient?"`), ClassBadReference, "Observation.subject.reference"},
		{"conditional lowercase", "Observation", "", mutate(t, `"Patient/p-1"`, `"patient?identifier=x|1"`), ClassBadReference, "Observation.subject.reference"},
		{"contained missing", "Observation", "", mutate(t, `"Patient/p-1"`, `"#p1"`), ClassBadReference, "Observation.subject.reference"},
		{"contained bad id", "Observation", "", mutate(t, `"Patient/p-1"`, `"#"`), ClassBadReference, "Observation.subject.reference"},
		{"absolute without path", "Observation", "", mutate(t, `"Patient/p-1"`, `"https://"`), ClassBadReference, "Observation.subject.reference"},
		{"subject not an object", "Observation", "", mutate(t, `"subject":{"reference":"Patient/p-1"}`, `"subject":"Patient/p-1"`), ClassBadFormat, "Observation.subject"},
		{"dateTime without timezone", "Observation", "", mutate(t, `"2024-05-01T09:58:00Z"`, `"2024-05-01T09:58:00"`), ClassBadFormat, "Observation.effectiveDateTime"},
		{"dateTime bad month", "Observation", "", mutate(t, `"2024-05-01T09:58:00Z"`, `"2024-13-01"`), ClassBadFormat, "Observation.effectiveDateTime"},
		{"dateTime february 30", "Observation", "", mutate(t, `"2024-05-01T09:58:00Z"`, `"2023-02-30"`), ClassBadFormat, "Observation.effectiveDateTime"},
		{"dateTime hour 25", "Observation", "", mutate(t, `"2024-05-01T09:58:00Z"`, `"2024-05-01T25:00:00Z"`), ClassBadFormat, "Observation.effectiveDateTime"},
		{"dateTime time with partial date", "Observation", "", mutate(t, `"2024-05-01T09:58:00Z"`, `"2024-05T09:58:00Z"`), ClassBadFormat, "Observation.effectiveDateTime"},
		{"dateTime offset too large", "Observation", "", mutate(t, `"2024-05-01T09:58:00Z"`, `"2024-05-01T09:58:00+15:00"`), ClassBadFormat, "Observation.effectiveDateTime"},
		{"dateTime as number", "Observation", "", mutate(t, `"2024-05-01T09:58:00Z"`, `20240501`), ClassBadFormat, "Observation.effectiveDateTime"},
		{"instant without seconds", "Observation", "", mutate(t, `"issued":"2024-05-01T10:00:00.000Z"`, `"issued":"2024-05-01T10:00Z"`), ClassBadFormat, "Observation.issued"},
		{"instant date only", "Observation", "", mutate(t, `"issued":"2024-05-01T10:00:00.000Z"`, `"issued":"2024-05-01"`), ClassBadFormat, "Observation.issued"},
		{"instant no timezone", "Observation", "", mutate(t, `"issued":"2024-05-01T10:00:00.000Z"`, `"issued":"2024-05-01T10:00:00.000"`), ClassBadFormat, "Observation.issued"},
		{"instant empty fraction", "Observation", "", mutate(t, `"issued":"2024-05-01T10:00:00.000Z"`, `"issued":"2024-05-01T10:00:00.Z"`), ClassBadFormat, "Observation.issued"},
		{"lastUpdated not an instant", "Observation", "", mutate(t, `"lastUpdated":"2024-05-01T10:00:00.123+02:00"`, `"lastUpdated":"2024-05-01"`), ClassBadFormat, "Observation.meta.lastUpdated"},
		{"versionId bad", "Observation", "", mutate(t, `"versionId":"2"`, `"versionId":"v 2"`), ClassBadFormat, "Observation.meta.versionId"},
		{"decimal as string", "Observation", "", mutate(t, `"value":72.5`, `"value":"72.5"`), ClassBadFormat, "Observation.valueQuantity.value"},
		{"choice of unknown type", "Observation", "", mutate(t, `"effectiveDateTime"`, `"effectiveDate"`), ClassBadFormat, "Observation.effectiveDate"},
		{"choice twice", "Observation", "", mutate(t, `"issued"`, `"effectivePeriod":{"start":"2024-01-01"},"issued"`), ClassBadFormat, "Observation.effective[x]"},
		{"period start bad", "Observation", "", mutate(t, `"effectiveDateTime":"2024-05-01T09:58:00Z"`, `"effectivePeriod":{"start":"yesterday"}`), ClassBadFormat, "Observation.effectivePeriod.start"},
		{"component without code", "Observation", "", mutate(t, `"issued"`, `"component":[{"valueQuantity":{"value":1}}],"issued"`), ClassMissingRequired, "Observation.component[0].code"},
		{"null element", "Observation", "", mutate(t, `"status":"final"`, `"status":"final","note":null`), ClassBadFormat, "Observation.note"},
		{"empty string", "Observation", "", mutate(t, `"text":"Heart rate"`, `"text":""`), ClassBadFormat, "Observation.code.text"},
		{"extension dateTime bad", "Observation", "", mutate(t, `"status":"final"`, `"status":"final","extension":[{"url":"http://x/y","valueDateTime":"2024-02-30"}]`), ClassBadFormat, "Observation.extension[0].valueDateTime"},

		{"encounter without class", "Encounter", "", `{"resourceType":"Encounter","id":"e","status":"finished"}`, ClassMissingRequired, "Encounter.class"},
		{"encounter class without code", "Encounter", "", `{"resourceType":"Encounter","id":"e","status":"finished","class":{"system":"http://x"}}`, ClassBadCoding, "Encounter.class.code"},
		{"encounter location without location", "Encounter", "", `{"resourceType":"Encounter","id":"e","status":"finished","class":{"system":"http://x","code":"AMB"},"location":[{"status":"active"}]}`, ClassMissingRequired, "Encounter.location[0].location"},
		{"condition without subject", "Condition", "", `{"resourceType":"Condition","id":"c"}`, ClassMissingRequired, "Condition.subject"},
		{"patient birthDate with time", "Patient", "", `{"resourceType":"Patient","id":"p","birthDate":"1970-01-01T00:00:00Z"}`, ClassBadFormat, "Patient.birthDate"},
		{"patient gender unknown code", "Patient", "", `{"resourceType":"Patient","id":"p","gender":"M"}`, ClassBadCode, "Patient.gender"},
		{"patient deceased string", "Patient", "", `{"resourceType":"Patient","id":"p","deceasedString":"yes"}`, ClassBadFormat, "Patient.deceasedString"},
		{"medreq without medication", "MedicationRequest", "", `{"resourceType":"MedicationRequest","id":"m","status":"active","intent":"order","subject":{"reference":"Patient/p"}}`, ClassMissingRequired, "MedicationRequest.medication[x]"},
		{"medreq bad intent", "MedicationRequest", "", `{"resourceType":"MedicationRequest","id":"m","status":"active","intent":"wish","subject":{"reference":"Patient/p"},"medicationReference":{"reference":"Medication/x"}}`, ClassBadCode, "MedicationRequest.intent"},
		{"procedure without status", "Procedure", "", `{"resourceType":"Procedure","id":"x","subject":{"reference":"Patient/p"}}`, ClassMissingRequired, "Procedure.status"},
		{"immunization without occurrence", "Immunization", "", `{"resourceType":"Immunization","id":"i","status":"completed","vaccineCode":{"text":"flu"},"patient":{"reference":"Patient/p"}}`, ClassMissingRequired, "Immunization.occurrence[x]"},
		{"allergy without patient", "AllergyIntolerance", "", `{"resourceType":"AllergyIntolerance","id":"a"}`, ClassMissingRequired, "AllergyIntolerance.patient"},
		{"report without code", "DiagnosticReport", "", `{"resourceType":"DiagnosticReport","id":"d","status":"final"}`, ClassMissingRequired, "DiagnosticReport.code"},
		{"unknown type generic", "Basic", "", `{"resourceType":"Basic","id":"b","subject":{"reference":"Patient p"}}`, ClassBadReference, "Basic.subject.reference"},
	}
	v := New(Options{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var key []byte
			if tc.key != "" {
				key = []byte(tc.key)
			}
			fails := v.Validate(tc.typ, key, []byte(tc.value))
			if len(fails) == 0 {
				t.Fatalf("accepted; want %s at %s", tc.class, tc.path)
			}
			for _, f := range fails {
				if f.Class == tc.class && f.Path == tc.path {
					if strings.Contains(f.Message, "p-1") || strings.Contains(f.Message, "yesterday") {
						t.Errorf("message quotes the value: %q", f.Message)
					}
					return
				}
			}
			t.Fatalf("failures %v; want one %s at %s", fails, tc.class, tc.path)
		})
	}
}

func TestAcceptedForms(t *testing.T) {
	v := New(Options{})
	for _, ref := range []string{"Patient/p-1", "Patient/p-1/_history/3", "Patient?identifier=http://x|123",
		"https://ehr.example/fhir/Patient/p-1", "urn:uuid:8c1e5a3b-0000-4000-8000-000000000001", "urn:oid:1.2.3"} {
		if fails := v.Validate("Observation", nil, []byte(mutate(t, `"Patient/p-1"`, `"`+ref+`"`))); len(fails) > 0 {
			t.Errorf("reference %s rejected: %v", ref, fails)
		}
	}
	for _, dt := range []string{"2024", "2024-05", "2024-05-01", "2024-05-01T09:58:00+14:00", "2016-12-31T23:59:60Z", "2024-05-01T09:58:00.123456789-05:00"} {
		if fails := v.Validate("Observation", nil, []byte(mutate(t, `"2024-05-01T09:58:00Z"`, `"`+dt+`"`))); len(fails) > 0 {
			t.Errorf("dateTime %s rejected: %v", dt, fails)
		}
	}
	// Text beyond ASCII, in values and names, short and past the scanner's 8-byte words.
	for _, text := range []string{"é", "Müller, José — café ☕ naïve résumé", "患者の記録", "🩺"} {
		if fails := v.Validate("Observation", nil, []byte(mutate(t, `"text":"Heart rate"`, `"text":"`+text+`"`))); len(fails) > 0 {
			t.Errorf("text %q rejected: %v", text, fails)
		}
	}
	// Every escape RFC 8259 allows, which the fast scanner leaves to fastjson.
	for _, text := range []string{`a\"b`, `a\\b`, `a\/b`, `\b\f\n\r\t`, `\u00e9\u00C9`, `\ud83e\ude7a`} {
		if fails := v.Validate("Observation", nil, []byte(mutate(t, `"text":"Heart rate"`, `"text":"`+text+`"`))); len(fails) > 0 {
			t.Errorf("escaped text %s rejected: %v", text, fails)
		}
	}
	contained := mutate(t, `"Patient/p-1"`, `"#pat"`)
	contained = strings.Replace(contained, `"status"`, `"contained":[{"resourceType":"Patient","id":"pat"}],"status"`, 1)
	if fails := v.Validate("Observation", nil, []byte(contained)); len(fails) > 0 {
		t.Errorf("contained reference rejected: %v", fails)
	}
}

func TestRelax(t *testing.T) {
	bad := mutate(t, `"system":"http://loinc.org",`, ``)
	if fails := New(Options{}).Validate("Observation", nil, []byte(bad)); len(fails) != 1 || fails[0].Class != ClassBadCoding {
		t.Fatalf("strict: %v", fails)
	}
	if fails := New(Options{Relax: []string{ClassBadCoding}}).Validate("Observation", nil, []byte(bad)); len(fails) != 0 {
		t.Fatalf("relaxed bad-coding still rejected: %v", fails)
	}
}

func TestProcessor(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	p := &Processor{Topics: topics, Validator: New(Options{})}
	hdr := []stage.Header{{Key: schemas.HeaderSourceLine, Value: []byte("3")}}
	var rec stagetest.Recorder
	in := &stage.Record{Topic: topics.Raw("Observation"), Key: []byte("Observation/obs-1"), Value: []byte(goodObservation), Headers: hdr}
	if err := p.Process(context.Background(), in, nil, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Records) != 1 || rec.Records[0].Topic != "fhir.valid.Observation" || string(rec.Records[0].Value) != goodObservation ||
		string(rec.Records[0].Key) != "Observation/obs-1" || len(rec.Records[0].Headers) != 1 {
		t.Fatalf("not forwarded unchanged: %+v", rec.Records)
	}
	tomb := &stage.Record{Topic: topics.Raw("Patient"), Key: []byte("Patient/p")}
	if err := p.Process(context.Background(), tomb, nil, &rec); err != nil || len(rec.Records) != 2 || rec.Records[1].Value != nil {
		t.Fatalf("tombstone not forwarded: %v %+v", err, rec.Records)
	}
	bad := &stage.Record{Topic: topics.Raw("Observation"), Key: []byte("Observation/obs-1"), Value: []byte(mutate(t, `"status":"final",`, `"status":"x",`))}
	err := p.Process(context.Background(), bad, nil, &rec)
	rej, ok := stage.AsRejection(err)
	if !ok || rej.Class != ClassBadCode || rej.Path != "Observation.status" || len(rec.Records) != 2 {
		t.Fatalf("bad resource: err %v, outputs %d", err, len(rec.Records))
	}
}
