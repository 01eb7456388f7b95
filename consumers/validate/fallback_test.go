package validate

import (
	"fmt"
	"strings"
	"testing"
)

// TestFallbackPathChecksTheSame: resources the scanner leaves to fastjson (escapes, deep
// nesting) get the same checks, on unescaped keys and values.
func TestFallbackPathChecksTheSame(t *testing.T) {
	v := New(Options{})
	escaped := strings.Replace(goodObservation, `"text":"Heart rate"`, `"text":"Heart \"rate\"\n"`, 1)
	if fails := v.Validate("Observation", []byte("Observation/obs-1"), []byte(escaped)); len(fails) > 0 {
		t.Errorf("valid Observation with escapes rejected: %v", fails)
	}
	deep := strings.Repeat("[", 150) + `""` + strings.Repeat("]", 150)
	for _, c := range []struct{ name, typ, value, class, path string }{
		{"escaped key", "Observation", strings.Replace(goodObservation, `"status":"final"`, `"st\u0061tus":"done"`, 1), ClassBadCode, "Observation.status"},
		{"escaped reference", "Observation", strings.Replace(goodObservation, `"Patient/p-1"`, `"Patient\/p 1"`, 1), ClassBadReference, "Observation.subject.reference"},
		{"deep nesting", "Basic", `{"resourceType":"Basic","id":"b","x":` + deep + `}`, ClassBadFormat, "Basic.x" + strings.Repeat("[0]", 150)},
	} {
		fails := v.Validate(c.typ, nil, []byte(c.value))
		if len(fails) != 1 || fails[0].Class != c.class || fails[0].Path != c.path {
			t.Errorf("%s: got %v, want one %s at %s", c.name, fails, c.class, c.path)
		}
	}
}

// TestPathsOfArrayItems: failures deep in arrays name each index, as the path is now
// rebuilt from the tree only when something fails.
func TestPathsOfArrayItems(t *testing.T) {
	value := `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},` +
		`"component":[{"code":{"text":"a"}},{"code":{"text":"b"},"valueQuantity":{"value":"7"}},{}],` +
		`"category":[{"coding":[{"system":"s","code":"c"},{"system":"s","code":"c"},{"code":"c"}]}]}`
	var got []string
	for _, f := range New(Options{}).Validate("Observation", nil, []byte(value)) {
		got = append(got, fmt.Sprintf("%s %s", f.Class, f.Path))
	}
	want := []string{
		"bad-coding Observation.category[0].coding[2].system",
		"missing-required Observation.component[2].code",
		"bad-format Observation.component[1].valueQuantity.value",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %v, want %v", got, want)
	}
}
