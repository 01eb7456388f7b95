package omop

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// envelopeRow is what TestVersionsAndDeletions checks of each output row: its table and
// the envelope columns that carry the replacement contract.
type envelopeRow struct {
	table     string
	component int32
	deleted   bool
	replaces  bool
}

func (r envelopeRow) String() string {
	return fmt.Sprintf("%s#%d deleted=%v replaces=%v", r.table, r.component, r.deleted, r.replaces)
}

// TestVersionsAndDeletions pins the contract the sinks apply (docs/omop-mapping.md,
// "Versions and deletions"): per source record and table, a group of rows whose first
// has _fhir_replaces; retraction rows where a known key's new version has no rows; none
// for a first version. The expectations are written out by hand, table by table.
func TestVersionsAndDeletions(t *testing.T) {
	update := stage.Header{Key: schemas.HeaderPreviousVersion, Value: []byte("1")}
	updateOfUnversioned := stage.Header{Key: schemas.HeaderPreviousVersion, Value: []byte("")}
	bp := func(version string, components ...string) string {
		var cs []string
		for _, c := range components {
			cs = append(cs, `{"code":{"coding":[{"system":"http://loinc.org","code":"`+c+`"}]},"valueQuantity":{"value":1,"code":"mm[Hg]"}}`)
		}
		return `{"resourceType":"Observation","id":"bp","meta":{"versionId":"` + version + `"},"status":"final",
		 "category":[{"coding":[{"code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
		 "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-01T10:00:00Z","component":[` + strings.Join(cs, ",") + `]}`
	}
	condition := func(version, icd string) string {
		return `{"resourceType":"Condition","id":"c","meta":{"versionId":"` + version + `"},
		 "code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"` + icd + `"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2012-02-02"}`
	}
	retracted := func(tables ...string) []envelopeRow {
		var rs []envelopeRow
		for _, t := range tables {
			rs = append(rs, envelopeRow{t, 0, true, true})
		}
		return rs
	}
	for _, tc := range []struct {
		name    string
		key     string
		json    string // "" = tombstone
		headers []stage.Header
		vocab   bool
		want    []envelopeRow
	}{
		{"first version: its rows, the first of each table replacing, no retractions", "Observation/bp", bp("1", "8480-6", "8462-4"), nil, false,
			[]envelopeRow{{"measurement", 1, false, true}, {"measurement", 2, false, false}}},
		{"update with fewer components: the one left replaces, the other event tables are retracted", "Observation/bp", bp("2", "8480-6"), []stage.Header{update}, false,
			append([]envelopeRow{{"measurement", 1, false, true}},
				retracted("condition_occurrence", "observation", "procedure_occurrence", "drug_exposure", "device_exposure")...)},
		{"first version of a condition routed by its code", "Condition/c", condition("1", "E11.9"), nil, true,
			[]envelopeRow{{"condition_occurrence", 0, false, true}}},
		{"update whose code routes to another table: rows there, retraction where the old rows were", "Condition/c", condition("2", "Z87.891"), []stage.Header{update}, true,
			append([]envelopeRow{{"observation", 0, false, true}},
				retracted("condition_occurrence", "measurement", "procedure_occurrence", "drug_exposure", "device_exposure")...)},
		{"update to entered-in-error: no rows, every reachable table retracted", "Condition/c",
			`{"resourceType":"Condition","id":"c","verificationStatus":{"coding":[{"code":"entered-in-error"}]},"subject":{"reference":"Patient/p1"},"onsetDateTime":"2012-02-02"}`,
			[]stage.Header{update}, false, retracted(eventTables...)},
		{"update of a patient without a death: person and location replace, death retracted", "Patient/p1",
			`{"resourceType":"Patient","id":"p1","birthDate":"1970-03-15","address":[{"city":"Boston"}]}`, []stage.Header{updateOfUnversioned}, false,
			[]envelopeRow{{"location", 0, false, true}, {"person", 0, false, true}, {"death", 0, true, true}}},
		{"tombstone: one retraction per reachable table", "Observation/bp", "", []stage.Header{update}, false, retracted(eventTables...)},
		{"tombstone of a patient", "Patient/p1", "", nil, false, retracted("person", "death", "location")},
		{"an update of an unmapped type emits nothing", "Claim/x", `{"resourceType":"Claim","id":"x"}`, []stage.Header{update}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProcessor(t, nil)
			if tc.vocab {
				p = newTestProcessor(t, loadTestVocab(t))
			}
			rows, err := run(t, p, tc.key, tc.json, tc.headers...)
			if err != nil {
				t.Fatal(err)
			}
			var got []envelopeRow
			for _, r := range rows {
				got = append(got, envelopeRow{r.table, r.row[schemas.ColFHIRComponent].(int32), r.row[schemas.ColFHIRDeleted].(bool), r.row[schemas.ColFHIRReplaces].(bool)})
				if r.row[schemas.ColFHIRKey] != tc.key || r.key != tc.key {
					t.Errorf("%s row: _fhir_key %v, record key %q, want %q", r.table, r.row[schemas.ColFHIRKey], r.key, tc.key)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("rows\n  %v\nwant\n  %v", got, tc.want)
			}
		})
	}
}

// TestRetractTablesCoverEveryRow checks the premise of retraction: every table a
// resource type's rows land in (on generated data, with and without a vocabulary) is
// among retractTables of that type, so an update or a delete can always take them back.
func TestRetractTablesCoverEveryRow(t *testing.T) {
	for _, v := range []bool{false, true} {
		p := newTestProcessor(t, nil)
		if v {
			p = newTestProcessor(t, loadTestVocab(t))
		}
		n := 0
		forEachSynthRecord(t, 5, func(key, value string) {
			rows, err := run(t, p, key, value)
			if err != nil {
				return // rejections are other tests' business
			}
			rtype, _, _ := strings.Cut(key, "/")
			for _, r := range rows {
				n++
				if !slices.Contains(retractTables(rtype), r.table) {
					t.Errorf("%s gave a %s row, but retractTables(%s) = %v", key, r.table, rtype, retractTables(rtype))
				}
			}
		})
		if n == 0 {
			t.Fatal("no rows mapped")
		}
	}
}

// forEachSynthRecord calls f with the key and value of every resource of a generated
// export of the given number of patients.
func forEachSynthRecord(t *testing.T, patients int, f func(key, value string)) {
	t.Helper()
	err := synth.Generate(context.Background(), synth.Config{Patients: patients, Seed: 7}, func(rt string, line []byte) error {
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		f(rt+"/"+r.ID, string(line))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
