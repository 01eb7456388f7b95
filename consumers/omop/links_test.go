package omop

import (
	"testing"
)

// TestReferenceForms maps a Procedure whose performer is written in each form a source
// may use and checks the provider_id written and how the reference was counted. Literal
// forms give the Practitioner's own row id; an NPI gives the NPI key's id, which gold's
// link resolution maps to the provider row with that npi; what names no Practitioner is
// null, never an id that cannot resolve.
func TestReferenceForms(t *testing.T) {
	npiKey := identifierKey("Practitioner", NPISystem, "123")
	for _, tc := range []struct {
		name, actor string
		want        any // provider_id: int64 or nil
		outcome     string
	}{
		{"literal", `{"reference":"Practitioner/pr1"}`, ID("Practitioner/pr1"), refLiteral},
		{"absolute URL", `{"reference":"https://ehr.example/fhir/Practitioner/pr1"}`, ID("Practitioner/pr1"), refLiteral},
		{"versioned", `{"reference":"Practitioner/pr1/_history/4"}`, ID("Practitioner/pr1"), refLiteral},
		{"urn:uuid", `{"reference":"urn:uuid:pr1"}`, ID("Practitioner/pr1"), refLiteral},
		{"conditional by NPI", `{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"}`, ID(npiKey), refIdentifier},
		{"logical by NPI", `{"identifier":{"system":"http://hl7.org/fhir/sid/us-npi","value":"123"}}`, ID(npiKey), refIdentifier},
		{"logical by an id system", `{"identifier":{"system":"https://github.com/synthetichealth/synthea","value":"pr1"}}`, ID("Practitioner/pr1"), refLiteral},
		{"contained", `{"reference":"#perf"}`, nil, refUnresolvable},
		{"display only", `{"display":"Dr. Who"}`, nil, refUnresolvable},
		{"an Organization", `{"reference":"Organization/o1"}`, nil, refOtherType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProcessor(t, nil)
			rows, err := run(t, p, "Procedure/x", `{"resourceType":"Procedure","id":"x","status":"completed","code":{"text":"x"},
				"subject":{"reference":"Patient/p1"},"performedDateTime":"2020-01-01","performer":[{"actor":`+tc.actor+`}]}`)
			if err != nil {
				t.Fatal(err)
			}
			if got := rows[0].row["provider_id"]; got != tc.want {
				t.Errorf("provider_id %v, want %v", got, tc.want)
			}
			refs := p.Summary().References
			if refs["Practitioner: "+tc.outcome] != 1 || refs["Patient: "+refLiteral] != 1 || len(refs) != 2 {
				t.Errorf("references counted %v, want Practitioner: %s and Patient: %s once each", refs, tc.outcome, refLiteral)
			}
		})
	}
}

// TestRecordOutcomes checks that every record not rejected is counted exactly once, as
// mapped, deleted or dropped with its reason: the stage's side of the reconciliation.
func TestRecordOutcomes(t *testing.T) {
	p := newTestProcessor(t, nil)
	for _, g := range goldens() {
		if !g.vocab {
			run(t, p, g.key, g.json) //nolint:errcheck // rejections are counted, which is what is checked
		}
	}
	run(t, p, "Observation/gone", "") //nolint:errcheck
	recs := p.Summary().Records
	for k, want := range map[string]int64{
		"Encounter: dropped: status-cancelled":           1,
		"Condition: dropped: verification-refuted":       1,
		"Device: dropped: no-patient":                    1,
		"Claim: dropped: type-not-mapped":                1,
		"ExplanationOfBenefit: dropped: type-not-mapped": 1,
		"Patient: mapped":                                3, // p1, p2 (deceased without date: its person row is written), p5
		"Observation: deleted":                           1,
	} {
		if recs[k] != want {
			t.Errorf("%s: %d, want %d (all: %v)", k, recs[k], want, recs)
		}
	}
	var n, rejected int64
	for _, v := range recs {
		n += v
	}
	for _, v := range p.Summary().Rejected {
		rejected += v
	}
	inputs := int64(0)
	for _, g := range goldens() {
		if !g.vocab {
			inputs++
		}
	}
	if n+rejected != inputs+1 {
		t.Errorf("outcomes %d + rejections %d != %d records", n, rejected, inputs+1)
	}
}
