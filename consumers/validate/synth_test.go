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
