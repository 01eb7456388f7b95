package deid

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"hash/maphash"
)

// macCache computes HMAC-SHA256 under one key and remembers recent results: the values
// hashed repeat (a patient's id in the reference of each of their resources, and as the
// scope of their date shift), and the HMAC is most of cryptoHash's cost. It is a
// direct-mapped table of macSlots slots, small enough to stay in the processor's cache
// (a lookup costs one or two cache lines, where a Go map of as many entries misses the
// cache several times): a value evicts the one in its slot, and values longer than a
// slot holds are computed every time. Slots are chosen by a cheap keyed mix of the
// value's ends (ids are mostly random already); a value is only taken from a slot that
// holds it byte for byte, so a poor spread costs HMACs, never a wrong result. Nothing is
// allocated after the first calls. It is not safe for concurrent use (each worker has
// its own).
type macCache struct {
	mac     hash.Hash
	k0, k1  uint64 // the mix's keys, random per cache
	slots   []macSlot
	scratch []byte // a value being hashed, and the HMAC's output
	last    [2 * sha256.Size]byte
}

// macSlots is the number of slots (a power of two); macValue the longest value cached
// (ids, UUIDs and most identifiers fit).
const (
	macSlots = 1 << 11
	macValue = 64
)

type macSlot struct {
	hash  uint64
	n     uint8 // len(value); 0 for an empty slot
	value [macValue]byte
	hex   [2 * sha256.Size]byte // the HMAC in hex, as pseudonyms are written
}

func newMACCache(key []byte) macCache {
	seed := maphash.MakeSeed()
	return macCache{mac: hmac.New(sha256.New, key), k0: maphash.String(seed, "k0") | 1, k1: maphash.String(seed, "k1") | 1, slots: make([]macSlot, macSlots)}
}

// load64 reads s[i:i+8] as a little-endian number.
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// mix is the slot hash of v, 0 < len(v) <= macValue.
func (c *macCache) mix(v string) uint64 {
	var a, b uint64
	if len(v) >= 8 {
		a, b = load64(v, 0), load64(v, len(v)-8)
	} else {
		for i := 0; i < len(v); i++ {
			a = a<<8 | uint64(v[i])
		}
	}
	h := (a^c.k0)*0x9e3779b97f4a7c15 ^ (b^c.k1)*0xc2b2ae3d27d4eb4f ^ uint64(len(v))
	return h ^ h>>29
}

// sum returns the HMAC of v in lower-case hex, valid until the next call.
func (c *macCache) sum(v string) *[2 * sha256.Size]byte {
	if len(v) == 0 || len(v) > macValue {
		c.compute(v)
		return &c.last
	}
	h := c.mix(v)
	sl := &c.slots[h&(macSlots-1)]
	if sl.hash == h && int(sl.n) == len(v) && string(sl.value[:sl.n]) == v {
		return &sl.hex
	}
	c.compute(v)
	sl.hash, sl.n, sl.hex = h, uint8(len(v)), c.last
	copy(sl.value[:], v)
	return &sl.hex
}

// compute sets c.last to the HMAC of v in hex.
func (c *macCache) compute(v string) {
	c.mac.Reset()
	c.scratch = append(c.scratch[:0], v...)
	c.mac.Write(c.scratch)
	c.scratch = c.mac.Sum(c.scratch[:0])
	hex.Encode(c.last[:], c.scratch)
}
