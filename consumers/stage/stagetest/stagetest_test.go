package stagetest_test

import (
	"context"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/consumers/stage/stagetest"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestChainValidateDedupe feeds raw records through the real validate and dedupe
// processors: what validate rejects stops there, dedupe drops the exact repeat and marks
// the update with the version it replaces.
func TestChainValidateDedupe(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	patient := func(version, gender string) []byte {
		return []byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"` + version + `"},"gender":"` + gender + `","birthDate":"1970-01-01"}`)
	}
	raw := func(value []byte) stage.Record {
		return stage.Record{Topic: topics.Raw("Patient"), Key: []byte("Patient/p1"), Value: value}
	}
	chain := stagetest.NewChain(&validate.Processor{Topics: topics, Validator: validate.New(validate.Options{})},
		&dedupe.Processor{Topics: topics})
	out, err := chain.Feed(context.Background(),
		raw(patient("1", "female")),
		raw(patient("1", "female")),     // an exact repeat: dropped by dedupe
		raw(patient("2", "not-a-code")), // bad gender code: rejected by validate
		raw(patient("2", "male")),       // an update
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Topic != topics.Unique("Patient") || string(out[1].Value) != string(patient("2", "male")) {
		t.Fatalf("chain emitted %d records, want version 1 and version 2 on %s: %+v", len(out), topics.Unique("Patient"), out)
	}
	if _, ok := out[0].Header(schemas.HeaderPreviousVersion); ok {
		t.Error("the first version carries a previous-version header")
	}
	if v, ok := out[1].Header(schemas.HeaderPreviousVersion); !ok || string(v) != "1" {
		t.Errorf("the update's previous version: %q, %v; want 1", v, ok)
	}
	if len(chain.Rejected) != 1 || chain.Rejected[0].Stage != 0 || chain.Rejected[0].Rejection.Class != schemas.ClassBadCode {
		t.Fatalf("rejected: %+v, want the bad code at validate", chain.Rejected)
	}
}
