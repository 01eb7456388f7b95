package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"hash/maphash"
)

// macCache computes HMAC-SHA256 under one key and remembers what it computed: the values
// hashed repeat (a patient's id in the reference of each of their resources, and as the
// scope of their date shift), and the HMAC is most of cryptoHash's cost. Values are kept
// in one buffer and found by a seeded hash of their bytes, so that neither a hit nor a
// miss allocates once the cache has grown. It is not safe for concurrent use (each
// worker has its own).
type macCache struct {
	mac     hash.Hash
	seed    maphash.Seed
	index   map[uint64]int32 // hash of a value → its entry
	entries []macEntry
	values  []byte // the values of entries, one after another
	scratch []byte // a value being hashed, and the HMAC's output
	last    [sha256.Size]byte
}

type macEntry struct {
	at, n int32 // the value: values[at:at+n]
	sum   [sha256.Size]byte
}

// maxMACs bounds a cache's entries; a full cache is emptied and filled again.
const maxMACs = 1 << 14

func newMACCache(key []byte) macCache {
	return macCache{
		mac:   hmac.New(sha256.New, key),
		seed:  maphash.MakeSeed(),
		index: make(map[uint64]int32, maxMACs),
	}
}

// sum returns the HMAC of v, valid until the next call.
func (c *macCache) sum(v string) *[sha256.Size]byte {
	h := maphash.String(c.seed, v)
	k, ok := c.index[h]
	if ok {
		if en := &c.entries[k]; string(c.values[en.at:en.at+en.n]) == v {
			return &en.sum
		}
		// Another value with the same 64-bit hash: computed each time, not cached.
		c.compute(v)
		return &c.last
	}
	if len(c.entries) >= maxMACs {
		clear(c.index)
		c.entries, c.values = c.entries[:0], c.values[:0]
	}
	c.compute(v)
	c.index[h] = int32(len(c.entries))
	c.entries = append(c.entries, macEntry{at: int32(len(c.values)), n: int32(len(v)), sum: c.last})
	c.values = append(c.values, v...)
	return &c.last
}

// compute sets c.last to the HMAC of v.
func (c *macCache) compute(v string) {
	c.mac.Reset()
	c.scratch = append(c.scratch[:0], v...)
	c.mac.Write(c.scratch)
	c.scratch = c.mac.Sum(c.scratch[:0])
	copy(c.last[:], c.scratch)
}
