package vocab

import (
	"bytes"
	"encoding/csv"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// verifiedConcept is one row of testdata/builtin_concepts_verified.tsv: a built-in
// concept as checked against public sources (listed in docs/omop-mapping.md).
type verifiedConcept struct {
	name, domain, vocabulary, code string
	confirmed                      []string
	sources                        string
}

func readTSV(t *testing.T, r io.Reader) []map[string]string {
	t.Helper()
	cr := csv.NewReader(r)
	cr.Comma = '\t'
	cr.Comment = '#'
	cr.LazyQuotes = true
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]string
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, col := range recs[0] {
			row[col] = rec[i]
		}
		rows = append(rows, row)
	}
	return rows
}

func loadVerified(t *testing.T) map[int32]verifiedConcept {
	t.Helper()
	f, err := os.Open("testdata/builtin_concepts_verified.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[int32]verifiedConcept{}
	for _, r := range readTSV(t, f) {
		id, err := strconv.ParseInt(r["concept_id"], 10, 32)
		if err != nil {
			t.Fatalf("verified list: concept_id %q: %v", r["concept_id"], err)
		}
		if _, dup := out[int32(id)]; dup {
			t.Fatalf("verified list: concept %d twice", id)
		}
		out[int32(id)] = verifiedConcept{name: r["concept_name"], domain: r["domain_id"], vocabulary: r["vocabulary_id"],
			code: r["concept_code"], confirmed: strings.Split(r["confirmed"], ","), sources: r["sources"]}
	}
	return out
}

// TestBuiltinConceptsVerified compares the built-in table (the embedded Athena-form
// rows and every fixed id the mapper writes) with the list checked against public
// sources: same ids, names, domains, vocabularies and codes, and every id confirmed by
// at least one source.
func TestBuiltinConceptsVerified(t *testing.T) {
	verified := loadVerified(t)
	for id, v := range verified {
		if !slices.Contains(v.confirmed, "id") || v.sources == "" {
			t.Errorf("verified list: concept %d has no source confirming its id", id)
		}
	}

	// Every row of the embedded table is in the list, with the same attributes.
	embedded := map[int32]bool{}
	for _, r := range readTSV(t, bytes.NewReader(builtinTSV)) {
		id64, err := strconv.ParseInt(r["concept_id"], 10, 32)
		if err != nil {
			t.Fatalf("builtin_concepts.tsv: concept_id %q: %v", r["concept_id"], err)
		}
		id := int32(id64)
		embedded[id] = true
		v, ok := verified[id]
		if !ok {
			t.Errorf("built-in concept %d %q is not in the verified list", id, r["concept_name"])
			continue
		}
		got := [4]string{r["concept_name"], r["domain_id"], r["vocabulary_id"], r["concept_code"]}
		want := [4]string{v.name, v.domain, v.vocabulary, v.code}
		if got != want {
			t.Errorf("built-in concept %d (name, domain, vocabulary, code) = %q, verified %q", id, got, want)
		}
	}
	for id := range verified {
		if !embedded[id] {
			t.Errorf("verified concept %d is not in the embedded built-in table", id)
		}
	}

	// Every fixed id the mapper writes without a vocabulary is a verified concept.
	fixed := map[string]int32{
		"GenderMale": GenderMale, "GenderFemale": GenderFemale,
		"RaceAIAN": RaceAIAN, "RaceAsian": RaceAsian, "RaceBlack": RaceBlack, "RaceNHPI": RaceNHPI, "RaceWhite": RaceWhite,
		"EthnicityHispanic": EthnicityHispanic, "EthnicityNotHispanic": EthnicityNotHispanic,
		"VisitInpatient": VisitInpatient, "VisitOutpatient": VisitOutpatient, "VisitEmergency": VisitEmergency,
		"VisitEmergencyInpatient": VisitEmergencyInpatient, "VisitHome": VisitHome, "VisitTelehealth": VisitTelehealth,
		"TypeEHR": TypeEHR, "TypeEHRAdministration": TypeEHRAdministration, "TypeEHRPrescription": TypeEHRPrescription,
		"TypePatientReported": TypePatientReported, "TypeEHRPeriod": TypeEHRPeriod,
		"OperatorLess": OperatorLess, "OperatorLessEqual": OperatorLessEqual, "OperatorEqual": OperatorEqual,
		"OperatorGreaterEqual": OperatorGreaterEqual, "OperatorGreater": OperatorGreater,
	}
	for _, table := range []map[string]int32{RaceConcepts, EthnicityConcepts, GenderConcepts, VisitConcepts, ComparatorConcepts} {
		for code, id := range table {
			fixed["code "+code] = id
		}
	}
	for name, id := range fixed {
		if _, ok := verified[id]; !ok {
			t.Errorf("%s = %d is not in the verified list", name, id)
		}
	}

	// Each fixed constant is a concept of the domain its column requires.
	domains := map[string][]int32{
		"Gender":              {GenderMale, GenderFemale},
		"Race":                {RaceAIAN, RaceAsian, RaceBlack, RaceNHPI, RaceWhite},
		"Ethnicity":           {EthnicityHispanic, EthnicityNotHispanic},
		"Visit":               {VisitInpatient, VisitOutpatient, VisitEmergency, VisitEmergencyInpatient, VisitHome, VisitTelehealth},
		"Type Concept":        {TypeEHR, TypeEHRAdministration, TypeEHRPrescription, TypePatientReported, TypeEHRPeriod},
		"Meas Value Operator": {OperatorLess, OperatorLessEqual, OperatorEqual, OperatorGreaterEqual, OperatorGreater},
	}
	for domain, ids := range domains {
		for _, id := range ids {
			if v := verified[id]; v.domain != domain {
				t.Errorf("concept %d is in domain %q, its column needs %q", id, v.domain, domain)
			}
		}
	}
}
