package lakeops_test

import (
	"context"
	"os"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/internal/lakeops"
	"github.com/fhirstream/fhirstream/internal/testlake"
)

// TestCompactStreamsManyRows compacts a table of more rows than compaction holds at
// once (69,000 rows in three files, against batches of 4,096 rows and row groups of at
// most 65,536), with an upsert's equality deletes spread over all three files: the
// compacted file must have more than one row group, and every independent reader must
// read exactly the rows the table held.
func TestCompactStreamsManyRows(t *testing.T) {
	if testing.Short() {
		t.Skip("69,000 rows read by every reader")
	}
	ctx := context.Background()
	rs := readers(t)
	dir := t.TempDir()
	cat, spec, err := testlake.OpenSQLCatalog(ctx, "fhirstream", dir)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := testlake.CreatePersonTable(ctx, cat, "omop", "many", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := model{}
	for f := range int64(3) {
		ps := testlake.People(f*23000+1, f*23000+23000, 1)
		if tbl, err = testlake.AppendPeople(ctx, tbl, ps, nil); err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			want[p.ID] = p
		}
	}
	// New versions of rows in every file, in batches other than the first, and
	// deletions of others.
	ups := []testlake.Person{testlake.PersonAt(5000, 2), testlake.PersonAt(31000, 2), testlake.PersonAt(68999, 2)}
	dels := []int64{4097, 46000, 69000}
	if tbl, err = testlake.UpsertPeople(ctx, tbl, ups, dels, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range ups {
		want[p.ID] = p
	}
	for _, id := range dels {
		delete(want, id)
	}
	lt := lakeTable{tbl.Identifier(), want}

	before := map[string]bool{}
	for _, p := range parquetFiles(t, dir) {
		before[p] = true
	}
	res, err := lakeops.Compact(ctx, cat, lt.id, lakeops.CompactOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.DataFilesAfter != 1 || res.DeleteFilesAfter != 0 {
		t.Fatalf("data files %d -> %d, delete files %d -> %d: want one data file and no delete file",
			res.DataFilesBefore, res.DataFilesAfter, res.DeleteFilesBefore, res.DeleteFilesAfter)
	}
	var written []string
	for _, p := range parquetFiles(t, dir) {
		if !before[p] {
			written = append(written, p)
		}
	}
	if len(written) != 1 {
		t.Fatalf("compaction wrote %d files, want 1: %v", len(written), written)
	}
	osf, err := os.Open(written[0])
	if err != nil {
		t.Fatal(err)
	}
	defer osf.Close()
	st, err := osf.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(osf, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.RowGroups()); n < 2 || f.NumRows() != int64(len(want)) {
		t.Errorf("compacted file: %d row groups of %d rows in all, want at least 2 of %d", n, f.NumRows(), len(want))
	}
	checkRows(t, rs, spec, []lakeTable{lt}, false)
}
