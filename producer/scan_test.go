package producer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/internal/synth"
)

// scanSeeds are lines of every shape the fetcher meets or might: FHIR resources, the
// bad lines the dead-letter tests use, and the corners where fastjson is lenient.
var scanSeeds = []string{
	`{"resourceType":"Patient","id":"p1","name":[{"family":"Doe","given":["J"]}],"active":true}`,
	` {"id":"o-1.2", "resourceType" : "Observation", "valueQuantity":{"value":1.5e3,"unit":"mg"}} `,
	`{"resourceType":"Patient"}`,
	`{"id":"x"}`,
	`{}`,
	`[]`,
	`[{"resourceType":"Patient","id":"a"}]`,
	`"Patient"`,
	`42`,
	`null`,
	`true`,
	`{"resourceType":"Patient","id":"a"`,
	`{"resourceType":"Patient","id":"a"}}`,
	`{"resourceType":"Patient","id":"a",}`,
	`{"resourceType":"Patient" "id":"a"}`,
	`{"resourceType":Patient,"id":"a"}`,
	`{"resourceType":"Patient","id":"a"} x`,
	`{"resourceType":"Patient","id":""}`,
	`{"resourceType":"","id":"a"}`,
	`{"resourceType":1,"id":"a"}`,
	`{"resourceType":"Patient","id":7}`,
	`{"resourceType":null,"resourceType":"Patient","id":"a"}`,
	`{"resourceType":"Patient","resourceType":"Observation","id":"a","id":"b"}`,
	`{"resource\u0054ype":"Patient","id":"a"}`,
	`{"resourceType":"Pat\u0069ent","id":"a"}`,
	`{"resourceType":"Patient","id":"a\"b"}`,
	`{"resourceType":"Patient","id":"a","x":"q\\"}`,
	`{"resourceType":"Patient","id":"a","x":"q\\\"z"}`,
	`{"resourceType":"Patient","id":"a","x":NaN,"y":-Inf,"z":nan,"w":+1,"v":1.2.3e}`,
	`{"resourceType":"Patient","id":"a","x":-}`,
	`{"resourceType":"Patient","id":"a","x":tru}`,
	`{"resourceType":"Patient","id":"a","x":nul}`,
	`{"resourceType":"Patient","id":"a","x":"` + "\x01\xff" + `"}`,
	`{"resourceType":"Patient","id":"a","x":[1,,2]}`,
	`{"resourceType":"Patient","id":"a","x":[1,2,]}`,
	`{"resourceType":"Patient","id":"a","x":{"k" 1}}`,
	"{\t\"resourceType\"\r:\n\"Patient\" ,\"id\":\"a\"}",
	`{"resourceType":"Patient","id":"a","deep":` + strings.Repeat("[", 298) + strings.Repeat("]", 298) + `}`,
	`{"resourceType":"Patient","id":"a","deep":` + strings.Repeat("[", 299) + strings.Repeat("]", 299) + `}`,
	`{"resourceType":"Patient","id":"a","deep":` + strings.Repeat(`{"a":`, 299) + `1` + strings.Repeat("}", 299) + `}`,
	// Escapes and quotes on either side of the scanner's eight-byte word boundaries.
	`{"resourceType":"Patient","id":"a","x":"1234567\"89abcdefg"}`,
	`{"resourceType":"Patient","id":"a","x":"12345678\\"}`,
	`{"resourceType":"Patient","id":"a","x":"123456\\\"7\\\\"}`,
	`{"resourceType":"Patient","id":"a","x":"1234567\`,
	`{"resourceType":"Patient","id":"a","x":"12345678`,
	`{"resourceType":"Patient","id":"abcdefghijklmnop\"}`,
	``,
	`{`,
	`{"`,
	`{"a`,
	`{"a":`,
}

// checkScanAgainstFastjson fails unless scanResource agrees with fastjson on line: when
// it decides, fastjson must parse the line as an object with the same resourceType and
// id (nil alike); when fastjson finds a plain object without escapes, the scanner must
// decide (or the fast path would be no faster).
func checkScanAgainstFastjson(t *testing.T, line []byte) {
	t.Helper()
	rt, id, ok := scanResource(line)
	var p fastjson.Parser
	v, err := p.ParseBytes(line)
	if !ok {
		if err == nil && v.Type() == fastjson.TypeObject && !strings.Contains(string(line), `\`) {
			t.Fatalf("scanner gave up on %q, which fastjson parses as an object", line)
		}
		return
	}
	if err != nil {
		t.Fatalf("scanner accepted %q; fastjson: %v", line, err)
	}
	if v.Type() != fastjson.TypeObject {
		t.Fatalf("scanner accepted %q as an object; fastjson: %s", line, v.Type())
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{{"resourceType", rt, v.GetStringBytes("resourceType")}, {"id", id, v.GetStringBytes("id")}} {
		if (c.got == nil) != (c.want == nil) || string(c.got) != string(c.want) {
			t.Fatalf("%q: scanner %s = %q (nil %v), fastjson %q (nil %v)", line, c.name, c.got, c.got == nil, c.want, c.want == nil)
		}
	}
}

func TestScanResourceAgreesWithFastjson(t *testing.T) {
	for _, s := range scanSeeds {
		checkScanAgainstFastjson(t, []byte(s))
	}
}

func TestScanResourceReadsTypeAndID(t *testing.T) {
	rt, id, ok := scanResource([]byte(`{"meta":{"id":"inner","resourceType":"X"},"resourceType":"Encounter","id":"e-9"}`))
	if !ok || string(rt) != "Encounter" || string(id) != "e-9" {
		t.Fatalf("got %q %q %v, want the top-level Encounter e-9", rt, id, ok)
	}
}

func FuzzScanResource(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkScanAgainstFastjson)
}

// BenchmarkScanResource compares the scanner with the fastjson parse it replaces, over
// the lines of a generated export.
func BenchmarkScanResource(b *testing.B) {
	dir := b.TempDir()
	if _, err := synth.WriteDir(context.Background(), synth.Config{Patients: 20, Seed: 3}, dir); err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	var size int64
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		for l := range bytes.SplitSeq(bytes.TrimSpace(data), []byte("\n")) {
			lines, size = append(lines, l), size+int64(len(l))
		}
	}
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			for _, l := range lines {
				if _, _, ok := scanResource(l); !ok {
					b.Fatalf("scanner gave up on %.100q", l)
				}
			}
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		b.SetBytes(size)
		var p fastjson.Parser
		for b.Loop() {
			for _, l := range lines {
				v, err := p.ParseBytes(l)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = v.GetStringBytes("resourceType"), v.GetStringBytes("id")
			}
		}
	})
}
