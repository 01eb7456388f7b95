package vocab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testConcepts = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\r\n" +
	"201826\tType 2 diabetes mellitus\tCondition\tSNOMED\tClinical Finding\tS\t44054006\t19700101\t20991231\t\r\n" +
	"45576876\tType 2 diabetes mellitus without complications\tCondition\tICD10CM\t5-char billing code\t\tE11.9\t19700101\t20991231\t\r\n" +
	"4214956\tHistory of clinical finding in subject\tObservation\tSNOMED\tContext-dependent\tS\t417662000\t19700101\t20991231\t\r\n" +
	"35225339\tPersonal history of nicotine dependence\tObservation\tICD10CM\t6-char billing code\t\tZ87.891\t19700101\t20991231\t\r\n" +
	"4209423\tNicotine dependence\tCondition\tSNOMED\tClinical Finding\tS\t56294008\t19700101\t20991231\t\r\n" +
	"\"3036277\"\t\"Body height\"\t\"Measurement\"\t\"LOINC\"\t\"Clinical Observation\"\t\"S\"\t\"8302-2\"\t\"19700101\"\t\"20991231\"\t\"\"\r\n" +
	"99\tOrphan non-standard\tObservation\tSNOMED\tClinical Finding\t\tORPHAN\t19700101\t20991231\t\r\n"

const testRelationships = "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n" +
	"45576876\t201826\tMaps to\t19700101\t20991231\t\n" +
	"201826\t45576876\tMapped from\t19700101\t20991231\t\n" +
	"35225339\t4214956\tMaps to\t19700101\t20991231\t\n" +
	"35225339\t4209423\tMaps to value\t19700101\t20991231\t\n" +
	"99\t201826\tMaps to\t19700101\t20180101\tD\n" +
	"12345\t201826\tMaps to\t19700101\t20991231\t\n"

const testSTCM = "source_code\tsource_concept_id\tsource_vocabulary_id\tsource_code_description\ttarget_concept_id\ttarget_vocabulary_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n" +
	"LOCAL-DM2\t0\thttps://ehr.example/codes\tlocal diabetes code\t201826\tSNOMED\t19700101\t20991231\t\n"

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadAndLookup(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"CONCEPT.csv": testConcepts, "concept_relationship.csv": testRelationships, "SOURCE_TO_CONCEPT_MAP.csv": testSTCM,
	})
	v, st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Concepts != 7 || st.MapsTo != 2 || st.MapsToValue != 1 || st.InvalidRelationships != 1 ||
		st.DanglingRelationships != 1 || st.SourceToConcept != 1 {
		t.Fatalf("stats = %+v", st)
	}

	// A non-standard source code follows 'Maps to' to its standard concept.
	m, ok := v.Lookup("ICD10CM", "E11.9")
	if !ok || m.Source.ID != 45576876 || m.Standard.ID != 201826 || m.Standard.DomainID != "Condition" || !m.Standard.Standard || m.Value.ID != 0 {
		t.Fatalf("E11.9 = %+v, %v", m, ok)
	}
	// A standard concept is its own standard concept.
	m, ok = v.Lookup("SNOMED", "44054006")
	if !ok || m.Source.ID != 201826 || m.Standard.ID != 201826 {
		t.Fatalf("44054006 = %+v", m)
	}
	// 'Maps to value' is returned beside 'Maps to'.
	m, _ = v.Lookup("ICD10CM", "Z87.891")
	if m.Standard.ID != 4214956 || m.Standard.DomainID != "Observation" || m.Value.ID != 4209423 {
		t.Fatalf("Z87.891 = %+v", m)
	}
	// Quoted fields are unquoted.
	m, ok = v.Lookup("LOINC", "8302-2")
	if !ok || m.Standard.ID != 3036277 || m.Standard.Code != "8302-2" || m.Standard.VocabularyID != "LOINC" {
		t.Fatalf("8302-2 = %+v", m)
	}
	// An invalidated mapping is ignored: the concept is found but maps nowhere.
	m, ok = v.Lookup("SNOMED", "ORPHAN")
	if !ok || m.Source.ID != 99 || m.Standard.ID != 0 {
		t.Fatalf("ORPHAN = %+v", m)
	}
	// The same code in another vocabulary is a different concept.
	if _, ok := v.Lookup("LOINC", "44054006"); ok {
		t.Fatal("LOINC 44054006 found")
	}
	if _, ok := v.Lookup("SNOMED", "nope"); ok {
		t.Fatal("unknown code found")
	}
	// SOURCE_TO_CONCEPT_MAP covers local codes, keyed by the vocabulary id given.
	m, ok = v.Lookup("https://ehr.example/codes", "LOCAL-DM2")
	if !ok || m.Source.ID != 0 || m.Standard.ID != 201826 || m.Standard.DomainID != "Condition" {
		t.Fatalf("LOCAL-DM2 = %+v", m)
	}
	if c, ok := v.Concept(4209423); !ok || c.Code != "56294008" || c.DomainID != "Condition" {
		t.Fatalf("Concept(4209423) = %+v", c)
	}
	if _, ok := v.Concept(1); ok {
		t.Fatal("Concept(1) found")
	}
}

