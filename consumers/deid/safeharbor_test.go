package deid

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

// testNow is the clock of the tests: dates before 1936-12-06 indicate an age over 89.
var testNow = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

var testKeys = Keys{CryptoHash: []byte("test-crypto-hash-key"), DateShift: []byte("test-date-shift-key")}

var testTopics = schemas.MustTopics("")

type collect struct{ recs []stage.Record }

func (c *collect) Emit(r stage.Record) { c.recs = append(c.recs, r) }

func newTestProcessor(t testing.TB, preset string) *Processor {
	t.Helper()
	cfg, err := Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, testKeys, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	return &Processor{Topics: testTopics, Engine: e, Fingerprint: ConfigFingerprint(cfg)}
}

// identifyingStrings are the values in testdata/identifiers.ndjson that stand for the
// 18 Safe Harbor identifier classes (45 CFR 164.514(b)(2)(i)(A)-(R)); none may appear in
// the output of the Safe Harbor presets, in values, keys or headers.
var identifyingStrings = map[string][]string{
	"A names":                   {"Zebulon", "Quackenbush", "Ignatius", "Iggy-Q", "Featherstonehaugh", "Ottoline", "Methuselah", "Agatha"},
	"B geographic subdivisions": {"Juniper Hollow", "Apt 9", "Wakefieldton", "Middlesexia", "02138", "Olatheville", "03601", "036"},
	"C dates":                   {"1961-07-19", "2019-03-04", "1999-06-01", "2015-05-06", "1921", "1963-02-14", "T10:11:12", "T08:09:10"},
	"D telephone numbers":       {"555-867-5309", "555-000-4411"},
	"E fax numbers":             {"555-123-9876"},
	"F email addresses":         {"zq@quackenbush.example.org"},
	"G social security numbers": {"999-12-3456"},
	"H medical record numbers":  {"MRN-7788123"},
	"I health plan numbers":     {"HPB-55512", "MEMB-99123"},
	"J account numbers":         {"ACCT-220011", "household account"},
	"K certificate/license":     {"S99912345"},
	"L vehicle identifiers":     {"1HGCM82633A004352", "QUACK-1"},
	"M device identifiers":      {"00844588003288", "SN-4455-XYZ", "SN4455XYZ", "LOT-8812", "DEV-PM-4455", "pacemaker"},
	"N web URLs":                {"https://zq.quackenbush.example.org", "photos.example.org", "docs.example.org"},
	"O IP addresses":            {"203.0.113.77"},
	"P biometric identifiers":   {"RlVMTEZBQ0VQSE9UTw=="},
	"Q full-face photographs":   {"zq-face.jpg", "face photo"},
	"R other unique numbers":    {"pat-zq-0001", "pat-old-0002", "enc-zq-0001", "obs-zq-0001", "cov-zq-0001", "acct-zq-0001", "dev-zq-0001", "doc-zq-0001", "rel-zq-0001", "REL-ID-66123", "9999912345", "loc-home-zq", "org-77", "WmVidWxvbiBRdWFja2VuYnVzaA=="},
}

func readNDJSON(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestSafeHarborRemovesEveryIdentifierClass feeds resources carrying every identifier
// class through both Safe Harbor presets and the stage, and checks that none of their
// identifying strings is left anywhere in the output records: values, keys, headers.
func TestSafeHarborRemovesEveryIdentifierClass(t *testing.T) {
	for _, preset := range []string{"safe-harbor", "safe-harbor-dateshift"} {
		t.Run(preset, func(t *testing.T) {
			p := newTestProcessor(t, preset)
			var out collect
			for _, line := range readNDJSON(t, "testdata/identifiers.ndjson") {
				var head struct{ ResourceType, ID string }
				if err := json.Unmarshal(line, &head); err != nil {
					t.Fatal(err)
				}
				in := &stage.Record{
					Topic: testTopics.Unique(head.ResourceType), Key: schemas.Key(head.ResourceType, head.ID), Value: line,
					Headers: []stage.Header{
						{Key: schemas.ContentTypeHeader, Value: []byte(schemas.ContentTypeFHIR)},
						{Key: schemas.HeaderSourceURL, Value: []byte("https://ehr.example.org/files/" + head.ResourceType + ".ndjson?sig=" + head.ID)},
						{Key: schemas.HeaderSourceLine, Value: []byte("7")},
						{Key: schemas.HeaderExportID, Value: []byte("https://ehr.example.org/status/" + head.ID)},
						{Key: "x-custom", Value: []byte(head.ID)},
					},
				}
				n := len(out.recs)
				if err := p.Process(context.Background(), in, nil, &out); err != nil {
					t.Fatalf("%s/%s: %v", head.ResourceType, head.ID, err)
				}
				if len(out.recs) != n+1 {
					t.Fatalf("%s/%s: %d outputs", head.ResourceType, head.ID, len(out.recs)-n)
				}
			}
			for _, r := range out.recs {
				var all bytes.Buffer
				all.Write(r.Key)
				all.WriteByte('\n')
				all.Write(r.Value)
				for _, h := range r.Headers {
					all.WriteString("\n" + h.Key + "=" + string(h.Value))
				}
				for class, values := range identifyingStrings {
					for _, v := range values {
						if v == "036" {
							// the restricted ZIP area: its digits must all be zeroed.
							if bytes.Contains(all.Bytes(), []byte(`"036`)) {
								t.Errorf("%s: class %s: restricted ZIP prefix 036 kept", r.Key, class)
							}
							continue
						}
						if bytes.Contains(all.Bytes(), []byte(v)) {
							t.Errorf("%s: class %s: %q left in the output:\n%s", r.Key, class, v, all.String())
						}
					}
				}
				if !json.Valid(r.Value) {
					t.Errorf("%s: output is not valid JSON: %s", r.Key, r.Value)
				}
				if _, _, err := schemas.ParseKey(r.Key); err != nil {
					t.Errorf("output key: %v", err)
				}
				if !strings.HasPrefix(r.Topic, testTopics.Prefix+".deid.") {
					t.Errorf("output topic %s", r.Topic)
				}
			}
		})
	}
}
