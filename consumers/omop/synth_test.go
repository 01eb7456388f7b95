package omop

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
)

// fhirLite is the little of a resource the count explanation needs, decoded with
// encoding/json so the expectation is computed independently of the mapper's fastjson
// code.
type fhirLite struct {
	ResourceType string `json:"resourceType"`
	Status       string `json:"status"`
	Verification *struct {
		Coding []struct {
			Code string `json:"code"`
		} `json:"coding"`
	} `json:"verificationStatus"`
	Component []json.RawMessage `json:"component"`
	// value[x] variants the generator uses
	ValueQuantity        json.RawMessage `json:"valueQuantity"`
	ValueCodeableConcept json.RawMessage `json:"valueCodeableConcept"`
	ValueString          *string         `json:"valueString"`
	DeceasedDateTime     *string         `json:"deceasedDateTime"`
	Address              []json.RawMessage
}

func (r *fhirLite) verification() string {
	if r.Verification == nil || len(r.Verification.Coding) == 0 {
		return ""
	}
	return r.Verification.Coding[0].Code
}

// TestSynthCountsExplained maps the generator's 1,000-patient export and explains every
// table's row count from the input: persons = patients; visits = encounters whose status
// qualifies; measurements + observations = one row per observation without components
// or with a value of its own, plus one per component, plus one per allergy; and so on.
func TestSynthCountsExplained(t *testing.T) {
	patients := 1000
	if testing.Short() {
		patients = 100
	}
	p := newTestProcessor(t, nil)
	want := map[string]int64{}
	inputs := map[string]int{}
	rejected := 0
	err := synth.Generate(context.Background(), synth.Config{Patients: patients, Seed: 42}, func(rt string, line []byte) error {
		inputs[rt]++
		var r fhirLite
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("generator wrote invalid JSON: %v", err)
		}
		switch rt {
		case "Patient":
			want["person"]++
			if r.DeceasedDateTime != nil {
				want["death"]++
			}
			if len(r.Address) > 0 {
				want["location"]++
			}
		case "Encounter":
			if r.Status != "planned" && r.Status != "cancelled" && r.Status != "entered-in-error" {
				want["visit_occurrence"]++
			}
		case "Condition":
			if v := r.verification(); v != "entered-in-error" && v != "refuted" {
				want["condition_occurrence"]++
			}
		case "Observation":
			if r.Status == "entered-in-error" || r.Status == "cancelled" {
				break
			}
			hasValue := r.ValueQuantity != nil || r.ValueCodeableConcept != nil || r.ValueString != nil
			n := int64(len(r.Component))
			if hasValue || n == 0 {
				n++
			}
			want["measurement+observation"] += n
		case "AllergyIntolerance":
			if v := r.verification(); v != "entered-in-error" && v != "refuted" {
				want["measurement+observation"]++
			}
		case "Procedure":
			if r.Status != "not-done" && r.Status != "entered-in-error" {
				want["procedure_occurrence"]++
			}
		case "MedicationRequest", "Immunization":
			if !notHappened(r.Status) && r.Status != "entered-in-error" {
				want["drug_exposure"]++
			}
		case "Practitioner":
			want["provider"]++
		case "Organization":
			want["care_site"]++
			if len(r.Address) > 0 {
				want["location"]++
			}
		case "Location":
			want["location"]++
		}
		var out collect
		if err := p.Process(context.Background(), &stage.Record{Value: line}, nil, &out); err != nil {
			if _, ok := stage.AsRejection(err); !ok {
				t.Fatalf("transient error: %v", err)
			}
			rejected++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inputs["Patient"] != patients {
		t.Fatalf("generator wrote %d patients, asked for %d", inputs["Patient"], patients)
	}
	if rejected != 0 {
		t.Errorf("%d rejections: %v", rejected, p.Summary().Rejected)
	}
	got := p.Summary().Rows
	got["measurement+observation"] = got["measurement"] + got["observation"]
	for table, n := range want {
		if got[table] != n {
			t.Errorf("%s: %d rows, want %d (from %v inputs)", table, got[table], n, inputs)
		}
	}
	if got["person"] != int64(patients) {
		t.Errorf("persons %d != patients %d", got["person"], patients)
	}
	t.Logf("inputs %v", inputs)
	t.Logf("rows %v", got)
	t.Logf("skipped %v", p.Summary().Skipped)
}