func TestLoadErrors(t *testing.T) {
	if _, _, err := Load(writeDir(t, nil)); err == nil || !strings.Contains(err.Error(), "no CONCEPT.csv") {
		t.Fatalf("empty dir: %v", err)
	}
	bad := map[string]string{
		"comma separated": "concept_id,domain_id,vocabulary_id,standard_concept,concept_code\n1,a,b,S,c\n",
		"bad id":          "concept_id\tdomain_id\tvocabulary_id\tstandard_concept\tconcept_code\nx1\tD\tV\tS\tc\n",
		"short line":      "concept_id\tdomain_id\tvocabulary_id\tstandard_concept\tconcept_code\n1\tD\n",
		"empty":           "",
	}
	for name, body := range bad {
		if _, _, err := Load(writeDir(t, map[string]string{"CONCEPT.csv": body})); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("n", 3<<20) // longer than the reader's buffer
	body := "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tstandard_concept\tconcept_code\n" +
		"7\t" + long + "\tDrug\tRxNorm\tS\t123\n8\tshort\tDrug\tRxNorm\tS\t124"
	v, st, err := LoadFrom(strings.NewReader(body), nil, nil)
	if err != nil || st.Concepts != 2 {
		t.Fatalf("%v %+v", err, st)
	}
	if m, ok := v.Lookup("RxNorm", "124"); !ok || m.Standard.ID != 8 {
		t.Fatalf("last line without newline: %+v", m)
	}
}

func TestBuiltin(t *testing.T) {
	v := Builtin()
	for _, id := range []int32{GenderMale, GenderFemale, RaceWhite, EthnicityHispanic, VisitInpatient, TypeEHR, OperatorLess} {
		if _, ok := v.Concept(id); !ok {
			t.Errorf("built-in concept %d missing", id)
		}
	}
	m, ok := v.Lookup("UCUM", "mm[Hg]")
	if !ok || m.Standard.ID != 8876 || m.Standard.DomainID != "Unit" {
		t.Fatalf("mm[Hg] = %+v", m)
	}
	m, ok = v.Lookup("LOINC", "8480-6")
	if !ok || m.Standard.ID != 3004249 || m.Standard.DomainID != "Measurement" {
		t.Fatalf("8480-6 = %+v", m)
	}
}

func TestSystemVocabulary(t *testing.T) {
	for sys, want := range map[string]string{
		"http://loinc.org":                            "LOINC",
		"https://loinc.org/":                          "LOINC",
		"http://snomed.info/sct":                      "SNOMED",
		"http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
		"http://hl7.org/fhir/sid/cvx":                 "CVX",
		"http://unitsofmeasure.org":                   "UCUM",
	} {
		if got, ok := SystemVocabulary(sys); !ok || got != want {
			t.Errorf("SystemVocabulary(%q) = %q, %v; want %q", sys, got, ok, want)
		}
	}
	if _, ok := SystemVocabulary("urn:example"); ok {
		t.Error("unknown system resolved")
	}
}
