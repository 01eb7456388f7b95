package deid

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Config is a de-identification configuration in the format of Microsoft's FHIR
// anonymizer (Tools-for-Health-Data-Anonymization): rules applied in order, each a
// FHIRPath path and a method with its settings, and parameters for the methods. A
// configuration written for that tool is read as it is; docs/deid.md lists the
// differences a stream imposes (keys, date-shift scopes, processing errors).
type Config struct {
	// FHIRVersion is "R4" or empty; anything else is refused.
	FHIRVersion string `json:"fhirVersion"`
	// ProcessingErrors is "raise" or "skip"; in a stream both dead-letter a resource a
	// rule cannot process (nothing is passed through, nothing stops the stage).
	ProcessingErrors string       `json:"processingErrors"`
	Rules            []RuleConfig `json:"fhirPathRules"`
	Parameters       Parameters   `json:"parameters"`
}

// RuleConfig is one entry of fhirPathRules.
type RuleConfig struct {
	Path   string `json:"path"`
	Method string `json:"method"`
	// perturb
	Span      *float64 `json:"span,omitempty"`
	RangeType string   `json:"rangeType,omitempty"`
	RoundTo   *int     `json:"roundTo,omitempty"`
	// substitute
	ReplaceWith json.RawMessage `json:"replaceWith,omitempty"`
	// generalize: cases in their order in the file (a JSON object's order matters here).
	Cases       orderedCases `json:"cases,omitempty"`
	OtherValues string       `json:"otherValues,omitempty"`
}

// Parameters are the configuration's global settings. Keys may be given here, as the
// anonymizer allows, but belong in a key file or the environment (see Keys).
type Parameters struct {
	DateShiftKey   string `json:"dateShiftKey"`
	DateShiftScope string `json:"dateShiftScope"`
	CryptoHashKey  string `json:"cryptoHashKey"`
	EncryptKey     string `json:"encryptKey"`

	EnablePartialAgesForRedact       bool     `json:"enablePartialAgesForRedact"`
	EnablePartialDatesForRedact      bool     `json:"enablePartialDatesForRedact"`
	EnablePartialZipCodesForRedact   bool     `json:"enablePartialZipCodesForRedact"`
	RestrictedZipCodeTabulationAreas []string `json:"restrictedZipCodeTabulationAreas"`

	// AggregateAgesOver89 (fhirstream's, not the anonymizer's) puts ages over 89 and
	// dates indicating them into Safe Harbor's single category "90 or older" instead of
	// removing them: such an age becomes 90 and such a date the year 90 years before
	// now. Records keep a date (OMOP needs one) and reveal only the category.
	AggregateAgesOver89 bool `json:"aggregateAgesOver89"`
}

// caseEntry is one generalize case: a condition and the value it gives.
type caseEntry struct{ cond, value string }

type orderedCases []caseEntry

func (c *orderedCases) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("cases must be an object of condition: value")
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("case %q: its value must be a FHIRPath expression in a string", k)
		}
		*c = append(*c, caseEntry{k.(string), v})
	}
	_, err := dec.Token()
	return err
}

// ParseConfig reads a configuration, refusing unknown fields so that a misspelt
// parameter cannot silently leave data identifiable.
func ParseConfig(b []byte) (*Config, error) {
	// The anonymizer's own documentation spells the field both ways.
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("de-identification configuration: %w", err)
	}
	if v, ok := probe["processingError"]; ok {
		if _, both := probe["processingErrors"]; both {
			return nil, errors.New("de-identification configuration: both processingError and processingErrors")
		}
		probe["processingErrors"] = v
		delete(probe, "processingError")
		b, _ = json.Marshal(probe)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("de-identification configuration: %w", err)
	}
	return &c, nil
}

