package lakeops_test

import (
	"context"
	"testing"

	"github.com/fhirstream/fhirstream/internal/lakeops"
	"github.com/fhirstream/fhirstream/internal/testlake"
)

// TestCompactRetriesWhenASinkCommitsMeanwhile makes a "sink" commit an upsert
// (equality deletes on rows being rewritten) between the compaction's rewrite
// and its commit: the commit must conflict, and the retry must keep the sink's
// upsert and fold it in, as the independent readers see.
func TestCompactRetriesWhenASinkCommitsMeanwhile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cat, spec, err := testlake.OpenSQLCatalog(ctx, "fhirstream", dir)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := testlake.CreatePersonTable(ctx, cat, "omop", "person", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(6) {
		if tbl, err = testlake.AppendPeople(ctx, tbl, testlake.People(i*5+1, i*5+5, 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	// The sink: its own catalog handle, as another process would have.
	sink, _, err := testlake.OpenSQLCatalog(ctx, "fhirstream", dir)
	if err != nil {
		t.Fatal(err)
	}
	var attempts []int
	res, err := lakeops.Compact(ctx, cat, tbl.Identifier(), lakeops.WithBeforeCommit(lakeops.CompactOptions{}, func(attempt int) {
		attempts = append(attempts, attempt)
		if attempt != 1 {
			return
		}
		st, err := sink.LoadTable(ctx, tbl.Identifier())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testlake.UpsertPeople(ctx, st, []testlake.Person{testlake.PersonAt(7, 2)}, []int64{8}, nil); err != nil {
			t.Fatal(err)
		}
	}))
	if err != nil {
		t.Fatalf("compact: %v (attempts %v)", err, attempts)
	}
	if len(attempts) != 2 {
		t.Fatalf("attempts %v: want the first to conflict and the second to commit", attempts)
	}
	if res.DataFilesAfter != 1 || res.DeleteFilesAfter != 0 {
		t.Errorf("after the retry: %d data files, %d delete files; want 1 and 0", res.DataFilesAfter, res.DeleteFilesAfter)
	}
	want := map[int64]testlake.Person{}
	for _, p := range testlake.People(1, 30, 1) {
		want[p.ID] = p
	}
	want[7] = testlake.PersonAt(7, 2)
	delete(want, 8)
	var rows []testlake.Row
	for _, p := range want {
		rows = append(rows, p.Row())
	}
	for _, r := range readers(t) {
		got, err := r.Read(spec, "omop", "person")
		if err != nil {
			t.Fatal(err)
		}
		if d := testlake.Diff(rows, got.Rows, 5); d != "" {
			t.Errorf("%s: %s", r.Engine, d)
		}
	}
}
