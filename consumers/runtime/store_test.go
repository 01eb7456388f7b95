package runtime

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBatchAndRecordStores: a record's writes are visible to itself, to later records
// of the batch once applied, and to the base store only after commit.
func TestBatchAndRecordStores(t *testing.T) {
	base := NewMapStore()
	base.Put([]byte("k"), []byte("base"))
	b := newBatchStore(base)

	r1 := &recordStore{batch: b}
	r1.Put([]byte("k"), []byte("one"))
	r1.Put([]byte("n"), []byte("new"))
	if v, _ := r1.Get([]byte("k")); string(v) != "one" {
		t.Fatalf("record does not see its own write: %q", v)
	}
	// A rejected record: its ops are simply not applied.
	r2 := &recordStore{batch: b}
	r2.Delete([]byte("k"))
	if _, ok := r2.Get([]byte("k")); ok {
		t.Fatal("delete not visible to its own record")
	}
	r3 := &recordStore{batch: b}
	if v, _ := r3.Get([]byte("k")); string(v) != "base" {
		t.Fatalf("unapplied ops leaked into the batch: %q", v)
	}
	for _, op := range r1.ops {
		b.apply(op)
	}
	r4 := &recordStore{batch: b}
	if v, _ := r4.Get([]byte("k")); string(v) != "one" {
		t.Fatalf("applied op not visible in the batch: %q", v)
	}
	if v, _ := base.Get([]byte("k")); string(v) != "base" {
		t.Fatalf("base changed before commit: %q", v)
	}
	r4.Delete([]byte("n"))
	for _, op := range r4.ops {
		b.apply(op)
	}
	b.commit()
	if v, _ := base.Get([]byte("k")); string(v) != "one" {
		t.Fatalf("commit did not reach the base: %q", v)
	}
	if _, ok := base.Get([]byte("n")); ok {
		t.Fatal("a key put and deleted in one batch exists after commit")
	}
}

// TestChangelogRecord: changelog keys round-trip, a put (even of an empty value) is
// never a tombstone, and a delete always is.
func TestChangelogRecord(t *testing.T) {
	b := newBatchStore(NewMapStore())
	r := &recordStore{batch: b}
	r.Put([]byte("Patient/1\x00x"), []byte("v"))
	r.Put([]byte("empty"), nil)
	r.Delete([]byte("gone"))
	var got []*kgo.Record
	for _, op := range r.ops {
		b.apply(op)
		got = append(got, b.changelogRecord("fhir.state.x", 2, "fhir.valid.Patient", op))
	}
	topic, key, ok := splitChangelogKey(got[0].Key)
	if !ok || topic != "fhir.valid.Patient" || string(key) != "Patient/1\x00x" || string(got[0].Value) != "v" {
		t.Fatalf("round trip: %q %q %v, value %q", topic, key, ok, got[0].Value)
	}
	if got[0].Topic != "fhir.state.x" || got[0].Partition != 2 {
		t.Fatalf("changelog record to %s/%d", got[0].Topic, got[0].Partition)
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
