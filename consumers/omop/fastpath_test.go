package omop

import (
	"bytes"
	"context"
	"hash/fnv"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// The mapper reads strings as views of the record's key and value or of its JSON tree
// (str), which belong to the next record once Process returns. Strings that outlive a
// record (the unmapped-code vocabulary of an unknown code system, the type of a resource
// the stage does not map) must be copies: this maps records from one key buffer and one
// value buffer, each overwritten by the next record, with the strings at the same offsets
// as the next records' different ones, and checks the summary still names the first ones.
func TestRecordStringsOutliveTheParser(t *testing.T) {
	p := newTestProcessor(t, nil)
	obs := func(system string) string {
		return `{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},` +
			`"effectiveDateTime":"2020-01-01","code":{"coding":[{"system":"` + system + `","code":"X1"}]}}`
	}
	var key, value []byte
	process := func(k, v string) {
		t.Helper()
		key, value = append(key[:0], k...), append(value[:0], v...)
		if err := p.Process(context.Background(), &stage.Record{Topic: "fhir.unique.X", Key: key, Value: value}, nil, &discard{}); err != nil {
			t.Fatal(err)
		}
	}
	process("Observation/o1", obs("urn:example:local-codes"))
	process("Basic/b1", `{"resourceType":"Basic","id":"b1"}`)
	for range 8 {
		process("Observation/o1", obs("urn:EXAMPLE:LOCAL-CODES"))
		process("Cxxxx/b1", `{"resourceType":"Cxxxx","id":"b1"}`)
	}
	s := p.Summary()
	counts := map[string]int64{}
	for _, u := range s.Unmapped {
		counts[u.Vocabulary+" "+u.Table] = u.Count
	}
	if counts["urn:example:local-codes observation"] != 1 || counts["urn:EXAMPLE:LOCAL-CODES observation"] != 8 {
		t.Errorf("unmapped counts %v, want 1 for the first system and 8 for the second", counts)
	}
	if s.Skipped["Basic: type-not-mapped"] != 1 || s.Skipped["Cxxxx: type-not-mapped"] != 8 {
		t.Errorf("skipped %v, want Basic 1 and Cxxxx 8", s.Skipped)
	}
}

func TestFNV64aMatchesHashFNV(t *testing.T) {
	for _, s := range []string{"", "a", "Patient/p1#address", strings.Repeat("Observation/é#12", 9)} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnv64a(s), h.Sum64(); got != want {
			t.Errorf("fnv64a(%q) = %#x, hash/fnv %#x", s, got, want)
		}
	}
}

// mapOnlyEncoder hides Codec.EncodeRow, so the Processor must hand it rows as maps.
type mapOnlyEncoder struct{ c *schemas.Codec }

func (e mapOnlyEncoder) Encode(ctx context.Context, table string, row map[string]any) ([]byte, error) {
	return e.c.Encode(ctx, table, row)
}
func (e mapOnlyEncoder) ContentType() string { return e.c.ContentType() }

// An Encoder without EncodeRow gets each row as schemas.Row.Map(): the values written
// must be the same bytes as through the positional path, over a generated export.
func TestMapOnlyEncoderWritesTheSameBytes(t *testing.T) {
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	positional := newTestProcessor(t, nil)
	viaMaps, err := New(Config{Topics: testTopics, Encoder: mapOnlyEncoder{codec}})
	if err != nil {
		t.Fatal(err)
	}
	if viaMaps.rowEnc != nil {
		t.Fatal("mapOnlyEncoder was taken for a row encoder")
	}
	n := 0
	err = synth.Generate(context.Background(), synth.Config{Patients: 3, Seed: 3}, func(rt string, line []byte) error {
		in := &stage.Record{Topic: testTopics.Unique(rt), Value: line}
		var a, b collect
		errA := positional.Process(context.Background(), in, nil, &a)
		errB := viaMaps.Process(context.Background(), in, nil, &b)
		if (errA == nil) != (errB == nil) || len(a.recs) != len(b.recs) {
			t.Fatalf("%s: positional %d rows, %v; via maps %d rows, %v", rt, len(a.recs), errA, len(b.recs), errB)
		}
		for i := range a.recs {
			if !bytes.Equal(a.recs[i].Value, b.recs[i].Value) || a.recs[i].Topic != b.recs[i].Topic {
				t.Fatalf("%s row %d differs:\n positional %x\n via maps   %x", rt, i, a.recs[i].Value, b.recs[i].Value)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Fatalf("only %d rows compared", n)
	}
}

func TestCollisionsDetectsADifferentKeyForAKnownID(t *testing.T) {
	c := newCollisions(1 << 10)
	if c.check(42, "Patient/a") {
		t.Fatal("a new id is not a collision")
	}
	if c.check(42, "Patient/a") {
		t.Fatal("the same key twice is not a collision")
	}
	if !c.check(42, "Patient/b") {
		t.Fatal("a second key for id 42 was not reported")
	}
	if c.check(43, "Patient/b") {
		t.Fatal("a new id is not a collision")
	}
	// Once full, a table checks the ids it knows and learns no new ones, whichever shard
	// they fall in.
	small := newCollisions(collisionShards / 2)
	for id := range int64(collisionShards / 2) {
		small.check(id, "k"+itoa(int(id)))
	}
	if !small.check(5, "other") {
		t.Error("a full table stopped checking known ids")
	}
	for id := int64(collisionShards / 2); id < 3*collisionShards; id++ {
		small.check(id, "x")
		if small.check(id, "y") {
			t.Fatalf("a full table learnt the new id %d", id)
		}
	}
	if off := newCollisions(-1); off.check(1, "a") || off.check(1, "b") {
		t.Error("a negative limit should disable detection")
	}
}
