package omop

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/vocab"
)

// The view writes its period type as a literal; it must be the verified built-in
// constant (internal/vocab TestBuiltinConceptsVerified checks the constant itself).
func TestObservationPeriodSQLUsesVerifiedPeriodType(t *testing.T) {
	want := strconv.Itoa(int(vocab.TypeEHRPeriod)) + " AS period_type_concept_id"
	if !strings.Contains(ObservationPeriodSQL, want) {
		t.Fatalf("ObservationPeriodSQL does not contain %q", want)
	}
}
