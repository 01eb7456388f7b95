package deid

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

// apply runs a configuration (JSON) on one resource and returns the result.
func applyConfig(t *testing.T, config string, keys Keys, resource string) (string, error) {
	t.Helper()
	cfg, err := ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, keys, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Apply(nil, []byte(resource))
	return string(res.JSON), err
}

func rules(rs ...string) string {
	return `{"fhirPathRules":[` + strings.Join(rs, ",") + `]}`
}

// TestMethods checks each method on small resources against what its documented
// semantics give (docs/deid.md).
func TestMethods(t *testing.T) {
	obs := `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"valueQuantity":{"value":18,"unit":"cm"},"component":[{"code":{"text":"a"},"valueInteger":47},{"code":{"text":"b"},"valueString":"es-UY"}]}`
	pat := `{"resourceType":"Patient","id":"p1","birthDate":"1995-06-15","communication":[{"language":{"coding":[{"code":"es-UY"},{"code":"en-GB"},{"code":"fr"}]}}],"address":[{"city":"Springfield","postalCode":"12345"}]}`
	cases := []struct {
		name, config, resource, want string
	}{
		{"generalize numeric range",
			rules(`{"path":"Observation.value.ofType(Quantity).value","method":"generalize","cases":{"$this>=0 and $this<20":"20","$this>=20 and $this<40":"40"},"otherValues":"redact"}`),
			obs, `"valueQuantity":{"value":20,"unit":"cm"}`},
		{"generalize to multiples of ten",
			rules(`{"path":"Observation.component.value.ofType(integer)","method":"generalize","cases":{"true":"($this div 10)*10"}}`),
			obs, `"valueInteger":40`},
		{"generalize value set, others redacted",
			rules(`{"path":"Patient.communication.language.coding.code","method":"generalize","cases":{"$this in ('en-AU' | 'en-GB' | 'en-US')":"'en'","$this in ('es-AR' | 'es-ES' | 'es-UY')":"'es'"},"otherValues":"redact"}`),
			pat, `"coding":[{"code":"es"},{"code":"en"}]`},
		{"generalize with substring",
			rules(`{"path":"Patient.address.postalCode","method":"generalize","cases":{"$this.startsWith('123')":"$this.substring(0,2)+'***'"}}`),
			pat, `"postalCode":"12***"`},
		{"generalize dates by range",
			rules(`{"path":"Patient.birthDate","method":"generalize","cases":{"$this >= @1990-01-01 and $this <= @2000-01-01":"@1990"}}`),
			pat, `"birthDate":"1990"`},
		{"generalize dates with replaceMatches",
			rules(`{"path":"Patient.birthDate","method":"generalize","cases":{"true":"$this.replaceMatches('(?<year>\\\\d{4})-(?<month>\\\\d{2})-\\\\d{2}', '${year}-${month}')"}}`),
			pat, `"birthDate":"1995-06"`},
		{"substitute a primitive",
			rules(`{"path":"nodesByType('Address').city","method":"substitute","replaceWith":"example city"}`),
			pat, `"address":[{"city":"example city","postalCode":"12345"}]`},
		{"substitute a complex element, member order kept",
			rules(`{"path":"nodesByType('Address')","method":"substitute","replaceWith":{"use":"home","city":"example city","period":{"start":"2000-01-01"}}}`),
			pat, `"address":[{"use":"home","city":"example city","period":{"start":"2000-01-01"}}]`},
		{"keep wins over a later redact",
			rules(`{"path":"Patient.address.city","method":"keep"}`, `{"path":"nodesByType('Address')","method":"redact"}`),
			pat, `"address":[{"city":"Springfield"}]`},
		{"redact first wins over a later keep",
			rules(`{"path":"nodesByType('Address')","method":"redact"}`, `{"path":"Patient.address.city","method":"keep"}`),
			pat, `"communication":[{"language":{"coding":[{"code":"es-UY"},{"code":"en-GB"},{"code":"fr"}]}}]}`},
		{"where selects by a member",
			rules(`{"path":"Patient.communication.language.coding.where(code='fr')","method":"redact"}`),
			pat, `"coding":[{"code":"es-UY"},{"code":"en-GB"}]`},
	}
	for _, c := range cases {
		got, err := applyConfig(t, c.config, Keys{}, c.resource)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s:\n got %s\nwant it to contain %s", c.name, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("%s: invalid JSON %s", c.name, got)
		}
	}
}

func TestPerturb(t *testing.T) {
	keys := Keys{CryptoHash: []byte("k")}
	cfg := rules(`{"path":"Observation.value.ofType(Quantity).value","method":"perturb","span":0.2,"rangeType":"proportional","roundTo":1}`,
		`{"path":"Observation.component.value.ofType(integer)","method":"perturb","span":6}`)
	for id := range 200 {
		res := `{"resourceType":"Observation","id":"o` + strconv.Itoa(id) + `","status":"final","code":{"text":"x"},"valueQuantity":{"value":180.0},"component":[{"code":{"text":"c"},"valueInteger":47}]}`
		got, err := applyConfig(t, cfg, keys, res)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := applyConfig(t, cfg, keys, res)
		if got != again {
			t.Fatalf("perturb is not repeatable: %s then %s", got, again)
		}
		var out struct {
			ValueQuantity struct{ Value json.Number }
			Component     []struct{ ValueInteger json.Number }
		}
		if err := json.Unmarshal([]byte(got), &out); err != nil {
			t.Fatal(err)
		}
		v, _ := out.ValueQuantity.Value.Float64()
		if v < 162 || v > 198 || strings.Contains(string(out.ValueQuantity.Value), ".") && len(strings.SplitN(string(out.ValueQuantity.Value), ".", 2)[1]) > 1 {
			t.Fatalf("180 ± 10%% rounded to 1 decimal: got %s", out.ValueQuantity.Value)
		}
		n, err := strconv.Atoi(string(out.Component[0].ValueInteger))
		if err != nil || n < 44 || n > 50 {
			t.Fatalf("47 ± 3 as an integer: got %s", out.Component[0].ValueInteger)
		}
	}
}

