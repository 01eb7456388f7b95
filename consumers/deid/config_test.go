package deid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusedAtStart: a configuration this package cannot apply in full is refused
// when the engine is built, with the rule's position, path and method.
func TestRefusedAtStart(t *testing.T) {
	cases := []struct{ config, want string }{
		{`{"fhirPathRules":[{"path":"Patient.name","method":"keep"},{"path":"Patient.name.given[0]","method":"redact"}]}`, `fhirPathRules[1] ("Patient.name.given[0]", redact): path: indexers`},
		{`{"fhirPathRules":[{"path":"Patient.name.select(given)","method":"redact"}]}`, `fhirPathRules[0] ("Patient.name.select(given)", redact): path: function select() is not supported`},
		{`{"fhirPathRules":[{"path":"Patient.name.given.substring(0,1)","method":"redact"}]}`, `substring() computes a value`},
		{`{"fhirPathRules":[{"path":"nodesByType('HumanNom')","method":"redact"}]}`, `HumanNom is not a FHIR R4 type`},
		{`{"fhirPathRules":[{"path":"Patient.x implies Patient.y","method":"redact"}]}`, `implies`},
		{`{"fhirPathRules":[{"path":"%resource.id","method":"redact"}]}`, `fhirPathRules[0]`},
		{`{"fhirPathRules":[{"path":"Patient.name","method":"scramble"}]}`, `method "scramble"`},
		{`{"fhirPathRules":[{"path":"Patient.name","method":"redact","span":2}]}`, `span is not a setting of redact`},
		{`{"fhirPathRules":[{"path":"Resource.id","method":"cryptoHash"}]}`, `need a cryptoHashKey`},
		{`{"fhirPathRules":[{"path":"nodesByType('date')","method":"dateShift"}],"parameters":{"dateShiftKey":"k","dateShiftScope":"folder"}}`, `a stream has no files or folders`},
		{`{"fhirPathRules":[{"path":"Patient.name","method":"encrypt"}],"parameters":{"encryptKey":"short"}}`, `16, 24 or 32 bytes`},
		{`{"fhirPathRules":[],"parameters":{"enablePartialZipCodeForRedact":true}}`, `unknown field`},
	}
	for _, c := range cases {
		cfg, err := ParseConfig([]byte(c.config))
		if err == nil {
			_, err = New(cfg, Keys{})
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.config, err, c.want)
		}
	}
}

func TestLoadKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(file, []byte(`{"cryptoHashKey":"from-file","dateShiftKey":"shift-from-file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvCryptoHashKey: "from-env"}
	k, err := LoadKeys(file, func(n string) string { return env[n] })
	if err != nil {
		t.Fatal(err)
	}
	if string(k.CryptoHash) != "from-env" || string(k.DateShift) != "shift-from-file" || len(k.Encrypt) != 0 {
		t.Errorf("keys: %q %q %q", k.CryptoHash, k.DateShift, k.Encrypt)
	}
	if err := os.WriteFile(file, []byte(`{"cryptoHashKey": secret-not-json}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(file, func(string) string { return "" }); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("a bad key file: %v (must fail without quoting it)", err)
	}
}
