package schemas

import (
	"errors"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	k := Key("Patient", "a1b2-c3.d4")
	if string(k) != "Patient/a1b2-c3.d4" {
		t.Fatalf("Key = %q", k)
	}
	if got := AppendKey([]byte("x"), "Observation", "9"); string(got) != "xObservation/9" {
		t.Fatalf("AppendKey = %q", got)
	}
	rt, id, err := ParseKey(k)
	if err != nil || rt != "Patient" || id != "a1b2-c3.d4" {
		t.Fatalf("ParseKey = %q %q %v", rt, id, err)
	}
}

func TestParseKeyRejects(t *testing.T) {
	for _, bad := range []string{
		"", "Patient", "Patient/", "/123", "patient/1", "Patient/has space", "Patient/a/b",
		"Patient/" + strings.Repeat("x", 65), "Pat1ent/1",
	} {
		if _, _, err := ParseKey([]byte(bad)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q) err = %v, want ErrBadKey", bad, err)
		}
	}
}
