package synth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// export is one generated export held in memory for inspection.
type export struct {
	lines map[string][][]byte         // per type, in emission order
	res   map[string][]map[string]any // the same, decoded
}

func generate(t testing.TB, cfg Config) *export {
	t.Helper()
	x := &export{lines: map[string][][]byte{}, res: map[string][]map[string]any{}}
	err := Generate(context.Background(), cfg, func(typ string, line []byte) error {
		x.lines[typ] = append(x.lines[typ], bytes.Clone(line))
		return nil
	})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	for typ, lines := range x.lines {
		for i, l := range lines {
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				t.Fatalf("%s line %d is not a JSON object: %v\n%s", typ, i+1, err, l)
			}
			x.res[typ] = append(x.res[typ], m)
		}
	}
	return x
}

var (
	fixtureOnce sync.Once
	fixture     *export
)

const fixturePatients = 50

// sample is the export most tests inspect: 50 patients, seed 1.
func sample(t *testing.T) *export {
	fixtureOnce.Do(func() { fixture = generate(t, Config{Patients: fixturePatients, Seed: 1}) })
	if fixture == nil {
		t.Fatal("fixture generation failed")
	}
	return fixture
}

// digest hashes an export's lines by type, in a fixed type order.
func digest(x *export) string {
	h := sha256.New()
	for _, typ := range ResourceTypes {
		for _, l := range x.lines[typ] {
			fmt.Fprintf(h, "%s\t%s\n", typ, l)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestDeterministic(t *testing.T) {
	a := generate(t, Config{Patients: 25, Seed: 42})
	b := generate(t, Config{Patients: 25, Seed: 42})
	if digest(a) != digest(b) {
		t.Fatal("same seed and patient count gave different output")
	}
	c := generate(t, Config{Patients: 25, Seed: 43})
	if digest(a) == digest(c) {
		t.Fatal("different seeds gave identical output")
	}
	ids := map[string]bool{}
	for _, p := range a.res[TypePatient] {
		ids[p["id"].(string)] = true
	}
	for _, p := range c.res[TypePatient] {
		if ids[p["id"].(string)] {
			t.Fatalf("seeds 42 and 43 share Patient/%s", p["id"])
		}
	}
}

// A smaller run is a prefix of a larger one with the same seed, file by file.
func TestPrefixStable(t *testing.T) {
	small := generate(t, Config{Patients: 7, Seed: 9})
	large := generate(t, Config{Patients: 30, Seed: 9})
	for _, typ := range ResourceTypes {
		s, l := small.lines[typ], large.lines[typ]
		if len(s) > len(l) {
			t.Fatalf("%s: %d lines for 7 patients but %d for 30", typ, len(s), len(l))
		}
		for i := range s {
			if !bytes.Equal(s[i], l[i]) {
				t.Fatalf("%s line %d differs between 7 and 30 patients", typ, i+1)
			}
		}
	}
}

func TestEveryLineIsAResource(t *testing.T) {
	x := sample(t)
	end := DefaultEnd
	for _, typ := range ResourceTypes {
		if len(x.res[typ]) == 0 {
			t.Errorf("no %s resources for %d patients", typ, fixturePatients)
		}
	}
	for typ, rs := range x.res {
		ids := map[string]bool{}
		for i, r := range rs {
			if r["resourceType"] != typ {
				t.Fatalf("%s line %d has resourceType %v", typ, i+1, r["resourceType"])
			}
			id, _ := r["id"].(string)
			if len(id) != 36 || strings.Count(id, "-") != 4 {
				t.Fatalf("%s line %d: id %q is not UUID-shaped", typ, i+1, id)
			}
			if ids[id] {
				t.Fatalf("%s/%s appears twice", typ, id)
			}
			ids[id] = true
			meta, _ := r["meta"].(map[string]any)
			if v, _ := meta["versionId"].(string); v == "" {
				t.Fatalf("%s/%s has no meta.versionId", typ, id)
			}
			lu := parseTime(t, meta["lastUpdated"])
			if lu.After(end) {
				t.Fatalf("%s/%s: lastUpdated %v is after the export time", typ, id, lu)
			}
			if strings.Contains(string(x.lines[typ][i]), "\n") {
				t.Fatalf("%s/%s: line contains a newline", typ, id)
			}
		}
	}
}

// references returns every Reference.reference in v.
func references(v any, out []string) []string {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if s, ok := c.(string); ok && k == "reference" {
				out = append(out, s)
				continue
			}
			out = references(c, out)
		}
	case []any:
		for _, c := range v {
			out = references(c, out)
		}
	}
	return out
}

func TestReferencesResolve(t *testing.T) {
	x := sample(t)
	known := map[string]bool{}
	for typ, rs := range x.res {
		for _, r := range rs {
			known[typ+"/"+r["id"].(string)] = true
		}
	}
	n := 0
	for typ, rs := range x.res {
		for _, r := range rs {
			for _, ref := range references(r, nil) {
				n++
				if !known[ref] {
					t.Fatalf("%s/%s references %s, which is not in the export", typ, r["id"], ref)
				}
			}
		}
	}
	// Observations alone carry two references each.
	if n < 2*len(x.res[TypeObservation]) {
		t.Fatalf("only %d references found", n)
	}
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	if len(s) == len(time.DateOnly) {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatalf("bad date %q: %v", s, err)
		}
		return d
	}
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("bad dateTime %q: %v", s, err)
	}
	return ts
}

