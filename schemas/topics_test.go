package schemas

import (
	"regexp"
	"testing"
)

func TestTopicNames(t *testing.T) {
	def := MustTopics("")
	custom := MustTopics("site1")
	cases := []struct{ got, want string }{
		{def.Raw("Patient"), "fhir.raw.Patient"},
		{def.Valid("Observation"), "fhir.valid.Observation"},
		{def.Unique("Encounter"), "fhir.unique.Encounter"},
		{def.OMOP("person"), "omop.person"},
		{def.DLQ(), "fhir.dlq"},
		{def.State("dedupe"), "fhir.state.dedupe"},
		{custom.Raw("Patient"), "site1.raw.Patient"},
		{custom.OMOP("person"), "site1.omop.person"},
		{custom.DLQ(), "site1.dlq"},
		{def.Group("fhirstream-validate"), "fhirstream-validate"},
		{custom.Group("fhirstream-validate"), "site1-fhirstream-validate"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if _, err := NewTopics("bad prefix!"); err == nil {
		t.Error("NewTopics accepted a prefix with a space and '!'")
	}
}

func TestLayerPatternAndParse(t *testing.T) {
	tp := MustTopics("fhir")
	re := regexp.MustCompile(tp.LayerPattern(LayerRaw))
	for topic, want := range map[string]bool{
		"fhir.raw.Patient":       true,
		"fhir.raw.Observation":   true,
		"fhir.valid.Patient":     false,
		"fhir.raw.":              false,
		"fhir.raw.Patient.extra": false,
		"xfhir.raw.Patient":      false,
		"fhir.dlq":               false,
	} {
		if got := re.MatchString(topic); got != want {
			t.Errorf("raw pattern on %q = %v, want %v", topic, got, want)
		}
	}
	if layer, rt, ok := tp.ParseLayerTopic("fhir.unique.Condition"); !ok || layer != LayerUnique || rt != "Condition" {
		t.Errorf("ParseLayerTopic = %q %q %v", layer, rt, ok)
	}
	for _, bad := range []string{"fhir.dlq", "fhir.state.dedupe", "other.raw.Patient", "fhir.raw."} {
		if _, _, ok := tp.ParseLayerTopic(bad); ok {
			t.Errorf("ParseLayerTopic(%q) ok, want not", bad)
		}
	}
	omop := regexp.MustCompile(tp.OMOPPattern())
	if !omop.MatchString("omop.visit_occurrence") || omop.MatchString("omop.") || omop.MatchString("fhir.raw.Patient") {
		t.Error("OMOP pattern matches wrongly")
	}
	if table, ok := tp.ParseOMOPTopic("omop.person"); !ok || table != "person" {
		t.Errorf("ParseOMOPTopic = %q %v", table, ok)
	}
}
