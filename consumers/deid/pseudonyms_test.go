package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestPseudonymReferenceForms checks cryptoHash of each form of Reference.reference
// against HMAC-SHA256 computed here: only the id part is hashed, so references keep
// resolving to their pseudonymised targets.
func TestPseudonymReferenceForms(t *testing.T) {
	key := []byte("reference-forms-key")
	h := func(v string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(v))
		return hex.EncodeToString(m.Sum(nil))
	}
	long := strings.Repeat("x", 100) // longer than the cache holds
	cases := []struct{ ref, want string }{
		{"Patient/123", "Patient/" + h("123")},
		{"Patient/" + long, "Patient/" + h(long)},
		{"Encounter/a-b.c", "Encounter/" + h("a-b.c")},
		{"http://x.org/fhir/Patient/123", "http://x.org/fhir/Patient/" + h("123")},
		{"Patient/123/_history/2", "Patient/" + h("123") + "/_history/2"},
		{"http://x.org/fhir/Patient/123/_history/2", "http://x.org/fhir/Patient/" + h("123") + "/_history/2"},
		{"urn:uuid:f00d", "urn:uuid:" + h("f00d")},
		{"urn:oid:1.2.3", "urn:oid:" + h("1.2.3")},
		{"#contained1", "#" + h("contained1")},
		{"Practitioner?identifier=http://npi|99", "Practitioner?identifier=http://npi|" + h("99")},
		{"Practitioner?identifier=http://npi|99&x=1", h("Practitioner?identifier=http://npi|99&x=1")},
		{"Practitioner?name=x", h("Practitioner?name=x")},
		{"patient/123", h("patient/123")},
		{"Patient/", h("Patient/")},
		{"/123", h("/123")},
		{"Pat1ent/123", h("Pat1ent/123")},
		{"123", h("123")},
		{"urn:uuid:", h("urn:uuid:")},
		{"#", h("#")},
	}
	e := &Engine{}
	w := &worker{ids: newMACCache(key)}
	for round := range 2 { // the second from the cache
		for _, c := range cases {
			if got := string(e.appendPseudonymReference(w, nil, c.ref)); got != c.want {
				t.Errorf("round %d: %q: got %q, want %q", round, c.ref, got, c.want)
			}
		}
	}
}

// TestMACCacheAgreesWithHMAC checks macCache against HMAC-SHA256 computed here, for
// more values than it has slots (so that values evict each other), short and long ones,
// asked for again in another order.
func TestMACCacheAgreesWithHMAC(t *testing.T) {
	key := []byte("mac-cache-key")
	c := newMACCache(key)
	var values []string
	for i := range 3 * macSlots {
		values = append(values, strings.Repeat("v", i%(macValue+10))+hex.EncodeToString([]byte{byte(i), byte(i >> 8)}))
	}
	for round := range 2 {
		for k := range values {
			v := values[(k*7919+round)%len(values)]
			m := hmac.New(sha256.New, key)
			m.Write([]byte(v))
			if got := c.sum(v); string(got[:]) != hex.EncodeToString(m.Sum(nil)) {
				t.Fatalf("round %d: HMAC of %q differs", round, v)
			}
		}
	}
}

// TestPatientIDForms checks which references name a patient for the date shift's scope.
func TestPatientIDForms(t *testing.T) {
	for _, c := range []struct {
		ref, id string
		ok      bool
	}{
		{"Patient/123", "123", true},
		{"Patient/123/_history/4", "123", true},
		{"http://x.org/fhir/Patient/123", "123", true},
		{"http://x.org/fhir/Patient/123/_history/4", "123", true},
		{"urn:uuid:abc", "abc", true},
		{"Patient/", "", false},
		{"urn:uuid:", "", false},
		{"XPatient/123", "", false},
		{"Practitioner/123", "", false},
		{"Patient/1/2", "1/2", true},
	} {
		if id, ok := patientID(c.ref); id != c.id || ok != c.ok {
			t.Errorf("%q: %q %v, want %q %v", c.ref, id, ok, c.id, c.ok)
		}
	}
}
