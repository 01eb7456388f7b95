package deid

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

const sharedData = "../../../shared/data"

// lake is what the OMOP mapper made of a set of resources: rows per table, decoded.
type lake struct {
	rows     map[string][]map[string]any
	rejected map[string]int
}

func mapToOMOP(t *testing.T, recs []stage.Record) lake {
	t.Helper()
	p, err := omop.New(omop.Config{Topics: testTopics})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	l := lake{rows: map[string][]map[string]any{}, rejected: map[string]int{}}
	for i := range recs {
		var out collect
		if err := p.Process(context.Background(), &recs[i], nil, &out); err != nil {
			r, ok := stage.AsRejection(err)
			if !ok {
				t.Fatal(err)
			}
			l.rejected[r.Class+" at "+r.Path]++
			continue
		}
		for _, o := range out.recs {
			table, row, err := codec.Decode(context.Background(), o.Value)
			if err != nil {
				t.Fatal(err)
			}
			l.rows[table] = append(l.rows[table], row)
		}
	}
	return l
}

// long reads a nullable long column of a decoded row (0 when null).
func long(row map[string]any, col string) int64 {
	switch v := row[col].(type) {
	case int64:
		return v
	case map[string]any:
		if x, ok := v["long"].(int64); ok {
			return x
		}
	}
	return 0
}

func date(row map[string]any, col string) (time.Time, bool) {
	switch v := row[col].(type) {
	case time.Time:
		return v, true
	case map[string]any:
		for _, x := range v {
			if d, ok := x.(time.Time); ok {
				return d, true
			}
		}
	}
	return time.Time{}, false
}

// unresolved counts the rows of tables other than person whose person_id is not a
// person's, and whose visit_occurrence_id (when set) is not a visit's.
func unresolved(l lake) (persons, visits int) {
	people, visitIDs := map[int64]bool{}, map[int64]bool{}
	for _, r := range l.rows["person"] {
		people[long(r, "person_id")] = true
	}
	for _, r := range l.rows["visit_occurrence"] {
		visitIDs[long(r, "visit_occurrence_id")] = true
	}
	for table, rows := range l.rows {
		if table == "person" {
			continue
		}
		for _, r := range rows {
			if p, ok := r["person_id"]; ok && p != nil && !people[long(r, "person_id")] {
				persons++
			}
			if v := long(r, "visit_occurrence_id"); v != 0 && table != "visit_occurrence" && !visitIDs[v] {
				visits++
			}
		}
	}
	return persons, visits
}

// TestOMOPFromDeidTopics maps the shared Synthea sets to OMOP twice, from the resources
// as exported and from their de-identified form (safe-harbor-dateshift): the tables must
// have the same rows, person and visit links must resolve as they do in the source, and
// every visit keeps its length and moves by its patient's shift.
func TestOMOPFromDeidTopics(t *testing.T) {
	for _, set := range []string{"synthea-9-patients", "synthea-13-patients"} {
		t.Run(set, func(t *testing.T) {
			dir := filepath.Join(sharedData, set)
			files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
			if len(files) == 0 {
				t.Skipf("shared data absent (%s)", dir)
			}
			p := newTestProcessor(t, "safe-harbor-dateshift")
			var src, deid []stage.Record
			encounterPatient := map[string]string{} // encounter id → patient id
			for _, f := range files {
				rt := strings.SplitN(filepath.Base(f), ".", 2)[0]
				for _, line := range readNDJSON(t, f) {
					var head struct {
						ID      string `json:"id"`
						Subject struct {
							Reference string `json:"reference"`
						} `json:"subject"`
					}
					if err := json.Unmarshal(line, &head); err != nil {
						t.Fatal(err)
					}
					in := stage.Record{Topic: testTopics.Unique(rt), Key: schemas.Key(rt, head.ID), Value: line}
					src = append(src, in)
					var out collect
					if err := p.Process(context.Background(), &in, nil, &out); err != nil {
						t.Fatalf("%s/%s: %v", rt, head.ID, err)
					}
					deid = append(deid, out.recs[0])
					if rt == "Encounter" {
						ref := head.Subject.Reference
						encounterPatient[head.ID] = ref[strings.LastIndexAny(ref, "/:")+1:]
					}
				}
			}
			a, b := mapToOMOP(t, src), mapToOMOP(t, deid)
			tables := map[string]bool{}
			for tb := range a.rows {
				tables[tb] = true
			}
			for tb := range b.rows {
				tables[tb] = true
			}
			for tb := range tables {
				if len(a.rows[tb]) != len(b.rows[tb]) {
					t.Errorf("%s: %d rows from the source, %d from the de-identified topics", tb, len(a.rows[tb]), len(b.rows[tb]))
				}
				t.Logf("%-22s %6d rows", tb, len(b.rows[tb]))
			}
			if fmt.Sprint(a.rejected) != fmt.Sprint(b.rejected) {
				t.Errorf("rejections differ: source %v, de-identified %v", a.rejected, b.rejected)
			}
			pa, va := unresolved(a)
			pb, vb := unresolved(b)
			if pa != pb || va != vb {
				t.Errorf("unresolved person/visit links: source %d/%d, de-identified %d/%d", pa, va, pb, vb)
			}
			t.Logf("unresolved person/visit links (the source's dangling references): %d/%d", pb, vb)
			// Intervals: each visit, found by its pseudonymised id, starts its patient's
			// shift after the source's and lasts as long, unless its date was more than 89
			// years ago (then it is in the "90 or older" year).
			visitsA := map[int64]map[string]any{}
			for _, r := range a.rows["visit_occurrence"] {
				visitsA[long(r, "visit_occurrence_id")] = r
			}
			checked, aggregated := 0, 0
			visitsB := map[int64]map[string]any{}
			for _, r := range b.rows["visit_occurrence"] {
				visitsB[long(r, "visit_occurrence_id")] = r
			}
			for enc, patient := range encounterPatient {
				ra, rb := visitsA[omop.ID("Encounter/"+enc)], visitsB[omop.ID("Encounter/"+h(enc))]
				if ra == nil || rb == nil {
					t.Errorf("Encounter/%s: visit row missing (source %v, de-identified %v)", enc, ra != nil, rb != nil)
					continue
				}
				sa, _ := date(ra, "visit_start_date")
				ea, _ := date(ra, "visit_end_date")
				sb, _ := date(rb, "visit_start_date")
				eb, _ := date(rb, "visit_end_date")
				if testNow.AddDate(-90, 0, 1).After(sa) || testNow.AddDate(-90, 0, 1).After(ea) {
					aggregated++
					continue
				}
				if want := sa.AddDate(0, 0, shiftOf(patient)); !sb.Equal(want) {
					t.Errorf("Encounter/%s: starts %s, source %s shifted by %d is %s", enc, sb.Format(time.DateOnly), sa.Format(time.DateOnly), shiftOf(patient), want.Format(time.DateOnly))
				}
				if eb.Sub(sb) != ea.Sub(sa) {
					t.Errorf("Encounter/%s: lasts %v, source %v", enc, eb.Sub(sb), ea.Sub(sa))
				}
				checked++
			}
			t.Logf("%d visits keep their interval; %d more than 89 years ago are in the 90-or-older year", checked, aggregated)
			if checked == 0 {
				t.Error("no visit checked")
			}
		})
	}
}