func TestEncrypt(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	cfg := rules(`{"path":"nodesByType('Address').city","method":"encrypt"}`)
	res := `{"resourceType":"Patient","id":"p1","address":[{"city":"Springfield"}]}`
	var seen []string
	for range 2 {
		got, err := applyConfig(t, cfg, Keys{Encrypt: key}, res)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Address []struct{ City string } }
		if err := json.Unmarshal([]byte(got), &out); err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(out.Address[0].City)
		if err != nil || len(raw) < 32 || len(raw)%16 != 0 {
			t.Fatalf("not base64(IV || ciphertext): %q", out.Address[0].City)
		}
		block, _ := aes.NewCipher(key)
		plain := make([]byte, len(raw)-16)
		cipher.NewCBCDecrypter(block, raw[:16]).CryptBlocks(plain, raw[16:])
		pad := int(plain[len(plain)-1])
		if string(plain[:len(plain)-pad]) != "Springfield" {
			t.Fatalf("decrypted %q", plain)
		}
		seen = append(seen, out.Address[0].City)
	}
	if seen[0] == seen[1] {
		t.Error("two encryptions of one value are equal: the IV is not random")
	}
}

// TestRejections: what a rule cannot process, and JSON that is not an R4 resource, is a
// rejection naming rule and element, never a value.
func TestRejections(t *testing.T) {
	cases := []struct{ config, resource, class, path string }{
		{rules(`{"path":"Observation.value.ofType(Quantity).value","method":"cryptoHash"}`),
			`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueQuantity":{"value":18.5}}`, ClassRule, "Observation.valueQuantity.value"},
		{rules(`{"path":"nodesByType('Address').city","method":"substitute","replaceWith":{"a":1}}`),
			`{"resourceType":"Patient","id":"p1","address":[{"city":"Secretville"}]}`, ClassRule, "Patient.address[0].city"},
		{rules(), `{"resourceType":"Patient","id":"p1","nickname":"Secretville"}`, "unknown-element", "Patient.nickname"},
		{rules(), `{"resourceType":"Patient","id":"p1","name":"Secretville"}`, "type-mismatch", "Patient.name"},
		{rules(), `{"resourceType":"Patientz","id":"p1"}`, "type-mismatch", "Resource.resourceType"},
		{rules(`{"path":"Resource.id","method":"redact"}`), `{"resourceType":"Patient","id":"p1"}`, ClassRule, "Patient.id"},
		{rules(), `{"resourceType":"Patient","id":"p1",`, "invalid-json", ""},
	}
	for _, c := range cases {
		_, err := applyConfig(t, c.config, Keys{CryptoHash: []byte("k")}, c.resource)
		r, ok := stage.AsRejection(err)
		if !ok {
			t.Errorf("%s: got %v, want a rejection", c.resource, err)
			continue
		}
		if r.Class != c.class || r.Path != c.path {
			t.Errorf("%s: rejection %s at %q, want %s at %q", c.resource, r.Class, r.Path, c.class, c.path)
		}
		if strings.Contains(r.Error(), "Secretville") || strings.Contains(r.Error(), "18.5") {
			t.Errorf("the rejection quotes a value: %v", r)
		}
	}
}

// TestCompanionsAndContained: a primitive's _name companion is the same element as the
// primitive, and contained resources get their own type's rules.
func TestCompanionsAndContained(t *testing.T) {
	keys := Keys{CryptoHash: []byte("k")}
	res := `{"resourceType":"Patient","id":"p1","contained":[{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Welby"}]}],` +
		`"name":[{"given":["Ann","Bo"],"_given":[null,{"extension":[{"url":"http://x/nick","valueString":"Bobo"}]}]}],` +
		`"_birthDate":{"extension":[{"url":"http://x/acc","valueCode":"estimated"}]},"birthDate":"1990-01-02","generalPractitioner":[{"reference":"#pr1"}]}`
	got, err := applyConfig(t, rules(
		`{"path":"Patient.name.given.where($this='Bo')","method":"redact"}`,
		`{"path":"Practitioner.name","method":"redact"}`,
		`{"path":"Resource.id","method":"cryptoHash"}`,
		`{"path":"nodesByType('Reference').reference","method":"cryptoHash"}`,
		`{"path":"Patient.birthDate","method":"keep"}`,
	), keys, res)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"` + hk("p1") + `","contained":[{"resourceType":"Practitioner","id":"` + hk("pr1") + `"}],` +
		`"name":[{"given":["Ann"]}],` +
		`"_birthDate":{"extension":[{"url":"http://x/acc","valueCode":"estimated"}]},"birthDate":"1990-01-02","generalPractitioner":[{"reference":"#` + hk("pr1") + `"}]}`
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

// hk is cryptoHash under the key "k".
func hk(v string) string {
	k := testKeys
	k.CryptoHash = []byte("k")
	m := hmacSHA256(k.CryptoHash, v)
	return m
}
