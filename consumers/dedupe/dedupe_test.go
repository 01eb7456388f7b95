package dedupe

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/valyala/fastjson"
	"time"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

func res(id, version, lastUpdated, status string) string {
	meta := ""
	switch {
	case version != "" && lastUpdated != "":
		meta = fmt.Sprintf(`"meta":{"versionId":%q,"lastUpdated":%q},`, version, lastUpdated)
	case version != "":
		meta = fmt.Sprintf(`"meta":{"versionId":%q},`, version)
	case lastUpdated != "":
		meta = fmt.Sprintf(`"meta":{"lastUpdated":%q},`, lastUpdated)
	}
	return fmt.Sprintf(`{"resourceType":"Observation","id":%q,%s"status":%q}`, id, meta, status)
}

type collect []stage.Record

func (c *collect) Emit(r stage.Record) { *c = append(*c, r) }

func TestProcessorSequence(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	p := &Processor{Topics: topics}
	st := NewStore()
	const noHeader = "(none)"
	steps := []struct {
		key, value string // value "" = tombstone
		forward    bool
		prev       string // the fhir.previous-version header wanted, or noHeader
		why        string
	}{
		{"Observation/a", res("a", "1", "2024-01-01T00:00:00Z", "final"), true, noHeader, "new"},
		{"Observation/a", res("a", "1", "2024-01-01T00:00:00Z", "final"), false, "", "exact repeat"},
		{"Observation/a", res("a", "2", "2024-02-01T00:00:00Z", "amended"), true, "1", "newer version"},
		{"Observation/a", res("a", "1", "2024-01-01T00:00:00Z", "preliminary"), false, "", "stale version"},
		{"Observation/a", res("a", "1", "2024-01-01T00:00:00Z", "final"), false, "", "old repeat is stale"},
		{"Observation/a", res("a", "2", "2024-02-01T00:00:00Z", "corrected"), true, "2", "same version, new content"},
		{"Observation/b", res("b", "", "2024-01-01T00:00:00Z", "final"), true, noHeader, "new key"},
		{"Observation/b", res("b", "", "2023-12-31T23:59:59.999999Z", "amended"), false, "", "older lastUpdated"},
		{"Observation/b", res("b", "", "2024-01-01T00:00:00.000001Z", "amended"), true, "", "newer by a microsecond"},
		{"Observation/c", res("c", "", "", "final"), true, noHeader, "no meta, new"},
		{"Observation/c", res("c", "", "", "final"), false, "", "no meta, repeat"},
		{"Observation/c", res("c", "", "", "amended"), true, "", "no meta, changed"},
		{"Observation/a", "", true, "2", "tombstone of a known key"},
		{"Observation/a", res("a", "1", "2024-01-01T00:00:00Z", "final"), true, noHeader, "after delete, old version is new again"},
		{"Observation/d", res("d", "v7", "", "final"), true, noHeader, "non-numeric version"},
		{"Observation/d", res("d", "v6", "", "amended"), true, UnknownPreviousVersion, "non-numeric versions are not ordered: changed"},
		{"Observation/d", res("d", "4294967293", "", "final"), true, UnknownPreviousVersion, "largest numeric version kept"},
		{"Observation/d", res("d", "4294967294", "", "amended"), true, "4294967293", "version too large to keep"},
		{"Observation/d", "", true, UnknownPreviousVersion, "tombstone after a version not kept"},
		{"Observation/e", "", true, noHeader, "tombstone of an unknown key"},
		{"Observation/e", res("e", "3", "", "final"), true, noHeader, "new after an unknown tombstone"},
	}
	for i, s := range steps {
		var out collect
		// The input's own (stale) previous-version header must never pass through.
		in := &stage.Record{Topic: topics.Valid("Observation"), Key: []byte(s.key),
			Headers: []stage.Header{{Key: "h", Value: []byte("v")}, {Key: schemas.HeaderPreviousVersion, Value: []byte("stale")}}}
		if s.value != "" {
			in.Value = []byte(s.value)
		}
		if err := p.Process(context.Background(), in, st, &out); err != nil {
			t.Fatalf("step %d (%s): %v", i, s.why, err)
		}
		if got := len(out) == 1; got != s.forward {
			t.Fatalf("step %d (%s): forwarded=%v, want %v", i, s.why, got, s.forward)
		}
		if !s.forward {
			continue
		}
		o := out[0]
		if o.Topic != "fhir.unique.Observation" || string(o.Value) != s.value || string(o.Key) != s.key {
			t.Fatalf("step %d (%s): not forwarded unchanged: %+v", i, s.why, o)
		}
		if v, ok := o.Header("h"); !ok || string(v) != "v" {
			t.Fatalf("step %d (%s): provenance header lost: %+v", i, s.why, o.Headers)
		}
		var prevs []string
		for _, h := range o.Headers {
			if h.Key == schemas.HeaderPreviousVersion {
				prevs = append(prevs, string(h.Value))
			}
		}
		want := []string{s.prev}
		if s.prev == noHeader {
			want = nil
		}
		if fmt.Sprint(prevs) != fmt.Sprint(want) || len(prevs) != len(want) {
			t.Fatalf("step %d (%s): %s headers %q, want %q", i, s.why, schemas.HeaderPreviousVersion, prevs, want)
		}
	}
	if n := st.(*Store).Len(); n != 4 {
		t.Fatalf("store holds %d keys, want 4 (a, b, c, e)", n)
	}
}

