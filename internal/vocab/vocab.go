package vocab

import (
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// none marks "no concept" in the index slices.
const none = ^uint32(0)

// Concept is one row of CONCEPT.csv, as much of it as mapping needs. The zero Concept
// (ID 0) is OMOP's "No matching concept".
type Concept struct {
	ID           int32
	Code         string // concept_code
	VocabularyID string
	DomainID     string // e.g. "Measurement", "Observation", "Condition"
	// Standard is true for standard concepts (standard_concept 'S'), the only ones the
	// CDM's *_concept_id columns may hold.
	Standard bool
}

// Match is the result of looking up a source code.
type Match struct {
	// Source is the concept of the code itself in its own vocabulary (the
	// *_source_concept_id); ID 0 when only SOURCE_TO_CONCEPT_MAP knew the code.
	Source Concept
	// Standard is the standard concept the code maps to ('Maps to'), or Source itself
	// when that is standard; ID 0 when there is none.
	Standard Concept
	// Value is the 'Maps to value' target, for codes that pre-coordinate a question and
	// its answer ("History of X" maps to "History of clinical finding" with value X).
	Value Concept
}

// Vocabulary is an immutable set of concepts with their 'Maps to' and 'Maps to value'
// relationships, looked up by (vocabulary_id, concept_code) or by concept_id.
//
// Concepts live in parallel slices indexed by a 32-bit position; codes share one byte
// arena; two open-addressing tables (slot = position+1, 0 = empty) index codes and ids.
// This keeps the per-concept cost near 40 bytes plus the code itself.
type Vocabulary struct {
	vocabs  []string // vocabulary_id names; a concept's vocab is an index into this
	domains []string // domain_id names
	vocabIx map[string]uint16
	domIx   map[string]uint16

	id      []int32
	vocab   []uint16
	domain  []uint16
	std     []bool
	codeOff []uint32
	codeLen []uint16
	arena   []byte

	mapsTo      []uint32 // 'Maps to' target position, or none
	mapsToValue []uint32 // 'Maps to value' target position, or none

	codeTab []uint32
	idTab   []uint32

	// stcm holds SOURCE_TO_CONCEPT_MAP rows: local codes mapped by the site, keyed by
	// source_vocabulary_id + "\x00" + source_code. Such files are small.
	stcm map[string]stcmRow
}

type stcmRow struct {
	source, target int32
}

func newVocabulary() *Vocabulary {
	return &Vocabulary{vocabIx: map[string]uint16{}, domIx: map[string]uint16{}, stcm: map[string]stcmRow{}}
}

// Len is the number of concepts.
func (v *Vocabulary) Len() int {
	if v == nil {
		return 0
	}
	return len(v.id)
}

// Relationships is the number of 'Maps to' and 'Maps to value' relationships kept.
func (v *Vocabulary) Relationships() (mapsTo, mapsToValue int) {
	if v == nil {
		return 0, 0
	}
	for i := range v.mapsTo {
		if v.mapsTo[i] != none {
			mapsTo++
		}
		if v.mapsToValue[i] != none {
			mapsToValue++
		}
	}
	return mapsTo, mapsToValue
}

// MemoryBytes estimates the heap the vocabulary holds, for logs and the load benchmark.
func (v *Vocabulary) MemoryBytes() int64 {
	if v == nil {
		return 0
	}
	n := int64(cap(v.id))*4 + int64(cap(v.vocab))*2 + int64(cap(v.domain))*2 + int64(cap(v.std)) +
		int64(cap(v.codeOff))*4 + int64(cap(v.codeLen))*2 + int64(cap(v.arena)) +
		int64(cap(v.mapsTo))*4 + int64(cap(v.mapsToValue))*4 + int64(cap(v.codeTab))*4 + int64(cap(v.idTab))*4
	return n + int64(len(v.stcm))*64
}

// concept returns concept i. Its Code is a view of the arena, not a copy: the arena does
// not change once the vocabulary is loaded, and the mapper looks up several codes per
// record, whose copies were most of its allocations.
func (v *Vocabulary) concept(i uint32) Concept {
	off := v.codeOff[i]
	return Concept{
		ID:           v.id[i],
		Code:         unsafe.String(unsafe.SliceData(v.arena[off:]), int(v.codeLen[i])),
		VocabularyID: v.vocabs[v.vocab[i]],
		DomainID:     v.domains[v.domain[i]],
		Standard:     v.std[i],
	}
}

// Concept returns the concept with the given concept_id.
func (v *Vocabulary) Concept(id int32) (Concept, bool) {
	i := v.findID(id)
	if i == none {
		return Concept{}, false
	}
	return v.concept(i), true
}

// Lookup maps a code of an OMOP vocabulary to its source concept, standard concept and
// value concept. ok is false when neither CONCEPT.csv nor SOURCE_TO_CONCEPT_MAP knows the
// code. A found code may still have no standard concept (Match.Standard.ID == 0): a
// non-standard concept without a valid 'Maps to'.
func (v *Vocabulary) Lookup(vocabularyID, code string) (m Match, ok bool) {
	if v == nil || code == "" {
		return Match{}, false
	}
	if vi, known := v.vocabIx[vocabularyID]; known && len(v.codeTab) > 0 {
		if i := v.findCode(vi, code); i != none {
			m.Source = v.concept(i)
			switch {
			case v.mapsTo[i] != none:
				m.Standard = v.concept(v.mapsTo[i])
			case v.std[i]:
				m.Standard = m.Source
			}
			if j := v.mapsToValue[i]; j != none {
				m.Value = v.concept(j)
			}
			return m, true
		}
	}
	if len(v.stcm) > 0 {
		if r, found := v.stcm[vocabularyID+"\x00"+code]; found {
			if r.source != 0 {
				m.Source, _ = v.Concept(r.source)
			}
			if r.target != 0 {
				if c, found := v.Concept(r.target); found {
					m.Standard = c
				} else {
					// The site mapped to a concept outside the loaded files; keep the id.
					m.Standard = Concept{ID: r.target}
				}
			}
			return m, true
		}
	}
	return Match{}, false
}

func codeHash(vocab uint16, code []byte) uint64 {
	return xxhash.Sum64(code) ^ (uint64(vocab)+1)*0x9E3779B97F4A7C15
}

func codeHashString(vocab uint16, code string) uint64 {
	return xxhash.Sum64String(code) ^ (uint64(vocab)+1)*0x9E3779B97F4A7C15
}

func idHash(id int32) uint64 {
	// A multiplicative hash spreads the dense, sequential concept ids over the table.
	return uint64(uint32(id)) * 0x9E3779B97F4A7C15
}

func (v *Vocabulary) findCode(vocab uint16, code string) uint32 {
	mask := uint64(len(v.codeTab) - 1)
	for s := codeHashString(vocab, code) & mask; ; s = (s + 1) & mask {
		slot := v.codeTab[s]
		if slot == 0 {
			return none
		}
		i := slot - 1
		if v.vocab[i] == vocab && int(v.codeLen[i]) == len(code) {
			off := v.codeOff[i]
			if string(v.arena[off:off+uint32(v.codeLen[i])]) == code {
				return i
			}
		}
	}
}

func (v *Vocabulary) findID(id int32) uint32 {
	if v == nil || len(v.idTab) == 0 {
		return none
	}
	mask := uint64(len(v.idTab) - 1)
	for s := (idHash(id) >> 32) & mask; ; s = (s + 1) & mask {
		slot := v.idTab[s]
		if slot == 0 {
			return none
		}
		if v.id[slot-1] == id {
			return slot - 1
		}
	}
}

// tableSize is the power of two at least twice n, so probes stay short (load factor ≤ ½).
func tableSize(n int) int {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	return size
}

// buildIndexes fills the code and id tables after all concepts are read. A duplicate
// concept_id or (vocabulary, code) keeps the first row, as a database unique index would
// reject the later one.
func (v *Vocabulary) buildIndexes() (dupIDs, dupCodes int) {
	n := len(v.id)
	v.codeTab = make([]uint32, tableSize(n))
	v.idTab = make([]uint32, tableSize(n))
	cmask := uint64(len(v.codeTab) - 1)
	imask := uint64(len(v.idTab) - 1)
	for i := 0; i < n; i++ {
		off := v.codeOff[i]
		code := v.arena[off : off+uint32(v.codeLen[i])]
		s := codeHash(v.vocab[i], code) & cmask
		for {
			slot := v.codeTab[s]
			if slot == 0 {
				v.codeTab[s] = uint32(i) + 1
				break
			}
			j := slot - 1
			if v.vocab[j] == v.vocab[i] && v.codeLen[j] == v.codeLen[i] &&
				string(v.arena[v.codeOff[j]:v.codeOff[j]+uint32(v.codeLen[j])]) == string(code) {
				dupCodes++
				break
			}
			s = (s + 1) & cmask
		}
		s = (idHash(v.id[i]) >> 32) & imask
		for {
			slot := v.idTab[s]
			if slot == 0 {
				v.idTab[s] = uint32(i) + 1
				break
			}
			if v.id[slot-1] == v.id[i] {
				dupIDs++
				break
			}
			s = (s + 1) & imask
		}
	}
	v.mapsTo = make([]uint32, n)
	v.mapsToValue = make([]uint32, n)
	for i := range v.mapsTo {
		v.mapsTo[i] = none
		v.mapsToValue[i] = none
	}
	return dupIDs, dupCodes
}

// intern returns the index of name in names, adding it when new.
func intern(ix map[string]uint16, names *[]string, name []byte) (uint16, bool) {
	if i, ok := ix[string(name)]; ok { // no allocation: the compiler recognises this form
		return i, true
	}
	if len(*names) >= 1<<16-1 {
		return 0, false
	}
	s := string(name)
	i := uint16(len(*names))
	*names = append(*names, s)
	ix[s] = i
	return i, true
}
