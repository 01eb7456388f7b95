package runtime

import "testing"

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

func TestChangelogKey(t *testing.T) {
	topic, key, ok := splitChangelogKey(changelogKey("fhir.valid.Patient", []byte("Patient/1\x00x")))
	if !ok || topic != "fhir.valid.Patient" || string(key) != "Patient/1\x00x" {
		t.Fatalf("round trip: %q %q %v", topic, key, ok)
	}
	if _, _, ok := splitChangelogKey([]byte("no-separator")); ok {
		t.Fatal("accepted a key without a topic")
	}
}
