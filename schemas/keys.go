package schemas

import (
	"errors"
	"fmt"
	"regexp"
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

// AppendKey appends the key of a resource to dst, for callers reusing buffers.
func AppendKey(dst []byte, resourceType, id string) []byte {
	dst = append(dst, resourceType...)
	dst = append(dst, '/')
	return append(dst, id...)
}

// FHIR R4 rules: a resource type is an upper-camel-case name; an id is 1–64 characters
// of [A-Za-z0-9-.] (http://hl7.org/fhir/R4/datatypes.html#id).
var (
	resourceTypeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
	resourceIDRE   = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// ErrBadKey is wrapped by ParseKey errors.
var ErrBadKey = errors.New("bad resource key")

// ValidResourceType reports whether s has the form of a FHIR resource type name.
func ValidResourceType(s string) bool { return resourceTypeRE.MatchString(s) }

// ValidResourceID reports whether s is a valid FHIR R4 id.
func ValidResourceID(s string) bool { return resourceIDRE.MatchString(s) }

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
