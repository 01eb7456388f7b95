package validate

import (
	"encoding/json"
	"testing"
)

// FuzzValidate: the validator never panics, never quotes input in messages it does not
// have to, and accepts only what is a JSON object with a resourceType and an id.
func FuzzValidate(f *testing.F) {
	f.Add("Observation", []byte(goodObservation))
	f.Add("Patient", []byte(`{"resourceType":"Patient","id":"p","birthDate":"1970-02-29","deceasedDateTime":"2020-01-01T00:00:00+14:00"}`))
	f.Add("Encounter", []byte(`{"resourceType":"Encounter","id":"e","status":"finished","class":{"system":"s","code":"c"},"location":[{"location":{"reference":"#l"}}],"contained":[{"id":"l"}]}`))
	f.Add("", []byte(`{"resourceType":"Basic","id":"b","x":[null,{"reference":"Patient?identifier=a|b"}]}`))
	f.Add("Observation", []byte(`{"resourceType":"Observation","id":"o","effectivePeriod":{"start":"2016-12-31T23:59:60Z"}}`))
	v := New(Options{})
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		fails := v.Validate(typ, nil, data)
		for _, fl := range fails {
			if fl.Class == "" || fl.Message == "" {
				t.Fatalf("failure without class or message: %+v", fl)
			}
		}
		if len(fails) > 0 {
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("accepted input encoding/json rejects: %v", err)
		}
		if rt, _ := doc["resourceType"].(string); rt == "" || (typ != "" && rt != typ) {
			t.Fatalf("accepted a resource with resourceType %q for topic type %q", doc["resourceType"], typ)
		}
		if id, _ := doc["id"].(string); id == "" {
			t.Fatalf("accepted a resource without a string id")
		}
	})
}