func TestInvalidJSONRejected(t *testing.T) {
	p := &Processor{Topics: schemas.MustTopics("fhir")}
	err := p.Process(context.Background(), &stage.Record{Topic: "fhir.valid.Patient", Key: []byte("Patient/x"), Value: []byte("{")}, NewStore(), &collect{})
	if r, ok := stage.AsRejection(err); !ok || r.Class != "invalid-json" {
		t.Fatalf("err = %v, want an invalid-json rejection", err)
	}
}

func TestDecide(t *testing.T) {
	none := int64(math.MinInt64)
	cases := []struct {
		prev    *State
		cur     State
		forward bool
		reason  string
	}{
		{nil, State{Hash: 1, LastUpdated: none, Version: -1}, true, New},
		{&State{Hash: 1, LastUpdated: 5, Version: 3}, State{Hash: 1, LastUpdated: 1, Version: 1}, false, Duplicate},
		{&State{Hash: 1, LastUpdated: 5, Version: 3}, State{Hash: 2, LastUpdated: 9, Version: 2}, false, Stale},
		{&State{Hash: 1, LastUpdated: 5, Version: 3}, State{Hash: 2, LastUpdated: 1, Version: 4}, true, Newer},
		{&State{Hash: 1, LastUpdated: 5, Version: 3}, State{Hash: 2, LastUpdated: 4, Version: 3}, false, Stale},
		{&State{Hash: 1, LastUpdated: 5, Version: 3}, State{Hash: 2, LastUpdated: 5, Version: 3}, true, Changed},
		{&State{Hash: 1, LastUpdated: 5, Version: -1}, State{Hash: 2, LastUpdated: 6, Version: 7}, true, Newer},
		{&State{Hash: 1, LastUpdated: none, Version: -1}, State{Hash: 2, LastUpdated: 6, Version: -1}, true, Changed},
	}
	for i, c := range cases {
		f, r := Decide(c.prev, c.cur)
		if f != c.forward || r != c.reason {
			t.Errorf("case %d: Decide = %v %s, want %v %s", i, f, r, c.forward, c.reason)
		}
	}
}

func TestStateEncoding(t *testing.T) {
	for _, s := range []State{
		{Hash: 0xdeadbeefcafef00d, LastUpdated: math.MinInt64, Version: -1},
		{Hash: 1, LastUpdated: 2, Version: -1, OtherVersion: true},
		{Hash: 1, LastUpdated: 2, Version: 0},
		{Hash: 1, LastUpdated: 2, Version: MaxVersion},
	} {
		b := s.Encode(nil)
		if len(b) != StateSize {
			t.Fatalf("encoded %d bytes", len(b))
		}
		if got, ok := DecodeState(b); !ok || got != s {
			t.Fatalf("round trip of %+v: %+v %v", s, got, ok)
		}
	}
	b := State{Hash: 1}.Encode(nil)
	if _, ok := DecodeState(b[:10]); ok {
		t.Fatal("decoded a short value")
	}
}

