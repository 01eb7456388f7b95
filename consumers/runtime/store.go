package runtime

import (
	"bytes"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

// MapStore is the general in-memory Store: a Go map from key to value, both copied.
// Memory per entry is the key and value bytes plus roughly 80 bytes of map and slice
// overhead; stages with many keys supply a compact store instead (Definition.NewStore).
type MapStore struct{ m map[string][]byte }

// NewMapStore returns an empty MapStore.
func NewMapStore() stage.Store { return &MapStore{m: map[string][]byte{}} }

// Get returns the value of key.
func (s *MapStore) Get(key []byte) ([]byte, bool) {
	v, ok := s.m[string(key)]
	return v, ok
}

// Put sets key to a copy of value.
func (s *MapStore) Put(key, value []byte) { s.m[string(key)] = bytes.Clone(value) }

// Delete removes key.
func (s *MapStore) Delete(key []byte) { delete(s.m, string(key)) }

// Len is the number of entries.
func (s *MapStore) Len() int { return len(s.m) }

// stateOp is one state change: a put, or a delete when value is nil.
type stateOp struct {
	key, value []byte
	del        bool
}

// batchStore is a partition's store as seen during one transaction: reads fall through
// the batch's pending changes to the committed base; writes are buffered and applied to
// the base only when the transaction commits.
type batchStore struct {
	base    stage.Store
	pending map[string]stateOp
	order   []string // keys in first-write order, so commits apply deterministically
	// arena holds the batch's copies of state keys and values and its changelog keys and
	// records: a few allocations per batch instead of several per state change.
	arena     arena
	changelog []kgo.Record
}

// arena hands out copies of byte slices from large chunks. Nothing written to it
// changes afterwards, and a chunk is never reused: the copies live as long as anything
// (the batch store, a changelog record in the producer) refers to them.
type arena struct{ buf []byte }

const arenaChunk = 64 << 10

// alloc returns n bytes of the arena, with a capacity of exactly n.
func (a *arena) alloc(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(arenaChunk, n))
	}
	start := len(a.buf)
	a.buf = a.buf[:start+n]
	return a.buf[start : start+n : start+n]
}

// copy returns a copy of b in the arena: nil for nil and empty for empty, as bytes.Clone.
func (a *arena) copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) == 0 {
		return []byte{}
	}
	dst := a.alloc(len(b))
	copy(dst, b)
	return dst
}

// changelogRecord returns a changelog record to send op's change in, from a slab of the
// batch's records.
func (b *batchStore) changelogRecord(topic string, partition int32, inputTopic string, op stateOp) *kgo.Record {
	if len(b.changelog) == cap(b.changelog) {
		b.changelog = make([]kgo.Record, 0, 256)
	}
	b.changelog = append(b.changelog, kgo.Record{Topic: topic, Partition: partition})
	cl := &b.changelog[len(b.changelog)-1]
	// The key is "<input topic>\x00<store key>": partitions of several input topics
	// share a changelog partition.
	cl.Key = b.arena.alloc(len(inputTopic) + 1 + len(op.key))
	copy(cl.Key[copy(cl.Key, inputTopic)+1:], op.key)
	cl.Key[len(inputTopic)] = 0
	if !op.del {
		cl.Value = op.value
	}
	return cl
}

func newBatchStore(base stage.Store) *batchStore {
	return &batchStore{base: base, pending: map[string]stateOp{}}
}

func (b *batchStore) get(key []byte) ([]byte, bool) {
	if op, ok := b.pending[string(key)]; ok {
		return op.value, !op.del
	}
	return b.base.Get(key)
}

// apply records op, whose key and value are in b's arena (recordStore put them there).
func (b *batchStore) apply(op stateOp) {
	// A view, not a copy: arena bytes never change.
	k := unsafe.String(unsafe.SliceData(op.key), len(op.key))
	if _, seen := b.pending[k]; !seen {
		b.order = append(b.order, k)
	}
	b.pending[k] = op
}

// commit applies the buffered changes to the base store.
func (b *batchStore) commit() {
	for _, k := range b.order {
		op := b.pending[k]
		if op.del {
			b.base.Delete(op.key)
		} else {
			b.base.Put(op.key, op.value)
		}
	}
	clear(b.pending)
	b.order = b.order[:0]
}

// recordStore is the Store handed to Process for one input: it records the changes of
// that input, so a rejected or retried input leaves no trace in state.
type recordStore struct {
	batch *batchStore
	ops   []stateOp
}

func (r *recordStore) Get(key []byte) ([]byte, bool) {
	for i := len(r.ops) - 1; i >= 0; i-- {
		if bytes.Equal(r.ops[i].key, key) {
			return r.ops[i].value, !r.ops[i].del
		}
	}
	return r.batch.get(key)
}

func (r *recordStore) Put(key, value []byte) {
	if value == nil {
		// A put, even of nothing, must not reach the changelog as a tombstone (a nil
		// value), which a restore would take for a delete.
		value = []byte{}
	}
	r.ops = append(r.ops, stateOp{key: r.batch.arena.copy(key), value: r.batch.arena.copy(value)})
}

func (r *recordStore) Delete(key []byte) {
	r.ops = append(r.ops, stateOp{key: r.batch.arena.copy(key), del: true})
}

// noStore is the Store of a stateless stage: empty, and writing to it is a stage bug
// reported as a rejection rather than silently lost.
type noStore struct{ wrote bool }

func (n *noStore) Get([]byte) ([]byte, bool) { return nil, false }
func (n *noStore) Put(_, _ []byte)           { n.wrote = true }
func (n *noStore) Delete([]byte)             { n.wrote = true }

// splitChangelogKey returns the input topic and store key of a changelog key.
func splitChangelogKey(k []byte) (topic string, key []byte, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 {
		return "", nil, false
	}
	return string(k[:i]), k[i+1:], true
}
