package schemas

import (
	"errors"
	"fmt"
)

// Key is the record key of a FHIR resource: "<ResourceType>/<id>". Keying by resource
// puts every version of a resource in one partition, in order, which dedupe and the
// OMOP row replacement rely on.
func Key(resourceType, id string) []byte {
	b := make([]byte, 0, len(resourceType)+1+len(id))
	b = append(b, resourceType...)
	b = append(b, '/')
	return append(b, id...)
}

// IsKey reports whether key is Key(resourceType, id), without building it: the stages
// check every record's key against its resource.
func IsKey(key []byte, resourceType, id string) bool {
	n := len(resourceType)
	return len(key) == n+1+len(id) && string(key[:n]) == resourceType && key[n] == '/' && string(key[n+1:]) == id
}

// AppendKey appends the key of a resource to dst, for callers reusing buffers.
func AppendKey(dst []byte, resourceType, id string) []byte {
	dst = append(dst, resourceType...)
	dst = append(dst, '/')
	return append(dst, id...)
}

// ErrBadKey is wrapped by ParseKey errors.
var ErrBadKey = errors.New("bad resource key")

// ValidResourceType reports whether s has the form of a FHIR resource type name: an
// upper-camel-case name of 2–64 letters. It takes bytes or a string, so hot paths check
// fields in place without converting them; it is a byte loop, not a regular expression,
// because every stage checks every record with it (a regexp was a third of validate's time).
func ValidResourceType[T ~string | ~[]byte](s T) bool {
	if len(s) < 2 || len(s) > 64 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// ValidResourceID reports whether s is a valid FHIR R4 id: 1–64 characters of
// [A-Za-z0-9-.] (http://hl7.org/fhir/R4/datatypes.html#id). Every resource and
// reference has one, mostly UUIDs: a table lookup per byte is several times faster
// there than a chain of range tests.
func ValidResourceID[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte[s[i]] {
			return false
		}
	}
	return true
}

// idByte marks the bytes of [A-Za-z0-9-.].
var idByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
	}
	return t
}()

// ParseKey splits a key into resource type and id, checking both against FHIR's rules.
func ParseKey(key []byte) (resourceType, id string, err error) {
	for i, c := range key {
		if c == '/' {
			resourceType, id = string(key[:i]), string(key[i+1:])
			if !ValidResourceType(resourceType) {
				return "", "", fmt.Errorf("%w %q: resource type is not a FHIR type name", ErrBadKey, key)
			}
			if !ValidResourceID(id) {
				return "", "", fmt.Errorf("%w %q: id is not a FHIR id (1-64 of A-Z a-z 0-9 - .)", ErrBadKey, key)
			}
			return resourceType, id, nil
		}
	}
	return "", "", fmt.Errorf("%w %q: want <ResourceType>/<id>", ErrBadKey, key)
}
