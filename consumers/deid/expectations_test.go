package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// The expectations below are written from the configuration's documented semantics
// (docs/deid.md, the anonymizer's documentation of each method and parameter) and the
// presets' rules, element by element; hashes and shifts are computed here with the
// standard library from their definitions, not by the package.

// h is cryptoHash: hex HMAC-SHA256 under the test key.
func h(v string) string {
	m := hmac.New(sha256.New, testKeys.CryptoHash)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// shiftOf is the date shift of a patient id: HMAC-SHA256 under the date-shift key, its
// first 8 bytes big-endian, modulo 101, minus 50.
func shiftOf(id string) int {
	m := hmac.New(sha256.New, testKeys.DateShift)
	m.Write([]byte(id))
	return int(binary.BigEndian.Uint64(m.Sum(nil))%101) - 50
}

// shifted moves a YYYY-MM-DD date by days.
func shifted(t *testing.T, date string, days int) string {
	d, err := time.Parse("2006-01-02", date)
	if err != nil {
		t.Fatal(err)
	}
	return d.AddDate(0, 0, days).Format("2006-01-02")
}

func TestPresetExpectations(t *testing.T) {
	lines := readNDJSON(t, "testdata/identifiers.ndjson")
	byID := map[string][]byte{}
	for _, l := range lines {
		id := strings.SplitN(strings.SplitN(string(l), `"id":"`, 2)[1], `"`, 2)[0]
		byID[id] = l
	}
	s := shiftOf("pat-zq-0001")
	if s == 0 {
		t.Log("the test key shifts this patient by 0 days: the shift checks are weaker")
	}
	sh := func(date string) string { return shifted(t, date, s) }
	orgRef := `"managingOrganization":{"reference":"Organization/` + h("org-77") + `"}`
	birthsex := `"extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"M"}]`
	cases := []struct {
		preset, id, want string
	}{
		{"safe-harbor-dateshift", "pat-zq-0001", `{"resourceType":"Patient","id":"` + h("pat-zq-0001") + `",` +
			`"meta":{"lastUpdated":"` + sh("2024-02-03") + `T00:00:00Z","source":"#ehr-node-7"},` + birthsex + `,` +
			`"gender":"male","birthDate":"` + sh("1961-07-19") + `","deceasedDateTime":"` + sh("2019-03-04") + `T00:00:00Z",` +
			`"address":[{"state":"Massachusetts","postalCode":"02100","country":"US","period":{"start":"1999"}}],` + orgRef + `}`},
		{"safe-harbor", "pat-zq-0001", `{"resourceType":"Patient","id":"` + h("pat-zq-0001") + `",` +
			`"meta":{"lastUpdated":"2024-01-01T00:00:00Z","source":"#ehr-node-7"},` + birthsex + `,` +
			`"gender":"male","birthDate":"1961","deceasedDateTime":"2019",` +
			`"address":[{"state":"Massachusetts","postalCode":"02100","country":"US","period":{"start":"1999"}}],` + orgRef + `}`},
		{"limited-data-set", "pat-zq-0001", `{"resourceType":"Patient","id":"` + h("pat-zq-0001") + `",` +
			`"meta":{"lastUpdated":"2024-02-03T04:05:06Z","source":"#ehr-node-7"},` + birthsex + `,` +
			`"gender":"male","birthDate":"1961-07-19","deceasedDateTime":"2019-03-04T10:11:12Z",` +
			`"address":[{"use":"home","city":"Wakefieldton","state":"Massachusetts","postalCode":"02138","country":"US","period":{"start":"1999-06-01"}}],` + orgRef + `}`},
		// Over 89: the birth date goes to the "90 or older" year; 036 is a restricted ZIP area.
		{"safe-harbor-dateshift", "pat-old-0002", `{"resourceType":"Patient","id":"` + h("pat-old-0002") + `","gender":"female","birthDate":"1936",` +
			`"address":[{"postalCode":"00000","state":"New Hampshire"}]}`},
		{"safe-harbor-dateshift", "enc-zq-0001", `{"resourceType":"Encounter","id":"` + h("enc-zq-0001") + `","status":"finished",` +
			`"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},` +
			`"subject":{"reference":"Patient/` + h("pat-zq-0001") + `"},` +
			`"participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|` + h("9999912345") + `"}}],` +
			`"period":{"start":"` + sh("2015-05-06") + `T00:00:00-04:00","end":"` + sh("2015-05-06") + `T00:00:00-04:00"},` +
			`"location":[{"location":{"reference":"Location/` + h("loc-home-zq") + `"}}]}`},
		{"safe-harbor-dateshift", "obs-zq-0001", `{"resourceType":"Observation","id":"` + h("obs-zq-0001") + `","status":"final",` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body height"}]},` +
			`"subject":{"reference":"urn:uuid:` + h("pat-zq-0001") + `"},"encounter":{"reference":"urn:uuid:` + h("enc-zq-0001") + `"},` +
			`"effectiveDateTime":"` + sh("2015-05-06") + `T00:00:00-04:00",` +
			`"valueQuantity":{"value":180.3,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}}`},
		{"safe-harbor-dateshift", "obs-zq-0002", `{"resourceType":"Observation","id":"` + h("obs-zq-0002") + `","status":"final",` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]},"subject":{"reference":"Patient/` + h("pat-zq-0001") + `"}}`},
		{"safe-harbor-dateshift", "cov-zq-0001", `{"resourceType":"Coverage","id":"` + h("cov-zq-0001") + `",` +
			`"status":"active","identifier":[{"value":"` + h("MEMB-99123") + `"}],` +
			`"beneficiary":{"reference":"Patient/` + h("pat-zq-0001") + `"},"payor":[{"reference":"Organization/` + h("org-77") + `"}]}`},
		{"safe-harbor-dateshift", "dev-zq-0001", `{"resourceType":"Device","id":"` + h("dev-zq-0001") + `",` +
			`"identifier":[{"value":"` + h("DEV-PM-4455") + `"}],"patient":{"reference":"Patient/` + h("pat-zq-0001") + `"}}`},
	}
	engines := map[string]*Engine{}
	for _, c := range cases {
		e := engines[c.preset]
		if e == nil {
			e = newTestProcessor(t, c.preset).Engine
			engines[c.preset] = e
		}
		res, err := e.Apply(nil, byID[c.id])
		if err != nil {
			t.Fatalf("%s %s: %v", c.preset, c.id, err)
		}
		if string(res.JSON) != c.want {
			t.Errorf("%s %s:\n got %s\nwant %s", c.preset, c.id, res.JSON, c.want)
		}
	}
}

func hmacSHA256(key []byte, v string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}
