package runtime

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBatchAndRecordStores: a record's writes are visible to itself, to later records
// of the batch once applied, and stay in the base store after commit.
func TestBatchAndRecordStores(t *testing.T) {
	base := NewMapStore()
	base.Put([]byte("k"), []byte("base"))
	b := newBatchStore(base)

	r1 := &recordStore{batch: b, topic: "in"}
	r1.Put([]byte("k"), []byte("one"))
	r1.Put([]byte("n"), []byte("new"))
	if v, _ := r1.Get([]byte("k")); string(v) != "one" {
		t.Fatalf("record does not see its own write: %q", v)
	}
	// A rejected record: its ops are simply not applied.
	r2 := &recordStore{batch: b, topic: "in"}
	r2.Delete([]byte("k"))
	if _, ok := r2.Get([]byte("k")); ok {
		t.Fatal("delete not visible to its own record")
	}
	r3 := &recordStore{batch: b, topic: "in"}
	if v, _ := r3.Get([]byte("k")); string(v) != "base" {
		t.Fatalf("unapplied ops leaked into the batch: %q", v)
	}
	for _, op := range r1.ops {
		b.apply(op)
	}
	r4 := &recordStore{batch: b, topic: "in"}
	if v, _ := r4.Get([]byte("k")); string(v) != "one" {
		t.Fatalf("applied op not visible in the batch: %q", v)
	}
	r4.Delete([]byte("n"))
	for _, op := range r4.ops {
		b.apply(op)
	}
	b.commit()
	if v, _ := base.Get([]byte("k")); string(v) != "one" {
		t.Fatalf("committed change not in the base: %q", v)
	}
	if _, ok := base.Get([]byte("n")); ok {
		t.Fatal("a key put and deleted in one batch exists after commit")
	}
	// A committed batch's changes are not undone by a later batch's rollback.
	b.rollback()
	if v, _ := base.Get([]byte("k")); string(v) != "one" {
		t.Fatalf("rollback after commit undid committed changes: %q", v)
	}
}

// TestBatchRollback: an aborted batch leaves the base store exactly as before it, even
// when it changed a key several times and the store overwrites values in place (the
// dedupe store hands out views of its slots).
func TestBatchRollback(t *testing.T) {
	base := &inPlaceStore{m: map[string]*[4]byte{}}
	base.Put([]byte("a"), []byte("a000"))
	base.Put([]byte("d"), []byte("d000"))
	b := newBatchStore(base)
	apply := func(f func(r *recordStore)) {
		r := &recordStore{batch: b, topic: "in"}
		f(r)
		for _, op := range r.ops {
			b.apply(op)
		}
	}
	apply(func(r *recordStore) { r.Put([]byte("a"), []byte("a111")) })
	apply(func(r *recordStore) { r.Put([]byte("n"), []byte("n111")) })
	apply(func(r *recordStore) { r.Delete([]byte("d")) })
	apply(func(r *recordStore) { r.Put([]byte("a"), []byte("a222")); r.Delete([]byte("n")) })
	apply(func(r *recordStore) { r.Put([]byte("d"), []byte("d222")) })
	if got := base.dump(); got != "a=a222 d=d222" {
		t.Fatalf("during the batch: %s", got)
	}
	b.rollback()
	if got := base.dump(); got != "a=a000 d=d000" {
		t.Fatalf("after rollback: %s, want the state before the batch", got)
	}
	// The batch store is reusable: a new change, committed, stays.
	apply(func(r *recordStore) { r.Put([]byte("a"), []byte("a333")) })
	b.commit()
	if got := base.dump(); got != "a=a333 d=d000" {
		t.Fatalf("after the next batch: %s", got)
	}
}

// inPlaceStore is a Store of 4-byte values that overwrites a value in place on Put and
// returns views of its values from Get, as the dedupe store does.
type inPlaceStore struct{ m map[string]*[4]byte }

func (s *inPlaceStore) Get(key []byte) ([]byte, bool) {
	v, ok := s.m[string(key)]
	if !ok {
		return nil, false
	}
	return v[:], true
}

func (s *inPlaceStore) Put(key, value []byte) {
	if v, ok := s.m[string(key)]; ok {
		*v = [4]byte(value)
		return
	}
	v := [4]byte(value)
	s.m[string(key)] = &v
}

func (s *inPlaceStore) Delete(key []byte) { delete(s.m, string(key)) }

func (s *inPlaceStore) dump() string {
	keys := slices.Sorted(maps.Keys(s.m))
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+string(s.m[k][:]))
	}
	return strings.Join(parts, " ")
}

// TestChangelogRecord: changelog keys round-trip, a put (even of an empty value) is
// never a tombstone, and a delete always is.
func TestChangelogRecord(t *testing.T) {
	b := newBatchStore(NewMapStore())
	r := &recordStore{batch: b, topic: "fhir.valid.Patient"}
	r.Put([]byte("Patient/1\x00x"), []byte("v"))
	r.Put([]byte("empty"), nil)
	r.Delete([]byte("gone"))
	var got []*kgo.Record
	ts := time.Unix(1700000000, 0)
	for _, op := range r.ops {
		b.apply(op)
		got = append(got, b.changelogRecord("fhir.state.x", 2, op, ts))
	}
	topic, key, ok := splitChangelogKey(got[0].Key)
	if !ok || topic != "fhir.valid.Patient" || string(key) != "Patient/1\x00x" || string(got[0].Value) != "v" {
		t.Fatalf("round trip: %q %q %v, value %q", topic, key, ok, got[0].Value)
	}
	if got[0].Topic != "fhir.state.x" || got[0].Partition != 2 {
		t.Fatalf("changelog record to %s/%d", got[0].Topic, got[0].Partition)
	}
	if !got[0].Timestamp.Equal(ts) || len(got[0].Headers) != 0 {
		t.Fatalf("changelog record timestamp %v, headers %v", got[0].Timestamp, got[0].Headers)
	}
	if got[1].Value == nil {
		t.Fatal("a put of an empty value became a tombstone")
	}
	if got[2].Value != nil {
		t.Fatalf("a delete carries a value: %q", got[2].Value)
	}
	if _, _, ok := splitChangelogKey([]byte("no-separator")); ok {
		t.Fatal("accepted a key without a topic")
	}
}
