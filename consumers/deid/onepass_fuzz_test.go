package deid

import (
	"fmt"
	"testing"
)

// FuzzOnePassMatchesTree holds the one-pass path to the tree path on arbitrary input:
// whatever the one-pass path writes, the tree path writes too, byte for byte, and what
// it declines the tree path handles alone. The seeds (run by go test) are resources with
// the shapes the one-pass path must get right or decline: JSON at the edges of its
// grammar, removals that empty objects and arrays, nulls, contained resources, duplicate
// members.
func FuzzOnePassMatchesTree(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-02-29T10:11:12+01:00","valueQuantity":{"value":-1.5e3,"unit":"kg"}}`,
		`{"resourceType":"Patient","id":"p1","name":[{"family":"F","given":["A","B"]}],"birthDate":"1930-01-01","address":[{"line":["x"],"postalCode":"03601","state":"NH"}]}`,
		`{"resourceType":"Encounter","id":"e1","subject":{"reference":"urn:uuid:p1"},"period":{"start":"2020-01-01","end":"2020-01"},"participant":[{"individual":{"display":"Dr X"}}],"reasonCode":[{"text":"t"},{"coding":[{"code":"c"}]}]}`,
		`{"resourceType":"ExplanationOfBenefit","id":"x1","contained":[{"resourceType":"Coverage","id":"c1","status":"active"}],"insurance":[{"coverage":{"reference":"#c1"}}],"patient":{"reference":"Patient/p1"}}`,
		`{"resourceType":"Observation","id":"o1","id":"o2","note":[{"text":"free"}],"component":[{"code":{"text":"a"},"valueString":"v"},null,{"code":{}}]}`,
		`{"resourceType":"Observation","id":"o1","status":null,"category":[],"code":{},"valueInteger":01}`,
		`{"resourceType":"Observation","id":"o1","valueBoolean":tru}`,
		`{"resourceType":"Observation","id":"o1"} `,
		`{"resourceType":"Observation", "id":"o1"}`,
		`{"resourceType":"Observation","id":"o\u00e91"}`,
		`{"id":"o1","resourceType":"Observation"}`,
		`{"resourceType":"Observation","id":"o1","_status":{"extension":[{"url":"u","valueString":"x"}]}}`,
		`{"resourceType":"Observation","id":"o1","subject":{"reference":7}}`,
		`{"resourceType":"Nope","id":"o1"}`,
		`[{"resourceType":"Observation","id":"o1"}]`,
		`{"resourceType":"Observation","id":"o1","valueQuantity":{"value":1,"value":2},"issued":"2020-13-01T00:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	cfg, err := Preset("safe-harbor-dateshift")
	if err != nil {
		f.Fatal(err)
	}
	keys := Keys{CryptoHash: []byte("fuzz-crypto-hash-key"), DateShift: []byte("fuzz-date-shift-key")}
	e, err := New(cfg, keys, goldenClock)
	if err != nil {
		f.Fatal(err)
	}
	tree, err := New(cfg, keys, goldenClock, treePathOnly())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, gotErr := e.Apply(nil, in)
		want, wantErr := tree.Apply(nil, in)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || string(got.JSON) != string(want.JSON) || got.ID != want.ID || got.Type != want.Type {
			t.Fatalf("input %q:\none pass %s/%s %s (%v)\ntree     %s/%s %s (%v)", in, got.Type, got.ID, got.JSON, gotErr, want.Type, want.ID, want.JSON, wantErr)
		}
	})
}
