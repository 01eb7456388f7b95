package jsontree

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// FuzzScanMatchesFastjson: whatever the fast scanner accepts, fastjson accepts too and
// reads as the same tree, so taking the fast path never changes a verdict.
func FuzzScanMatchesFastjson(f *testing.F) {
	f.Add([]byte(observation))
	f.Add([]byte(`{"a":[1,-0.5e+3,true,false,null,{},[],""],"b":{"c":"é"}}`))
	f.Add([]byte(" [ 0 , 1E2 ] \n"))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`{"a":01}`))
	f.Add([]byte(`{"a":"\u0041"}`))
	f.Add([]byte("{\"note\":\"abcdefgh\xc3\xa9ijklmnop\",\"k\xe2\x82\xacy\":\"short \xc3\xa9\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast Tree
		if !fast.scan(data) {
			return
		}
		// What scan accepts is ASCII exactly when it says so (a validator may then skip
		// the UTF-8 pass).
		ascii := true
		for _, c := range data {
			ascii = ascii && c < 0x80
		}
		fast.scanned = true
		if fast.ASCII() != ascii {
			t.Fatalf("scan says ascii=%v, the bytes say %v: %q", fast.ASCII(), ascii, data)
		}
		var p fastjson.Parser
		root, err := p.ParseBytes(data)
		if err != nil {
			t.Fatalf("scan accepted what fastjson rejects (%v): %q", err, data)
		}
		var slow Tree
		slow.load(root)
		if len(fast.Nodes) != len(slow.Nodes) {
			t.Fatalf("scan read %d values, fastjson %d: %q", len(fast.Nodes), len(slow.Nodes), data)
		}
		for i := range int32(len(fast.Nodes)) {
			f, s := fast.Nodes[i], slow.Nodes[i]
			if f.Type != s.Type || f.Parent != s.Parent || f.End != s.End || fast.Key(i) != slow.Key(i) || fast.Str(i) != slow.Str(i) {
				t.Fatalf("value %d: scan %+v %q %q, fastjson %+v %q %q: %q", i, f, fast.Key(i), fast.Str(i), s, slow.Key(i), slow.Str(i), data)
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
		var tr Tree
		if tr.scan([]byte(in)) {
			t.Errorf("scan accepted %q", in)
		}
	}
}

// FuzzParseIsStrictJSON: whatever Parse accepts, encoding/json accepts too (Parse leaves
// UTF-8 to its caller, so only valid UTF-8 is compared), on either path.
func FuzzParseIsStrictJSON(f *testing.F) {
	f.Add([]byte(observation))
	f.Add([]byte(`{"a":"\u0041\n","b":[1.5e3,-0,true,null]}`))
	f.Add([]byte(`{"a":"x\0"}`))
	f.Add([]byte(" [ 0 , 1E2 ] \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr Tree
		if tr.Parse(data) != nil || !utf8.Valid(data) {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("Parse accepted what encoding/json rejects: %q", data)
		}
	})
}