// LoadConfig reads the configuration file path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("de-identification configuration: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Keys are the secrets of the keyed methods. Every instance of the stage must use the
// same keys, or pseudonyms and date shifts differ between partitions and restarts.
// Changing a key changes every pseudonym (or shift, or ciphertext) made with it:
// docs/deid.md, "Keys and their rotation".
type Keys struct {
	CryptoHash []byte // HMAC-SHA256 key of cryptoHash (ids, references) and of perturb's noise
	DateShift  []byte // HMAC-SHA256 key of the per-patient (or per-resource) date shift
	Encrypt    []byte // AES key of encrypt: 16, 24 or 32 bytes
}

// Environment variables that hold the keys (they override a key file).
const (
	EnvCryptoHashKey = "FHIRSTREAM_DEID_CRYPTO_HASH_KEY"
	EnvDateShiftKey  = "FHIRSTREAM_DEID_DATE_SHIFT_KEY"
	EnvEncryptKey    = "FHIRSTREAM_DEID_ENCRYPT_KEY"
)

// LoadKeys reads the keys from file (a JSON object with cryptoHashKey, dateShiftKey
// and encryptKey; "" for none), then lets the environment (getenv, os.Getenv in
// production) override each. Keys are never taken from a command-line flag: flags show
// in process listings and shell histories.
func LoadKeys(file string, getenv func(string) string) (Keys, error) {
	var k Keys
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return k, fmt.Errorf("de-identification keys: %w", err)
		}
		var f struct {
			CryptoHashKey string `json:"cryptoHashKey"`
			DateShiftKey  string `json:"dateShiftKey"`
			EncryptKey    string `json:"encryptKey"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			// The decoder's message may quote the file: it holds secrets.
			return k, fmt.Errorf("de-identification keys %s: not a JSON object of cryptoHashKey, dateShiftKey, encryptKey", file)
		}
		k = Keys{CryptoHash: []byte(f.CryptoHashKey), DateShift: []byte(f.DateShiftKey), Encrypt: []byte(f.EncryptKey)}
	}
	for _, e := range []struct {
		name string
		dst  *[]byte
	}{{EnvCryptoHashKey, &k.CryptoHash}, {EnvDateShiftKey, &k.DateShift}, {EnvEncryptKey, &k.Encrypt}} {
		if v := getenv(e.name); v != "" {
			*e.dst = []byte(v)
		}
	}
	return k, nil
}

// withConfigKeys fills keys the caller left empty from the configuration's parameters.
func (k Keys) withConfigKeys(p Parameters) Keys {
	if len(k.CryptoHash) == 0 {
		k.CryptoHash = []byte(p.CryptoHashKey)
	}
	if len(k.DateShift) == 0 {
		k.DateShift = []byte(p.DateShiftKey)
	}
	if len(k.Encrypt) == 0 {
		k.Encrypt = []byte(p.EncryptKey)
	}
	return k
}

// method names, as the configuration spells them (case does not matter).
const (
	methodKeep       = "keep"
	methodRedact     = "redact"
	methodDateShift  = "dateshift"
	methodCryptoHash = "cryptohash"
	methodEncrypt    = "encrypt"
	methodSubstitute = "substitute"
	methodPerturb    = "perturb"
	methodGeneralize = "generalize"
)

func normalMethod(m string) string { return strings.ToLower(m) }

// methodKind is a method as the engine switches on it for every value it edits (a
// number, where the configuration's name is a string).
type methodKind uint8

const (
	kindKeep methodKind = iota
	kindRedact
	kindDateShift
	kindCryptoHash
	kindEncrypt
	kindSubstitute
	kindPerturb
	kindGeneralize
)

// methodKinds maps the methods' names to their kinds.
var methodKinds = map[string]methodKind{
	methodKeep: kindKeep, methodRedact: kindRedact, methodDateShift: kindDateShift,
	methodCryptoHash: kindCryptoHash, methodEncrypt: kindEncrypt, methodSubstitute: kindSubstitute,
	methodPerturb: kindPerturb, methodGeneralize: kindGeneralize,
}