// TestStoreBytesPerKey measures the in-memory cost of dedupe state, the figure the docs
// state: at most 64 bytes per key.
func TestStoreBytesPerKey(t *testing.T) {
	const n = 200_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = StoreKey(nil, []byte(fmt.Sprintf("Observation/%08d-aaaa-bbbb-cccc-dddddddddddd", i)))
	}
	val := State{Hash: 1, LastUpdated: 2, Version: 3}.Encode(nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st := NewStore()
	for _, k := range keys {
		st.Put(k, val)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / n
	runtime.KeepAlive(st)
	runtime.KeepAlive(keys)
	t.Logf("dedupe state: %.1f bytes/key over %d keys", perKey, n)
	if perKey > 64 {
		t.Fatalf("dedupe state uses %.1f bytes/key, the budget is 64", perKey)
	}
}

// FuzzMetaExtraction checks the scanner's extraction of meta against fastjson, the
// full parser validate reads resources with (first of duplicate keys wins in both).
func FuzzMetaExtraction(f *testing.F) {
	f.Add([]byte(res("a", "3", "2024-01-01T00:00:00.5+01:00", "final")))
	f.Add([]byte(`{"meta":{"versionId":1,"lastUpdated":"x"}}`))
	f.Add([]byte(`{"meta":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"meta":{"versionId":"\u0031"}}`))
	f.Add([]byte(`{"a":[{"b":"\"}"}],"m\u0065ta":{"versionId":"2","versionId":"3"},"meta":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		vid, lu, luOK, err := Meta(data)
		var p fastjson.Parser
		doc, perr := p.ParseBytes(data)
		if perr != nil || doc.Type() != fastjson.TypeObject {
			// Not a JSON object: the scanner skips values it does not need without
			// checking them, so only the other direction is checked.
			return
		}
		if err != nil {
			t.Fatalf("scanner failed on a JSON object fastjson accepts: %v", err)
		}
		var wantVid, wantLu string
		var hasLu bool
		if meta := doc.Get("meta"); meta != nil && meta.Type() == fastjson.TypeObject {
			if v := meta.Get("versionId"); v != nil && v.Type() == fastjson.TypeString {
				wantVid = string(v.GetStringBytes())
			}
			if v := meta.Get("lastUpdated"); v != nil && v.Type() == fastjson.TypeString {
				wantLu, hasLu = string(v.GetStringBytes()), true
			}
		}
		// (Checked after fastjson answered: visiting keys unescapes them in place.)
		if hasEscapedKey(data, doc) {
			// Meta matches member names as written, without unescaping: exporters write
			// names plainly, and "m\u0065ta" is not taken for "meta". fastjson unescapes
			// them (preferring a plain match), so such inputs are outside the comparison.
			return
		}
		if vid != wantVid {
			t.Fatalf("versionId %q, fastjson says %q", vid, wantVid)
		}
		want, werr := time.Parse(time.RFC3339Nano, wantLu)
		if (hasLu && werr == nil) != luOK || luOK && !want.Equal(lu) {
			t.Fatalf("lastUpdated %v/%v, fastjson says %q", lu, luOK, wantLu)
		}
	})
}

// hasEscapedKey reports whether a member name of doc, or of its meta object, is written
// with an escape sequence in data: its plain spelling followed by a colon is absent.
func hasEscapedKey(data []byte, doc *fastjson.Value) bool {
	escaped := false
	check := func(o *fastjson.Object) {
		o.Visit(func(k []byte, _ *fastjson.Value) {
			if !bytes.Contains(data, append(append([]byte{'"'}, k...), '"', ':')) {
				escaped = true
			}
		})
	}
	obj, _ := doc.Object()
	check(obj)
	if m := doc.Get("meta"); m != nil && m.Type() == fastjson.TypeObject {
		meta, _ := m.Object()
		check(meta)
	}
	return escaped
}

// TestStoreAgainstMap drives the open-addressing store and a Go map with the same
// random operations (including deletes that shift probe runs) and compares them.
func TestStoreAgainstMap(t *testing.T) {
	st := NewStore().(*Store)
	ref := map[[KeySize]byte][StateSize]byte{}
	rng := uint64(42)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	keyOf := func(n uint64) []byte { return StoreKey(nil, []byte(fmt.Sprintf("Patient/%d", n))) }
	for op := 0; op < 200_000; op++ {
		k := keyOf(next() % 5000)
		switch next() % 3 {
		case 0, 1:
			v := State{Hash: next(), LastUpdated: int64(next() >> 1), Version: int64(next() % 100)}.Encode(nil)
			st.Put(k, v)
			ref[[KeySize]byte(k)] = [StateSize]byte(v)
		case 2:
			st.Delete(k)
			delete(ref, [KeySize]byte(k))
		}
	}
	if st.Len() != len(ref) {
		t.Fatalf("store has %d keys, map %d", st.Len(), len(ref))
	}
	for n := uint64(0); n < 5000; n++ {
		k := keyOf(n)
		got, ok := st.Get(k)
		want, wok := ref[[KeySize]byte(k)]
		if ok != wok || (ok && string(got) != string(want[:])) {
			t.Fatalf("key %d: store %x %v, map %x %v", n, got, ok, want, wok)
		}
	}
}

// BenchmarkMeta measures meta extraction from a typical resource.
func BenchmarkMeta(b *testing.B) {
	v := []byte(res("a", "3", "2024-01-01T00:00:00.5+01:00", "final"))
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if _, _, ok, err := Meta(v); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkProcess measures Process per record on generated resources, each new (the
// stage benchmark's case), with the dedupe store and a discarding emitter: the stage's
// own cost, without the runtime's. (Outside the runtime CountCommitted increments its
// Prometheus counter at once, which the runtime does once per batch instead.)
func BenchmarkProcess(b *testing.B) {
	topics := schemas.MustTopics("bench")
	var recs []stage.Record
	err := synth.Generate(context.Background(), synth.Config{Patients: 20, Seed: 1}, func(rt string, line []byte) error {
		id := fastjson.GetString(line, "id")
		recs = append(recs, stage.Record{Topic: topics.Valid(rt), Key: schemas.Key(rt, id), Value: bytes.Clone(line)})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	p := &Processor{Topics: topics}
	var out discard
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		st := NewStore()
		for i := range recs {
			if err := p.Process(ctx, &recs[i], st, &out); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/record")
}

type discard struct{}

func (discard) Emit(stage.Record) {}
