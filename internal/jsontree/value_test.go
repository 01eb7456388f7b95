package jsontree

import (
	"errors"
	"strings"
	"testing"
)

// observation is a FHIR Observation of the generator's shape: components, codings,
// numbers, a boolean and a null-free object nesting three deep.
const observation = `{"resourceType":"Observation","id":"obs-1","meta":{"versionId":"2","lastUpdated":"2024-05-01T10:00:00Z"},` +
	`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
	`"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}],"text":"Blood pressure"},` +
	`"subject":{"reference":"Patient/p-1"},"effectiveDateTime":"2024-05-01T09:58:00Z",` +
	`"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mm[Hg]"}},` +
	`{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":-8.5e1,"unit":"mm[Hg]"}}],` +
	`"extension":[],"derived":true,"x":null}`

func TestValueLookups(t *testing.T) {
	for _, doc := range []string{observation,
		// The same document with escapes, which takes the fastjson path.
		strings.Replace(observation, `"text":"Blood pressure"`, `"text":"Blood\u0020pressure"`, 1)} {
		var tr Tree
		if err := tr.Parse([]byte(doc)); err != nil {
			t.Fatal(err)
		}
		r := tr.Root()
		if got := r.String("code", "text"); got != "Blood pressure" {
			t.Errorf("code.text = %q", got)
		}
		if got := r.String("meta", "versionId"); got != "2" {
			t.Errorf("meta.versionId = %q", got)
		}
		if s, ok := r.LookupString("subject", "display"); ok || s != "" {
			t.Errorf("absent string: %q %v", s, ok)
		}
		if s, ok := r.LookupString("x"); ok || s != "" {
			t.Errorf("null read as a string: %q %v", s, ok)
		}
		if !r.Exists("x") || r.Exists("y") || r.Get("y") != nil || r.Get("y").Exists("z") {
			t.Error("Exists/Get of present null and absent member")
		}
		if r.Type() != TypeObject || r.Get("x").Type() != TypeNull || r.Get("y").Type() != TypeNull || r.Get("component").Type() != TypeArray {
			t.Error("types")
		}
		if !r.Bool("derived") || r.Bool("status") || r.Bool("none") {
			t.Error("Bool")
		}
		if r.Len("component") != 2 || r.Len("extension") != 0 || r.Len("status") != 0 || r.Len("meta") != 2 {
			t.Errorf("Len: component %d, extension %d, meta %d", r.Len("component"), r.Len("extension"), r.Len("meta"))
		}
		var values []float64
		for i, c := range r.Elems("component") {
			f, err := c.Float64("valueQuantity", "value")
			if err != nil {
				t.Fatal(err)
			}
			if c.Get("code").Elem(0, "coding").String("code") == "" || i != len(values) {
				t.Errorf("component %d", i)
			}
			values = append(values, f)
		}
		if len(values) != 2 || values[0] != 120 || values[1] != -85 {
			t.Errorf("component values %v", values)
		}
		if _, err := r.Float64("status"); err == nil {
			t.Error("a string read as a number")
		}
		for range r.Elems("code") { // an object, not an array
			t.Error("Elems of an object yielded")
		}
		var keys []string
		for k, v := range r.Members("meta") {
			keys = append(keys, k+"="+v.String())
			if v.Key() != k {
				t.Errorf("Key %q, member %q", v.Key(), k)
			}
		}
		if strings.Join(keys, ",") != "versionId=2,lastUpdated=2024-05-01T10:00:00Z" {
			t.Errorf("members of meta: %v", keys)
		}
		if r.Elem(5, "component") != nil || r.Elem(1, "component") == nil {
			t.Error("Elem")
		}
		var absent *Value
		if absent.String("a") != "" || absent.Len() != 0 || absent.Key() != "" || absent.Bool() {
			t.Error("methods of an absent value")
		}
	}
}

