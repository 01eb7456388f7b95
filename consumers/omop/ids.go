package omop

import (
	"math/bits"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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

// IdentifierID is the id a reference to a resource by a business identifier is written
// with (ID of its identifier key), which the gold layer's link resolution maps to the
// row carrying that identifier, e.g. IdentifierID("Practitioner", NPISystem, npi) to the
// provider whose npi it is.
func IdentifierID(resourceType, system, value string) int64 {
	return ID(identifierKey(resourceType, system, value))
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
	start := strings.LastIndexByte(ref[:slash], '/') + 1
	typ := ref[start:slash]
	if typ == "" {
		return "", "", false
	}
	// "<Type>/<id>" is already in ref: slicing it out spares building it per reference.
	return ref[start:], typ, true
}

// fnv64a is hash/fnv's 64-bit FNV-1a of s, without converting s to a byte slice (a copy
// per id).
func fnv64a(s string) uint64 {
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return h
}

// collisions remembers which key each id came from, to detect two keys hashing to one id.
// It keeps a 64-bit FNV fingerprint of the key, not the key, so it holds no resource ids
// and costs 16 bytes an entry; it stops learning new ids at limit entries but keeps
// checking the ones it knows. Every row's id is checked, from every partition the stage
// runs at once, so the table is split into shards by id, each with its own lock.
//
// A shard is an open-addressing table (linear probing) rather than a Go map: one probe
// sequence both finds a known id and claims the slot of a new one, where a map needs a
// lookup and then an insert, each hashing the id and each a likely cache miss in a table
// of a million entries. The ids are already uniform hashes, so their bits index the table.
// A shard grows by half when three quarters full, so it stays between half and three
// quarters full: 21-32 bytes per id. (Doubling at half full cost 32-64: for the 1.17
// million rows of 3,000 patients, 51 MB of omop's 137 MB live heap at its peak.)
type collisions struct {
	shards [collisionShards]collisionShard
	limit  int64
	n      atomic.Int64 // ids remembered, over all shards
}

const (
	collisionShards = 32
	// A new shard's slots; a shard grows by half (collisionGrowNum/collisionGrowDen)
	// once more than collisionMaxLoadNum/collisionMaxLoadDen of them are used.
	collisionMinSlots                        = 64
	collisionMaxLoadNum, collisionMaxLoadDen = 3, 4
	collisionGrowNum, collisionGrowDen       = 3, 2
)

type collisionShard struct {
	mu    sync.Mutex
	slots []collisionSlot // at most three quarters full; nil until first used
	used  int
	_     [24]byte // 64 bytes a shard: neighbouring shards' locks are not on one cache line
}

// collisionSlot is one remembered id: tag is the id with the top bit set (ids are
// non-negative), so that 0 marks an empty slot.
type collisionSlot struct {
	tag, fp uint64
}

func newCollisions(limit int) *collisions {
	return &collisions{limit: int64(limit)}
}

// collisionHome is the first slot probed for tag in a table of n slots. The shard was
// chosen by the id's low bits; the id's high bits map uniformly onto [0, n) by Lemire's
// multiply-shift range reduction (the tag's top bit, set in every tag, is shifted out).
func collisionHome(tag uint64, n int) int {
	hi, _ := bits.Mul64(tag<<1, uint64(n))
	return int(hi)
}

// check records that key produced id and reports whether a different key produced it before.
func (c *collisions) check(id int64, key string) bool {
	if c == nil || c.limit <= 0 {
		return false
	}
	fp := fnv64a(key)
	tag := uint64(id) | 1<<63
	s := &c.shards[uint64(id)%collisionShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots == nil {
		s.slots = make([]collisionSlot, collisionMinSlots)
	}
	i := collisionHome(tag, len(s.slots))
	for s.slots[i].tag != 0 {
		if s.slots[i].tag == tag {
			return s.slots[i].fp != fp
		}
		if i++; i == len(s.slots) {
			i = 0
		}
	}
	if c.n.Add(1) > c.limit {
		c.n.Add(-1)
		return false
	}
	s.slots[i] = collisionSlot{tag: tag, fp: fp}
	if s.used++; s.used*collisionMaxLoadDen > len(s.slots)*collisionMaxLoadNum {
		s.grow()
	}
	return false
}

// grow makes the shard's table half as large again, placing every entry anew.
func (s *collisionShard) grow() {
	old := s.slots
	s.slots = make([]collisionSlot, len(old)*collisionGrowNum/collisionGrowDen)
	for _, e := range old {
		if e.tag == 0 {
			continue
		}
		i := collisionHome(e.tag, len(s.slots))
		for s.slots[i].tag != 0 {
			if i++; i == len(s.slots) {
				i = 0
			}
		}
		s.slots[i] = e
	}
}
