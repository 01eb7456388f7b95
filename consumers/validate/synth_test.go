package validate

import (
	"context"
	"testing"

	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestSynthPasses: the project's data generator writes valid FHIR R4, so every resource
// it generates passes; a failure is a rule too strict or a generator bug.
func TestSynthPasses(t *testing.T) {
	v := New(Options{})
	n, bad := 0, 0
	err := synth.Generate(context.Background(), synth.Config{Patients: 25, Seed: 7}, func(rt string, line []byte) error {
		n++
		if fails := v.Validate(rt, schemas.Key(rt, idOf(line)), line); len(fails) > 0 {
			bad++
			if bad <= 10 {
				t.Errorf("%s: %v", rt, fails)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("generator produced nothing")
	}
	t.Logf("%d generated resources, %d rejected", n, bad)
}

// BenchmarkValidateSynth measures validation alone (no Kafka) over generated resources:
// the CPU price per record that the validate stage adds to the runtime's.
func BenchmarkValidateSynth(b *testing.B) {
	type res struct {
		rt        string
		key, line []byte
	}
	var docs []res
	var size int64
	err := synth.Generate(context.Background(), synth.Config{Patients: 10, Seed: 7}, func(rt string, line []byte) error {
		docs = append(docs, res{rt, schemas.Key(rt, idOf(line)), append([]byte(nil), line...)})
		size += int64(len(line))
		return nil
	})
	if err != nil || len(docs) == 0 {
		b.Fatal(err, len(docs))
	}
	v := New(Options{})
	b.SetBytes(size / int64(len(docs)))
	i := 0
	for b.Loop() {
		d := docs[i%len(docs)]
		if fails := v.Validate(d.rt, d.key, d.line); len(fails) > 0 {
			b.Fatal(fails)
		}
		i++
	}
}