// TestHandlesStayPut: a handle asked for a second time is the same one, and earlier
// handles keep their values while others are asked for.
func TestHandlesStayPut(t *testing.T) {
	var tr Tree
	if err := tr.Parse([]byte(observation)); err != nil {
		t.Fatal(err)
	}
	code, subject := tr.Root().Get("code"), tr.Root().Get("subject")
	if tr.Root().Get("code") != code || code.String("text") != "Blood pressure" || subject.String("reference") != "Patient/p-1" {
		t.Error("handles moved")
	}
	// A bigger document after a smaller one: the handle slots grow with it.
	big := `{"a":[` + strings.Repeat(`{"b":1},`, 500) + `{"b":2}]}`
	if err := tr.Parse([]byte(big)); err != nil {
		t.Fatal(err)
	}
	if f, _ := tr.Root().Elem(500, "a").Float64("b"); f != 2 {
		t.Errorf("last element's b = %v", f)
	}
}

func TestParseIsStrict(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"a":"x\0y"}`, "an invalid escape in a string at byte 7"},
		{`{"a":"x\u12"}`, `a \u escape without four hex digits in a string at byte 7`},
		{`{"a":"\u00g1"}`, `a \u escape without four hex digits in a string at byte 6`},
		{"{\"a\":\"\\n\x01\"}", "a raw control character in a string at byte 8"},
		{`{"a":.}`, "a number outside JSON's grammar"},
		{`{"a":01}`, "a number outside JSON's grammar"},
		{`[1.]`, "a number outside JSON's grammar"},
		{`[-]`, "not valid JSON"},
		{`{"a":NaN}`, "not valid JSON"},
		{`{"a":1,}`, "not valid JSON"},
		{`{"id":"1" "name":"Jane Doe"}`, "syntax error at byte 11"},
		{" \n", "empty value"},
		{strings.Repeat("[", 400) + strings.Repeat("]", 400), "nested deeper than 300 levels"},
		{``, "not valid JSON"},
		{`{"a":1} x`, "not valid JSON"},
	} {
		var tr Tree
		if err := tr.Parse([]byte(`{"a":1}`)); err != nil {
			t.Fatal(err)
		}
		err := tr.Parse([]byte(c.doc))
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want a SyntaxError with %q", c.doc, err, c.want)
		}
		if strings.Contains(err.Error(), "Jane") {
			t.Errorf("%q: the message quotes the document: %v", c.doc, err)
		}
		if tr.Root() != nil || tr.Root().String("a") != "" {
			t.Errorf("%q: the tree still holds the previous document", c.doc)
		}
	}
	for _, doc := range []string{`{"a":"\"\\\/\b\f\n\r\t\u00e9\uD83E\uDE7A"}`, ` [1 , 2 ] `, `"x"`, `0`} {
		var tr Tree
		if err := tr.Parse([]byte(doc)); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

// FuzzHasControl: the eight-bytes-at-a-time test agrees with a byte loop.
func FuzzHasControl(f *testing.F) {
	f.Add([]byte("abcdefgh\x1fijkl"))
	f.Add([]byte("\xff\xfe\x80 !\"#"))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := false
		for _, c := range b {
			want = want || c < 0x20
		}
		if got := hasControl(b); got != want {
			t.Fatalf("hasControl(%q) = %v, want %v", b, got, want)
		}
	})
}

// BenchmarkParseAndRead parses the Observation and reads a dozen fields, as a stage does.
func BenchmarkParseAndRead(b *testing.B) {
	doc := []byte(observation)
	var tr Tree
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Parse(doc); err != nil {
			b.Fatal(err)
		}
		r := tr.Root()
		n := len(r.String("id")) + len(r.String("status")) + len(r.String("subject", "reference"))
		for _, c := range r.Elems("component") {
			v, _ := c.Float64("valueQuantity", "value")
			n += int(v) + len(c.Get("code").Elem(0, "coding").String("code"))
		}
		if n == 0 {
			b.Fatal("nothing read")
		}
	}
}

// TestTypeNames: messages name types as JSON does (validate's "got array").
func TestTypeNames(t *testing.T) {
	var tr Tree
	if err := tr.Parse([]byte(`[null,{},[],"",0,true,false]`)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tr.Root().Elems() {
		got = append(got, e.Type().String())
	}
	if strings.Join(got, " ") != "null object array string number true false" || Type(9).String() != "Type(9)" {
		t.Errorf("type names %v", got)
	}
}
