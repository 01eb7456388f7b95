package ehrsim

import (
	"slices"
	"strings"

	"github.com/valyala/fastjson"
)

// alwaysKept are the elements _elements never removes: what makes a resource a resource,
// and meta, which carries the SUBSETTED tag.
var alwaysKept = []string{"resourceType", "id", "meta"}

// mandatoryElements are the R4 root elements of minimum cardinality 1 of the types the
// simulator usually serves. The Bulk Data IG has _elements keep them whatever the list
// says, so that a subsetted resource is still valid. Choice elements ([x]) are given by
// their stem.
var mandatoryElements = map[string][]string{
	"AllergyIntolerance": {"patient"},
	"Condition":          {"subject"},
	"DiagnosticReport":   {"status", "code"},
	"Encounter":          {"status", "class"},
	"Immunization":       {"status", "vaccineCode", "patient", "occurrence"},
	"MedicationRequest":  {"status", "intent", "medication", "subject"},
	"Observation":        {"status", "code"},
	"Procedure":          {"status", "subject"},
	"Claim": {"status", "type", "use", "patient", "created", "provider", "priority",
		"insurance"},
	"ExplanationOfBenefit": {"status", "type", "use", "patient", "created", "insurer",
		"provider", "outcome", "insurance"},
}

// subsettedTag is the meta.tag the IG asks for on resources with elements left out.
const (
	subsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	subsettedCode   = "SUBSETTED"
)

// subset removes from v the root elements neither listed in elements (for typ, or for
// every type under "") nor mandatory, and tags v SUBSETTED when it removed any. It
// reports whether v changed; new values are allocated on a.
func subset(v *fastjson.Value, a *fastjson.Arena, typ string, elements map[string][]string) bool {
	obj, err := v.Object()
	if err != nil {
		return false
	}
	wanted := append(append(append([]string(nil), elements[""]...), elements[typ]...), mandatoryElements[typ]...)
	if len(elements[""]) == 0 && len(elements[typ]) == 0 {
		// Elements were asked for other types only: this type is exported whole.
		return false
	}
	var drop []string
	obj.Visit(func(key []byte, _ *fastjson.Value) {
		k := string(key)
		if !slices.Contains(alwaysKept, k) && !slices.ContainsFunc(wanted, func(w string) bool { return elementMatches(k, w) }) {
			drop = append(drop, k)
		}
	})
	if len(drop) == 0 {
		return false
	}
	for _, k := range drop {
		obj.Del(k)
	}
	meta := v.Get("meta")
	if meta == nil || meta.Type() != fastjson.TypeObject {
		meta = a.NewObject()
		v.Set("meta", meta)
	}
	tags := meta.Get("tag")
	if tags == nil || tags.Type() != fastjson.TypeArray {
		tags = a.NewArray()
		meta.Set("tag", tags)
	}
	tag := a.NewObject()
	tag.Set("system", a.NewString(subsettedSystem))
	tag.Set("code", a.NewString(subsettedCode))
	tags.SetArrayItem(len(tags.GetArray()), tag)
	return true
}

// elementMatches says whether JSON key k is element name w: the same name, or, for a
// choice element such as value[x], the stem followed by a type (valueQuantity).
func elementMatches(k, w string) bool {
	w = strings.TrimSuffix(w, "[x]")
	if k == w || k == "_"+w {
		return true
	}
	rest, ok := strings.CutPrefix(k, w)
	return ok && rest != "" && rest[0] >= 'A' && rest[0] <= 'Z'
}
