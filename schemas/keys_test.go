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
	if !IsKey(k, "Patient", "a1b2-c3.d4") {
		t.Errorf("IsKey(%q) = false", k)
	}
	for _, c := range [][3]string{{"Patient/a1b2-c3.d5", "Patient", "a1b2-c3.d4"}, {"Patient:a1b2", "Patient", "a1b2"},
		{"Patients/1", "Patient", "s/1"}, {"", "Patient", "1"}} {
		if IsKey([]byte(c[0]), c[1], c[2]) {
			t.Errorf("IsKey(%q, %q, %q) = true", c[0], c[1], c[2])
		}
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

func TestValidResourceIDAndType(t *testing.T) {
	ids := map[string]bool{
		"a": true, "p-1.2": true, "A9": true, "123": true, "-": true, ".": true,
		strings.Repeat("x", 64): true, strings.Repeat("x", 65): false,
		"": false, "bad id": false, "a/b": false, "ü": false, "a\n": false, "a_b": false,
	}
	for id, want := range ids {
		if got := ValidResourceID(id); got != want {
			t.Errorf("ValidResourceID(%q) = %v, want %v", id, got, want)
		}
		if got := ValidResourceID([]byte(id)); got != want {
			t.Errorf("ValidResourceID([]byte(%q)) = %v, want %v", id, got, want)
		}
	}
	// Every byte, against the id alphabet written out.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."
	for c := range 256 {
		if got, want := ValidResourceID([]byte{byte(c)}), strings.IndexByte(alphabet, byte(c)) >= 0; got != want {
			t.Errorf("ValidResourceID(%q) = %v, want %v", []byte{byte(c)}, got, want)
		}
	}
	types := map[string]bool{
		"Patient": true, "DocumentReference": true, "Ab": true, strings.Repeat("A", 64): true,
		"A": false, "patient": false, "Patient1": false, "Pa-tient": false, "": false, strings.Repeat("A", 65): false,
	}
	for typ, want := range types {
		if got := ValidResourceType(typ); got != want {
			t.Errorf("ValidResourceType(%q) = %v, want %v", typ, got, want)
		}
		if got := ValidResourceType([]byte(typ)); got != want {
			t.Errorf("ValidResourceType([]byte(%q)) = %v, want %v", typ, got, want)
		}
	}
}
