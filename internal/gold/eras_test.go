package gold

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/vocab"
)

func d(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func condition(person int64, concept int32, start, end string) Row {
	r := Row{"person_id": person, "condition_concept_id": concept, "condition_start_date": d(start), "condition_end_date": nil}
	if end != "" {
		r["condition_end_date"] = d(end)
	}
	return r
}

func drug(person int64, concept int32, start, end string, supply any) Row {
	r := Row{"person_id": person, "drug_concept_id": concept, "drug_exposure_start_date": d(start), "drug_exposure_end_date": nil, "days_supply": supply}
	if end != "" {
		r["drug_exposure_end_date"] = d(end)
	}
	return r
}

// eraLine is an era as "person concept start..end count [gap]", for readable comparisons.
func eraLines(rows []Row, prefix string) []string {
	var out []string
	for _, r := range rows {
		s := fmt.Sprintf("%d %d %s..%s n=%d", r["person_id"], r[prefix+"_concept_id"],
			r[prefix+"_era_start_date"].(time.Time).Format(time.DateOnly), r[prefix+"_era_end_date"].(time.Time).Format(time.DateOnly),
			r[map[string]string{"condition": "condition_occurrence_count", "drug": "drug_exposure_count"}[prefix]])
		if g, ok := r["gap_days"]; ok {
			s += fmt.Sprintf(" gap=%d", g)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestConditionErasHandChecked: each expectation below was worked out by hand from the
// rule (30-day persistence window, a missing end is start + 1 day, concept 0 skipped).
func TestConditionErasHandChecked(t *testing.T) {
	src := Tables{"condition_occurrence": {
		condition(1, 100, "2020-01-01", "2020-01-10"),
		condition(1, 100, "2020-02-09", "2020-02-12"), // starts exactly 30 days after the end: same era
		condition(1, 100, "2020-03-14", ""),           // 31 days after 02-12: a new era, ending 03-15
		condition(1, 0, "2020-01-05", "2020-01-06"),   // unmapped: no era
		condition(2, 100, "2021-05-01", "2021-05-20"),
		condition(2, 100, "2021-05-03", "2021-05-05"), // inside the first
		condition(1, 200, "2019-01-01", ""),
	}}
	eras, err := ConditionEras(src)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1 100 2020-01-01..2020-02-12 n=2",
		"1 100 2020-03-14..2020-03-15 n=1",
		"1 200 2019-01-01..2019-01-02 n=1",
		"2 100 2021-05-01..2021-05-20 n=2",
	}
	if got := eraLines(eras, "condition"); !slices.Equal(got, want) {
		t.Errorf("condition eras\n got  %q\n want %q", got, want)
	}
	for _, e := range eras {
		if e["condition_era_id"].(int64) <= 0 {
			t.Errorf("era id %v", e["condition_era_id"])
		}
	}
}

// TestDrugErasHandChecked: drug eras per ingredient, worked out by hand.
func TestDrugErasHandChecked(t *testing.T) {
	ing := &Ingredients{of: map[int32][]int32{11: {1}, 12: {1}, 13: {1, 2}}}
	src := Tables{"drug_exposure": {
		drug(1, 11, "2020-01-01", "2020-01-31", nil),       // 30 days exposed
		drug(1, 12, "2020-01-20", "2020-02-10", nil),       // overlaps: one sub-exposure 01-01..02-10, 40 days
		drug(1, 11, "2020-03-01", "", int32(10)),           // ends 03-11 by its supply; 20 days after 02-10: same era
		drug(1, 13, "2020-06-01", "2020-06-01", nil),       // both ingredients; 82 days later: new eras
		drug(1, 14, "2020-01-01", "2020-12-31", nil),       // no ingredient known: no era
		drug(1, 0, "2020-01-01", "2020-12-31", nil),        // unmapped: no era
		drug(1, 11, "2020-04-01", "2020-04-30", int32(-5)), // negative supply: left out
		drug(1, 11, "2020-09-01", "", int32(0)),            // no end, supply 0: start + 1 day
	}}
	eras, err := DrugEras(src, ing)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1 1 2020-01-01..2020-03-11 n=3 gap=20", // 70 days long, 40 + 10 exposed
		"1 1 2020-06-01..2020-06-01 n=1 gap=0",
		"1 1 2020-09-01..2020-09-02 n=1 gap=0",
		"1 2 2020-06-01..2020-06-01 n=1 gap=0",
	}
	if got := eraLines(eras, "drug"); !slices.Equal(got, want) {
		t.Errorf("drug eras\n got  %q\n want %q", got, want)
	}
	if _, err := DrugEras(src, nil); !errors.Is(err, ErrNoVocabulary) || !strings.Contains(err.Error(), "vocabulary") {
		t.Errorf("without ingredients: %v, want ErrNoVocabulary", err)
	}
}

func TestObservationPeriodsHandChecked(t *testing.T) {
	src := Tables{
		"person": {{"person_id": int64(1)}, {"person_id": int64(2)}, {"person_id": int64(3)}},
		"visit_occurrence": {
			{"person_id": int64(1), "visit_start_date": d("2020-01-05"), "visit_end_date": d("2020-01-07")},
			{"person_id": int64(9), "visit_start_date": d("1990-01-01"), "visit_end_date": d("1990-01-01")}, // no such person
		},
		"condition_occurrence": {{"person_id": int64(1), "condition_start_date": d("2019-12-31"), "condition_end_date": nil}},
		"measurement":          {{"person_id": int64(2), "measurement_date": d("2021-03-03")}},
		"death":                {{"person_id": int64(1), "death_date": d("2022-02-02")}},
		"drug_exposure":        {{"person_id": int64(2), "drug_exposure_start_date": d("2021-03-01"), "drug_exposure_end_date": d("2021-04-01")}},
	}
	periods, err := ObservationPeriods(src)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range periods {
		got = append(got, fmt.Sprintf("%d %d %s..%s %d", p["observation_period_id"], p["person_id"],
			p["observation_period_start_date"].(time.Time).Format(time.DateOnly), p["observation_period_end_date"].(time.Time).Format(time.DateOnly), p["period_type_concept_id"]))
	}
	want := []string{"1 1 2019-12-31..2022-02-02 32882", "2 2 2021-03-01..2021-04-01 32882"} // person 3 has no events
	if !slices.Equal(got, want) {
		t.Errorf("periods %q, want %q", got, want)
	}
}

func TestCDMSource(t *testing.T) {
	info := SourceInfo{Name: "Example EHR", Abbreviation: "EHR", Holder: "Example Hospital",
		ReleaseDate: time.Date(2024, 5, 1, 23, 30, 0, 0, time.FixedZone("EST", -5*3600)), Refreshed: time.Date(2024, 5, 3, 1, 0, 0, 0, time.UTC),
		ETLVersion: "1.2.3", ETLReference: "https://example.org/docs/omop-mapping.md", VocabularyVersion: "v5.0 30-AUG-24"}
	r, err := CDMSource(info)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"cdm_version": "v5.4", "cdm_version_concept_id": int32(756265), "vocabulary_version": "v5.0 30-AUG-24",
		"source_release_date": d("2024-05-02"), // the transactionTime's UTC date
		"cdm_release_date":    d("2024-05-03"),
		"cdm_etl_reference":   "fhirstream 1.2.3, https://example.org/docs/omop-mapping.md",
	} {
		if r[k] != want {
			t.Errorf("%s = %#v, want %#v", k, r[k], want)
		}
	}
	info.VocabularyVersion = ""
	if r, _ := CDMSource(info); r["vocabulary_version"] != BuiltinVocabularyVersion {
		t.Errorf("without a vocabulary: %v", r["vocabulary_version"])
	}
	if _, err := CDMSource(SourceInfo{Name: "x"}); err == nil {
		t.Error("incomplete source info accepted")
	}
}

// The period type is the verified built-in constant (internal/vocab checks it against
// its sources).
func TestPeriodTypeIsTheVerifiedConstant(t *testing.T) {
	if PeriodTypeEHR != vocab.TypeEHRPeriod {
		t.Fatalf("PeriodTypeEHR %d, vocab.TypeEHRPeriod %d", PeriodTypeEHR, vocab.TypeEHRPeriod)
	}
}
