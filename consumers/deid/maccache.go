package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"hash/maphash"
)

// macCache computes HMAC-SHA256 under one key and remembers recent results: the values
// hashed repeat (a patient's id in the reference of each of their resources, and as the
// scope of their date shift), and the HMAC is most of cryptoHash's cost. It is a
// direct-mapped table of macSlots slots, small enough to stay in the processor's cache
// (a lookup costs one or two cache lines, where a Go map of as many entries misses the
// cache several times): a value evicts the one in its slot, and values longer than a
// slot holds are computed every time. Nothing is allocated after the first calls. It is
// not safe for concurrent use (each worker has its own).
type macCache struct {
	mac     hash.Hash
	seed    maphash.Seed
	slots   []macSlot
	scratch []byte // a value being hashed, and the HMAC's output
	last    [sha256.Size]byte
}

// macSlots is the number of slots (a power of two); macValue the longest value cached
// (ids, UUIDs and most identifiers fit).
const (
	macSlots = 1 << 12
	macValue = 64
)

type macSlot struct {
	hash  uint64
	n     uint8 // len(value); 0 for an empty slot
	value [macValue]byte
	sum   [sha256.Size]byte
}

func newMACCache(key []byte) macCache {
	return macCache{mac: hmac.New(sha256.New, key), seed: maphash.MakeSeed(), slots: make([]macSlot, macSlots)}
}

// sum returns the HMAC of v, valid until the next call.
func (c *macCache) sum(v string) *[sha256.Size]byte {
	if len(v) == 0 || len(v) > macValue {
		c.compute(v)
		return &c.last
	}
	h := maphash.String(c.seed, v)
	sl := &c.slots[h&(macSlots-1)]
	if sl.hash == h && int(sl.n) == len(v) && string(sl.value[:sl.n]) == v {
		return &sl.sum
	}
	c.compute(v)
	sl.hash, sl.n, sl.sum = h, uint8(len(v)), c.last
	copy(sl.value[:], v)
	return &sl.sum
}

// compute sets c.last to the HMAC of v.
func (c *macCache) compute(v string) {
	c.mac.Reset()
	c.scratch = append(c.scratch[:0], v...)
	c.mac.Write(c.scratch)
	c.scratch = c.mac.Sum(c.scratch[:0])
	copy(c.last[:], c.scratch)
}