func refID(t *testing.T, r map[string]any, field, typ string) string {
	t.Helper()
	m, _ := r[field].(map[string]any)
	ref, _ := m["reference"].(string)
	id, ok := strings.CutPrefix(ref, typ+"/")
	if !ok {
		t.Fatalf("%s/%s: %s is %q, want a %s reference", r["resourceType"], r["id"], field, ref, typ)
	}
	return id
}

// clinicalDate is the field that says when a clinical resource happened.
var clinicalDate = map[string]func(map[string]any) any{
	TypeCondition:          func(r map[string]any) any { return r["onsetDateTime"] },
	TypeObservation:        func(r map[string]any) any { return r["effectiveDateTime"] },
	TypeDiagnosticReport:   func(r map[string]any) any { return r["effectiveDateTime"] },
	TypeMedicationRequest:  func(r map[string]any) any { return r["authoredOn"] },
	TypeImmunization:       func(r map[string]any) any { return r["occurrenceDateTime"] },
	TypeAllergyIntolerance: func(r map[string]any) any { return r["recordedDate"] },
	TypeProcedure: func(r map[string]any) any {
		return r["performedPeriod"].(map[string]any)["start"]
	},
}

func TestDatesWithinLifeAndEncounter(t *testing.T) {
	x := sample(t)
	type life struct{ birth, death time.Time }
	lives := map[string]life{}
	for _, p := range x.res[TypePatient] {
		l := life{birth: parseTime(t, p["birthDate"])}
		if d, ok := p["deceasedDateTime"]; ok {
			l.death = parseTime(t, d)
			if l.death.Before(l.birth) {
				t.Fatalf("Patient/%s died before birth", p["id"])
			}
		}
		lives[p["id"].(string)] = l
	}
	type period struct {
		patient    string
		start, end time.Time
		finished   bool
	}
	encs := map[string]period{}
	for _, e := range x.res[TypeEncounter] {
		pid := refID(t, e, "subject", TypePatient)
		pr := e["period"].(map[string]any)
		p := period{patient: pid, start: parseTime(t, pr["start"]), finished: e["status"] == "finished"}
		if end, ok := pr["end"]; ok {
			p.end = parseTime(t, end)
			if p.end.Before(p.start) {
				t.Fatalf("Encounter/%s ends before it starts", e["id"])
			}
		} else if e["status"] != "planned" {
			t.Fatalf("Encounter/%s (%s) has no end", e["id"], e["status"])
		}
		l := lives[pid]
		// birthDate is a local date; allow for the time zone.
		if p.start.Before(l.birth.Add(-24 * time.Hour)) {
			t.Fatalf("Encounter/%s starts %v, before birth %v", e["id"], p.start, l.birth)
		}
		if !l.death.IsZero() && p.end.After(l.death) {
			t.Fatalf("Encounter/%s ends %v, after death %v", e["id"], p.end, l.death)
		}
		encs[e["id"].(string)] = p
	}
	checked := 0
	for typ, when := range clinicalDate {
		subject := "subject"
		if typ == TypeImmunization || typ == TypeAllergyIntolerance {
			subject = "patient"
		}
		for _, r := range x.res[typ] {
			enc, ok := encs[refID(t, r, "encounter", TypeEncounter)]
			if !ok {
				t.Fatalf("%s/%s: encounter not found", typ, r["id"])
			}
			if !enc.finished {
				t.Fatalf("%s/%s recorded in an encounter that did not take place", typ, r["id"])
			}
			if pid := refID(t, r, subject, TypePatient); pid != enc.patient {
				t.Fatalf("%s/%s: patient %s, but its encounter is patient %s's", typ, r["id"], pid, enc.patient)
			}
			at := parseTime(t, when(r))
			if at.Before(enc.start) || at.After(enc.end) {
				t.Fatalf("%s/%s at %v, outside its encounter %v – %v", typ, r["id"], at, enc.start, enc.end)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no clinical resources checked")
	}
}

// Per-patient rates stay in the range of a Synthea population.
func TestProportions(t *testing.T) {
	x := sample(t)
	n := float64(fixturePatients)
	per := func(typ string) float64 { return float64(len(x.res[typ])) / n }
	for _, c := range []struct {
		typ      string
		min, max float64
	}{
		{TypeEncounter, 30, 75},
		{TypeObservation, 120, 320},
		{TypeCondition, 5, 40},
		{TypeMedicationRequest, 3, 40},
		{TypeProcedure, 3, 40},
		{TypeImmunization, 5, 40},
		{TypeDiagnosticReport, 2, 30},
		{TypeAllergyIntolerance, 0.05, 2},
	} {
		if got := per(c.typ); got < c.min || got > c.max {
			t.Errorf("%s per patient = %.1f, want %g..%g", c.typ, got, c.min, c.max)
		}
	}
	groups := (fixturePatients + PatientsPerGroup - 1) / PatientsPerGroup
	for typ, want := range map[string]int{
		TypePatient: fixturePatients, TypeOrganization: groups, TypeLocation: groups,
		TypePractitioner: groups * PractitionersPerGroup,
	} {
		if got := len(x.res[typ]); got != want {
			t.Errorf("%d %s resources, want %d", got, typ, want)
		}
	}

	deceased := 0
	for _, p := range x.res[TypePatient] {
		if _, ok := p["deceasedDateTime"]; ok {
			deceased++
		}
	}
	if deceased == 0 || deceased > fixturePatients/4 {
		t.Errorf("%d of %d patients deceased, want about 10%%", deceased, fixturePatients)
	}

	status, class := map[string]int{}, map[string]int{}
	for _, e := range x.res[TypeEncounter] {
		status[e["status"].(string)]++
		class[e["class"].(map[string]any)["code"].(string)]++
		if c := e["class"].(map[string]any)["code"]; c == "IMP" {
			if _, ok := e["hospitalization"].(map[string]any)["dischargeDisposition"]; !ok {
				t.Fatalf("inpatient Encounter/%s has no dischargeDisposition", e["id"])
			}
		}
	}
	other := len(x.res[TypeEncounter]) - status["finished"]
	if frac := float64(other) / float64(len(x.res[TypeEncounter])); frac < 0.005 || frac > 0.05 {
		t.Errorf("%.1f%% of encounters not finished (%v), want about 2%%", 100*frac, status)
	}
	if class["AMB"] < class["EMER"] || class["EMER"] == 0 || class["IMP"] == 0 {
		t.Errorf("encounter classes %v: want mostly AMB with some EMER and IMP", class)
	}
}

func coding(t *testing.T, cc any) (system, code string) {
	t.Helper()
	m, _ := cc.(map[string]any)
	cs, _ := m["coding"].([]any)
	if len(cs) == 0 {
		t.Fatalf("CodeableConcept without coding: %v", cc)
	}
	c := cs[0].(map[string]any)
	return c["system"].(string), c["code"].(string)
}

func TestCodeSystems(t *testing.T) {
	x := sample(t)
	want := map[string]struct{ field, system string }{
		TypeObservation:        {"code", sysLOINC},
		TypeCondition:          {"code", sysSNOMED},
		TypeProcedure:          {"code", sysSNOMED},
		TypeAllergyIntolerance: {"code", sysSNOMED},
		TypeMedicationRequest:  {"medicationCodeableConcept", sysRxNorm},
		TypeImmunization:       {"vaccineCode", sysCVX},
		TypeDiagnosticReport:   {"code", sysLOINC},
	}
	for typ, w := range want {
		for _, r := range x.res[typ] {
			if sys, code := coding(t, r[w.field]); sys != w.system || code == "" {
				t.Fatalf("%s/%s: %s is %s|%s, want a %s code", typ, r["id"], w.field, sys, code, w.system)
			}
		}
	}

	seen := map[string]bool{}
	obs := map[string]map[string]any{}
	for _, o := range x.res[TypeObservation] {
		_, code := coding(t, o["code"])
		seen[code] = true
		obs[o["id"].(string)] = o
		if q, ok := o["valueQuantity"].(map[string]any); ok {
			if q["system"] != sysUCUM || q["code"] == "" {
				t.Fatalf("Observation/%s: quantity %v is not UCUM", o["id"], q)
			}
		}
		cat, _ := coding(t, o["category"].([]any)[0])
		if cat != sysObsCategory {
			t.Fatalf("Observation/%s: category system %s", o["id"], cat)
		}
		switch code {
		case "85354-9":
			comps := o["component"].([]any)
			_, sys := coding(t, comps[0].(map[string]any)["code"])
			_, dia := coding(t, comps[1].(map[string]any)["code"])
			if sys != "8480-6" || dia != "8462-4" {
				t.Fatalf("blood pressure components %s, %s", sys, dia)
			}
		case "72166-2":
			if s, c := coding(t, o["valueCodeableConcept"]); s != sysSNOMED || c == "" {
				t.Fatalf("smoking status value %s|%s", s, c)
			}
		}
	}
	for _, code := range []string{"8867-4", "9279-1", "8310-5", "8302-2", "29463-7", "39156-5",
		"85354-9", "2708-6", "72166-2", "2339-0", "2160-0", "2093-3", "18262-6", "2085-9",
		"2571-8", "718-7", "6690-2", "2823-3", "2951-2", "4548-4"} {
		if !seen[code] {
			t.Errorf("no Observation with LOINC %s", code)
		}
	}
	valueStrings := 0
	for _, o := range x.res[TypeObservation] {
		if _, ok := o["valueString"]; ok {
			valueStrings++
		}
	}
	if valueStrings == 0 {
		t.Error("no Observation with valueString")
	}

	// A report's results are lab Observations of the same encounter and patient.
	for _, dr := range x.res[TypeDiagnosticReport] {
		enc := refID(t, dr, "encounter", TypeEncounter)
		results := dr["result"].([]any)
		if len(results) == 0 {
			t.Fatalf("DiagnosticReport/%s has no results", dr["id"])
		}
		for _, res := range results {
			_, id, _ := strings.Cut(res.(map[string]any)["reference"].(string), "/")
			o := obs[id]
			if o == nil || refID(t, o, "encounter", TypeEncounter) != enc {
				t.Fatalf("DiagnosticReport/%s: result %s is not an Observation of its encounter", dr["id"], id)
			}
			if cat, code := coding(t, o["category"].([]any)[0]); cat != sysObsCategory || code != "laboratory" {
				t.Fatalf("DiagnosticReport/%s: result %s has category %s", dr["id"], id, code)
			}
		}
	}
}

func TestPatientDemographics(t *testing.T) {
	x := sample(t)
	for _, p := range x.res[TypePatient] {
		exts := p["extension"].([]any)
		urls := map[string]bool{}
		for _, e := range exts {
			em := e.(map[string]any)
			urls[em["url"].(string)] = true
			if sub, ok := em["extension"].([]any); ok {
				vc := sub[0].(map[string]any)["valueCoding"].(map[string]any)
				if vc["system"] != sysCDCRace {
					t.Fatalf("Patient/%s: %s coded in %v", p["id"], em["url"], vc["system"])
				}
			}
		}
		for _, u := range []string{"us-core-race", "us-core-ethnicity", "us-core-birthsex"} {
			if !urls["http://hl7.org/fhir/us/core/StructureDefinition/"+u] {
				t.Fatalf("Patient/%s lacks the %s extension", p["id"], u)
			}
		}
		addr := p["address"].([]any)[0].(map[string]any)
		for _, f := range []string{"line", "city", "state", "postalCode", "country"} {
			if addr[f] == nil {
				t.Fatalf("Patient/%s address lacks %s", p["id"], f)
			}
		}
		if g := p["gender"]; g != "male" && g != "female" {
			t.Fatalf("Patient/%s gender %v", p["id"], g)
		}
		ids := p["identifier"].([]any)
		if ids[0].(map[string]any)["system"] != sysMRN {
			t.Fatalf("Patient/%s: first identifier is not the MRN", p["id"])
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := 0
	err := Generate(ctx, Config{Patients: 10}, func(string, []byte) error { n++; return nil })
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Fatalf("pre-cancelled: err %v after %d lines, want context.Canceled after 0", err, n)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	n = 0
	err = Generate(ctx, Config{Patients: 100_000}, func(string, []byte) error {
		if n++; n == 1000 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	// Cancellation is checked between patients, so at most one more patient is written.
	if n > 5000 {
		t.Fatalf("%d lines written after cancelling at 1000", n)
	}
}

func TestEmitErrorStops(t *testing.T) {
	boom := errors.New("disk full")
	n := 0
	err := Generate(context.Background(), Config{Patients: 10}, func(string, []byte) error {
		n++
		return boom
	})
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("err %v after %d calls, want %v after 1", err, n, boom)
	}
}

func TestZeroAndNegative(t *testing.T) {
	n := 0
	if err := Generate(context.Background(), Config{}, func(string, []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("0 patients: err %v, %d lines", err, n)
	}
	if err := Generate(context.Background(), Config{Patients: -1}, nil); err == nil {
		t.Fatal("negative patient count accepted")
	}
}

func TestAppendString(t *testing.T) {
	cases := []string{"", "plain", `O'Brien "quoted" \ back`, "tab\tnew\nline\x01", "naïve", "\x7f\xc3\xa9"}
	// Every special byte at every position of strings around the 8-byte word size.
	for n := 1; n <= 19; n++ {
		for pos := 0; pos < n; pos++ {
			for _, c := range []byte{'"', '\\', 0x00, 0x1f, '\n', ' ', 0x80} {
				b := bytes.Repeat([]byte{'a'}, n)
				b[pos] = c
				cases = append(cases, string(b))
			}
		}
	}
	for _, s := range cases {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || (back != s && utf8.ValidString(s)) {
			t.Fatalf("appendString(%q) = %s, decodes to %q (%v)", s, got, back, err)
		}
	}
}
