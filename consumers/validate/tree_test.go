package validate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// FuzzScanMatchesFastjson: whatever the fast scanner accepts, fastjson accepts too and
// reads as the same tree, so taking the fast path never changes a verdict.
func FuzzScanMatchesFastjson(f *testing.F) {
	f.Add([]byte(goodObservation))
	f.Add([]byte(`{"a":[1,-0.5e+3,true,false,null,{},[],""],"b":{"c":"é"}}`))
	f.Add([]byte(" [ 0 , 1E2 ] \n"))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`{"a":01}`))
	f.Add([]byte(`{"a":"\u0041"}`))
	f.Add([]byte("{\"note\":\"abcdefgh\xc3\xa9ijklmnop\",\"k\xe2\x82\xacy\":\"short \xc3\xa9\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast tree
		if !fast.scan(data) {
			return
		}
		// What scan accepts is ASCII exactly when it says so (Validate then skips the
		// UTF-8 pass).
		ascii := true
		for _, c := range data {
			ascii = ascii && c < 0x80
		}
		if fast.ascii() != ascii {
			t.Fatalf("scan says ascii=%v, the bytes say %v: %q", fast.ascii(), ascii, data)
		}
		var p fastjson.Parser
		root, err := p.ParseBytes(data)
		if err != nil {
			t.Fatalf("scan accepted what fastjson rejects (%v): %q", err, data)
		}
		var slow tree
		slow.load(root)
		if len(fast.nodes) != len(slow.nodes) {
			t.Fatalf("scan read %d values, fastjson %d: %q", len(fast.nodes), len(slow.nodes), data)
		}
		for i := range int32(len(fast.nodes)) {
			f, s := fast.nodes[i], slow.nodes[i]
			if f.typ != s.typ || f.parent != s.parent || f.end != s.end || fast.key(i) != slow.key(i) || fast.str(i) != slow.str(i) {
				t.Fatalf("value %d: scan %+v %q %q, fastjson %+v %q %q: %q", i, f, fast.key(i), fast.str(i), s, slow.key(i), slow.str(i), data)
			}
		}
	})
}

func TestScanGivesUpOnTheUnusual(t *testing.T) {
	for _, in := range []string{
		`{"a":"\n"}`, // an escape: fastjson unescapes
		"{\"a\":\"\x01\"}",
		`{"a":1,}`,
		`{"a":01}`,
		`{"a":NaN}`,
		`[1] x`,
		``,
		strings.Repeat("[", maxScanDepth+2) + strings.Repeat("]", maxScanDepth+2),
	} {
		var tr tree
		if tr.scan([]byte(in)) {
			t.Errorf("scan accepted %q", in)
		}
	}
}

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
