package runtime

import (
	"bytes"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/arena"
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

// stateOp is one state change: a put, or a delete when del is set. clKey is its
// changelog key, "<input topic>\x00<store key>", and key the store key within it, so
// the key is copied once and serves both the store and the changelog record.
type stateOp struct {
	clKey, key, value []byte
	del               bool
}

// undoOp restores one key to what it was before a change of the batch: prev, or absent
// when had is false.
type undoOp struct {
	key, prev []byte
	had       bool
}

// batchStore is a partition's store as seen during one transaction. Changes are applied
// to the base store as the batch makes them, so later records of the batch read them at
// the cost of a plain store lookup, and each is logged with the value it replaced: if
// the transaction aborts, rollback undoes them newest first and the base is as the last
// committed transaction left it, which is what the changelog holds. (Buffering the
// changes in a map until commit instead cost a map insert per change and a second pass
// at commit, a quarter of dedupe's own cost.)
type batchStore struct {
	base stage.Store
	undo []undoOp
	// arena holds the batch's copies of state keys and values, replaced values and
	// changelog keys: a few allocations per batch instead of several per state change.
	arena     arena.Bytes
	changelog []kgo.Record
}

// changelogRecord returns the changelog record that sends op's change, from a slab of
// the batch's records. It has no headers and the batch's time as timestamp: franz-go
// would otherwise read the clock for each record.
func (b *batchStore) changelogRecord(topic string, partition int32, op stateOp, ts time.Time) *kgo.Record {
	if len(b.changelog) == cap(b.changelog) {
		b.changelog = make([]kgo.Record, 0, 256)
	}
	b.changelog = append(b.changelog, kgo.Record{Topic: topic, Partition: partition, Key: op.clKey, Timestamp: ts})
	cl := &b.changelog[len(b.changelog)-1]
	if !op.del {
		cl.Value = op.value
	}
	return cl
}

func newBatchStore(base stage.Store) *batchStore {
	return &batchStore{base: base}
}

// reserve makes room in the undo log for n changes, the records of the partition's
// batch: appending to it one by one re-copied it a dozen times per batch.
func (b *batchStore) reserve(n int) {
	if cap(b.undo)-len(b.undo) < n {
		b.undo = append(make([]undoOp, 0, len(b.undo)+n), b.undo...)
	}
}

func (b *batchStore) get(key []byte) ([]byte, bool) { return b.base.Get(key) }

// apply makes op's change to the base store, logging what it replaces. op's key and
// value are in b's arena (recordStore put them there).
func (b *batchStore) apply(op stateOp) {
	prev, had := b.base.Get(op.key)
	// The base may reuse prev's memory for the new value: keep a copy.
	b.undo = append(b.undo, undoOp{key: op.key, prev: b.arena.Copy(prev), had: had})
	if op.del {
		b.base.Delete(op.key)
	} else {
		b.base.Put(op.key, op.value)
	}
}

// commit keeps the batch's changes: its transaction committed.
func (b *batchStore) commit() {
	clear(b.undo)
	b.undo = b.undo[:0]
}

// rollback undoes the batch's changes, newest first: its transaction aborted.
func (b *batchStore) rollback() {
	for i := len(b.undo) - 1; i >= 0; i-- {
		u := b.undo[i]
		if u.had {
			b.base.Put(u.key, u.prev)
		} else {
			b.base.Delete(u.key)
		}
	}
	b.commit()
}

// recordStore is the Store handed to Process for one input: it records the changes of
// that input, so a rejected or retried input leaves no trace in state. topic is the
// input topic, the first part of changelog keys.
type recordStore struct {
	batch *batchStore
	topic string
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

// op returns a stateOp for key with its changelog key in the batch's arena.
func (r *recordStore) op(key []byte) stateOp {
	// The changelog key is "<input topic>\x00<store key>": partitions of several input
	// topics share a changelog partition.
	cl := r.batch.arena.Alloc(len(r.topic) + 1 + len(key))
	n := copy(cl, r.topic)
	cl[n] = 0
	copy(cl[n+1:], key)
	return stateOp{clKey: cl, key: cl[n+1:]}
}

func (r *recordStore) Put(key, value []byte) {
	if value == nil {
		// A put, even of nothing, must not reach the changelog as a tombstone (a nil
		// value), which a restore would take for a delete.
		value = []byte{}
	}
	op := r.op(key)
	op.value = r.batch.arena.Copy(value)
	r.ops = append(r.ops, op)
}

func (r *recordStore) Delete(key []byte) {
	op := r.op(key)
	op.del = true
	r.ops = append(r.ops, op)
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
