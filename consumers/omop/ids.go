package omop

import (
	"hash/fnv"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// NPISystem is the FHIR identifier system of US National Provider Identifiers.
const NPISystem = "http://hl7.org/fhir/sid/us-npi"

// SyntheaIDSystem is the identifier system Synthea gives Organizations and Locations,
// whose values are the resources' own ids.
const SyntheaIDSystem = "https://github.com/synthetichealth/synthea"

// ID returns the OMOP id of a row: the xxhash64 of key (a resource key "<Type>/<id>" or a
// canonical identifier key, see docs/omop-mapping.md) with the sign bit cleared, so it
// fits a signed BIGINT, and never 0, which OMOP tools read as "unknown".
func ID(key string) int64 {
	h := int64(xxhash.Sum64String(key) & (1<<63 - 1))
	if h == 0 {
		h = 1
	}
	return h
}

// ComponentID is the id of the n-th row one resource yields in one table; row 0 has the
// resource's own id, so that references to the resource resolve to it.
func ComponentID(key string, n int) int64 {
	if n == 0 {
		return ID(key)
	}
	return ID(key + "#" + strconv.Itoa(n))
}

// identifierKey is the canonical key of a resource named by a business identifier, the
// same string a conditional reference to it would carry.
func identifierKey(resourceType, system, value string) string {
	return resourceType + "?identifier=" + system + "|" + value
}

// refKey resolves a FHIR reference to the key whose ID is the target's OMOP id:
//
//   - "Type/id", "http://base/Type/id", "Type/id/_history/n"  → "Type/id"
//   - "urn:uuid:X" (bundle-local)                             → "<want>/X"
//   - "Type?identifier=<NPI system>|V"                        → that string, canonical
//   - "Type?identifier=S|V" with S in idSystems               → "Type/V"
//   - "Type?identifier=S|V" otherwise                         → "Type?identifier=S|V"
//
// gotType is the type the reference names; ok is false when it names none.
func refKey(ref, want string, idSystems map[string]bool) (key, gotType string, ok bool) {
	if ref == "" {
		return "", "", false
	}
	if rest, found := strings.CutPrefix(ref, "urn:uuid:"); found && rest != "" && want != "" {
		return want + "/" + rest, want, true
	}
	if path, query, found := strings.Cut(ref, "?"); found {
		typ := path[strings.LastIndexByte(path, '/')+1:]
		q, err := url.ParseQuery(query)
		if err != nil || typ == "" {
			return "", "", false
		}
		ident := q.Get("identifier")
		system, value, found := strings.Cut(ident, "|")
		if !found || value == "" {
			return "", "", false
		}
		if idSystems[system] {
			return typ + "/" + value, typ, true
		}
		return identifierKey(typ, system, value), typ, true
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if slash <= 0 || slash == len(ref)-1 {
		return "", "", false
	}
	id := ref[slash+1:]
	typ := ref[strings.LastIndexByte(ref[:slash], '/')+1 : slash]
	if typ == "" {
		return "", "", false
	}
	return typ + "/" + id, typ, true
}

// collisions remembers which key each id came from, to detect two keys hashing to one id.
// It keeps a 64-bit FNV fingerprint of the key, not the key, so it holds no resource ids
// and costs 16 bytes an entry; it stops learning new ids at limit entries but keeps
// checking the ones it knows.
type collisions struct {
	mu    sync.Mutex
	seen  map[int64]uint64
	limit int
}

func newCollisions(limit int) *collisions {
	return &collisions{seen: make(map[int64]uint64), limit: limit}
}

// check records that key produced id and reports whether a different key produced it before.
func (c *collisions) check(id int64, key string) bool {
	if c == nil || c.limit <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	fp := h.Sum64()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.seen[id]; ok {
		return old != fp
	}
	if len(c.seen) < c.limit {
		c.seen[id] = fp
	}
	return false
}
