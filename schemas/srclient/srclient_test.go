package srclient

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/fhirstream/fhirstream/schemas"
)

func TestRegistryEnforcesFullTransitiveAndRoundTrips(t *testing.T) {
	ctx := context.Background()
	fake := srfake.New()
	defer fake.Close()
	reg, err := Dial(fake.URL())
	if err != nil {
		t.Fatal(err)
	}
	codecs, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	rc := schemas.NewRegistryCodec(codecs, reg, schemas.Topics{})
	row := map[string]any{"person_id": int64(7), "gender_concept_id": int32(8532), "year_of_birth": int32(1980),
		"race_concept_id": int32(0), "ethnicity_concept_id": int32(0), "_fhir_key": "Patient/7", "_fhir_component": int32(0),
		"_fhir_deleted": false}
	value, err := rc.Encode(ctx, "person", row)
	if err != nil {
		t.Fatal(err)
	}
	table, got, err := schemas.NewRegistryCodec(codecs, reg, schemas.Topics{}).Decode(ctx, value)
	if err != nil || table != "person" || got["person_id"] != int64(7) {
		t.Fatalf("round trip: %s %v %v", table, got, err)
	}

	// The subject now holds the contract's compatibility level, so the registry itself
	// refuses a schema change that would break a subscriber.
	cl, _ := sr.NewClient(sr.URLs(fake.URL()))
	res := cl.Compatibility(ctx, "omop.person-value")
	if len(res) != 1 || res[0].Err != nil || res[0].Level != sr.CompatFullTransitive {
		t.Fatalf("subject compatibility: %+v, want FULL_TRANSITIVE", res)
	}

	if _, found, err := reg.Lookup(ctx, 999); found || err != nil {
		t.Fatalf("unknown id: found=%v err=%v, want not found without error", found, err)
	}
	id, err := cl.RegisterSchema(ctx, "other-value", sr.Schema{Schema: `syntax = "proto3"; message M {}`, Type: sr.TypeProtobuf}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if s, found, err := reg.Lookup(ctx, id); !found || err != nil || s.Type != "PROTOBUF" {
		t.Fatalf("protobuf schema: %+v found=%v err=%v", s, found, err)
	}
	if _, _, err := rc.Decode(ctx, []byte{0, 0, 0, 0, byte(id), 0}); err == nil {
		t.Fatal("a value framed with a protobuf schema id decoded")
	}
}
