package dedupe

import (
	"encoding/binary"
	"math/bits"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

// Store is dedupe's compact partition store: 12-byte keys (StoreKey) to 20-byte values
// (State.Encode) in one flat open-addressing table of 32-byte slots with linear probing.
// It grows by 1.25× when 80% full, so it is always between 64% and 80% full: 40-50
// bytes per key, with no per-entry heap objects (a Go map of the same arrays needs 38-75
// bytes, depending on where it is between two doublings).
//
// Entries of another shape (which dedupe never writes) are ignored on Put, so a corrupt
// changelog record costs at most one extra forward, never a crash. The all-zero key
// marks an empty slot; a record key hashing to it (odds 2^-96) is stored as key 0…01.
type Store struct {
	tab []slot
	n   int
}

type slot struct {
	k [KeySize]byte
	v [StateSize]byte
}

const (
	minSlots = 64
	maxLoad  = 0.8
	growBy   = 1.25
)

// NewStore returns an empty Store.
func NewStore() stage.Store { return &Store{tab: make([]slot, minSlots)} }

func toKey(b []byte) ([KeySize]byte, bool) {
	if len(b) != KeySize {
		return [KeySize]byte{}, false
	}
	k := [KeySize]byte(b)
	if k == ([KeySize]byte{}) {
		k[KeySize-1] = 1
	}
	return k, true
}

// home is the first slot probed for k: the key is already a hash, so its first eight
// bytes map uniformly onto the table (Lemire's multiply-shift range reduction).
func (s *Store) home(k *[KeySize]byte) int {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(k[:8]), uint64(len(s.tab)))
	return int(hi)
}

func (s *Store) find(k *[KeySize]byte) (int, bool) {
	i := s.home(k)
	for {
		e := &s.tab[i]
		if e.k == *k {
			return i, true
		}
		if e.k == ([KeySize]byte{}) {
			return i, false
		}
		if i++; i == len(s.tab) {
			i = 0
		}
	}
}

// Get returns the value of key.
func (s *Store) Get(key []byte) ([]byte, bool) {
	k, ok := toKey(key)
	if !ok {
		return nil, false
	}
	i, found := s.find(&k)
	if !found {
		return nil, false
	}
	return s.tab[i].v[:], true
}

// Put sets key to value when both have dedupe's shape.
func (s *Store) Put(key, value []byte) {
	k, ok := toKey(key)
	if !ok || len(value) != StateSize {
		return
	}
	i, found := s.find(&k)
	if found {
		s.tab[i].v = [StateSize]byte(value)
		return
	}
	if float64(s.n+1) > maxLoad*float64(len(s.tab)) {
		s.grow()
		i, _ = s.find(&k)
	}
	s.tab[i] = slot{k: k, v: [StateSize]byte(value)}
	s.n++
}

func (s *Store) grow() {
	old := s.tab
	s.tab = make([]slot, int(float64(len(old))*growBy)+1)
	for i := range old {
		if old[i].k != ([KeySize]byte{}) {
			j, _ := s.find(&old[i].k)
			s.tab[j] = old[i]
		}
	}
}

// Delete removes key, shifting later entries of its probe run back so that lookups
// never stop early at the hole (no tombstones needed).
func (s *Store) Delete(key []byte) {
	k, ok := toKey(key)
	if !ok {
		return
	}
	i, found := s.find(&k)
	if !found {
		return
	}
	j := i
	for {
		if j++; j == len(s.tab) {
			j = 0
		}
		e := &s.tab[j]
		if e.k == ([KeySize]byte{}) {
			break
		}
		h := s.home(&e.k)
		// The entry at j may fill the hole at i unless its home lies cyclically in (i, j].
		if (i <= j && i < h && h <= j) || (i > j && (h > i || h <= j)) {
			continue
		}
		s.tab[i] = *e
		i = j
	}
	s.tab[i] = slot{}
	s.n--
}

// Len is the number of keys.
func (s *Store) Len() int { return s.n }
