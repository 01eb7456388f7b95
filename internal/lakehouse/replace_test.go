package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
)

// personRows yields person rows with ids from..to, reusing one row as a streaming
// source does.
func personRows(t *testing.T, l *Layout, from, to int64, failAt int64) iter.Seq2[parquet.Row, error] {
	return func(yield func(parquet.Row, error) bool) {
		for id := from; id <= to; id++ {
			if id == failAt {
				yield(nil, errors.New("the source broke"))
				return
			}
			if !yield(personRow(t, l, id, fmt.Sprintf("Patient/%d", id), time.Unix(id*86400, 0).UTC()), nil) {
				return
			}
		}
	}
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestReplaceContents: rows stream into several files; each replacement is one snapshot
// holding exactly the new rows (iceberg-go's scan reads them), carrying its summary;
// the old content stays readable by time travel; an empty replacement is a snapshot with
// no rows; a table with equality deletes is replaced without any delete file left.
func TestReplaceContents(t *testing.T) {
	ctx := context.Background()
	lake, err := Open(ctx, Config{Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	l, err := OMOPLayout("person")
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := lake.EnsureTable(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	fsys, _ := tbl.FS(ctx)
	wfs := fsys.(iceio.WriteFileIO)
	loc, _ := tbl.LocationProvider()
	n := 0
	newPath := func() string { n++; return loc.NewDataLocation(fmt.Sprintf("replace-%d.parquet", n)) }

	// A table the sink way: rows, then an equality delete of one of them.
	first, err := l.WriteData(wfs, newPath(), []parquet.Row{personRow(t, l, 1, "Patient/1", time.Unix(0, 0)), personRow(t, l, 2, "Patient/2", time.Unix(0, 0))}, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	del, err := l.WriteEqualityDeletes(wfs, newPath(), []string{"Patient/1"}, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tx := tbl.NewTransaction()
	if err := tx.AddDataFiles(ctx, []iceberg.DataFile{first}, nil); err != nil {
		t.Fatal(err)
	}
	rd := tx.NewRowDelta(nil)
	rd.AddDeletes(del)
	if err := rd.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if tbl, err = tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := scanIDs(t, tbl); !slices.Equal(got, []int64{2}) {
		t.Fatalf("before: %v", got)
	}

	files, err := l.WriteDataFiles(wfs, newPath, personRows(t, l, 10, 34, 0), FileOptions{RowGroupRows: 4}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Errorf("25 rows at 10 per file: %d files", len(files))
	}
	snap, err := lake.ReplaceContents(ctx, l, files, iceberg.Properties{"fhirstream.test": "one"})
	if err != nil {
		t.Fatal(err)
	}
	if tbl, err = lake.LoadTable(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got := scanIDs(t, tbl); !slices.Equal(got, seq(10, 34)) {
		t.Errorf("after the first replacement: %v", got)
	}
	data, deletes, err := LiveFiles(ctx, tbl)
	if err != nil || len(data) != 3 || len(deletes) != 0 {
		t.Errorf("live files: %d data, %d delete (%v), want 3 and 0", len(data), len(deletes), err)
	}
	if snap.Summary.Properties["fhirstream.test"] != "one" || snap.Summary.Operation != table.OpOverwrite {
		t.Errorf("snapshot summary %+v", snap.Summary)
	}

	files, err = l.WriteDataFiles(wfs, newPath, personRows(t, l, 100, 104, 0), FileOptions{}, 0)
	if err != nil || len(files) != 1 {
		t.Fatalf("%d files, %v", len(files), err)
	}
	if _, err := lake.ReplaceContents(ctx, l, files, iceberg.Properties{"fhirstream.test": "two"}); err != nil {
		t.Fatal(err)
	}
	tbl, _ = lake.LoadTable(ctx, l)
	if got := scanIDs(t, tbl); !slices.Equal(got, seq(100, 104)) {
		t.Errorf("after the second replacement: %v", got)
	}
	if got := scanIDs(t, tbl, table.WithSnapshotID(snap.SnapshotID)); !slices.Equal(got, seq(10, 34)) {
		t.Errorf("time travel to the first replacement: %v", got)
	}

	empty, err := lake.ReplaceContents(ctx, l, nil, iceberg.Properties{"fhirstream.test": "empty"})
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ = lake.LoadTable(ctx, l)
	if got := scanIDs(t, tbl); len(got) != 0 || tbl.CurrentSnapshot().SnapshotID != empty.SnapshotID {
		t.Errorf("after an empty replacement: %v", got)
	}
	// A new table replaced while empty gets its snapshot too.
	other, _ := NewLayout("gold_test", "t", l.Columns, nil, "")
	s, err := lake.ReplaceContents(ctx, other, nil, iceberg.Properties{"fhirstream.test": "new"})
	if err != nil || s == nil || s.Summary.Properties["fhirstream.test"] != "new" {
		t.Errorf("empty new table: %v, %v", s, err)
	}
}

// TestWriteDataFilesSourceError: a source failing mid-stream fails the write, and the
// files already written are removed.
func TestWriteDataFilesSourceError(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lake, err := Open(ctx, Config{Out: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	l, _ := OMOPLayout("person")
	tbl, err := lake.EnsureTable(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	fsys, _ := tbl.FS(ctx)
	loc, _ := tbl.LocationProvider()
	var paths []string
	newPath := func() string {
		p := loc.NewDataLocation(fmt.Sprintf("f-%d.parquet", len(paths)))
		paths = append(paths, p)
		return p
	}
	_, err = l.WriteDataFiles(fsys.(iceio.WriteFileIO), newPath, personRows(t, l, 1, 100, 25), FileOptions{}, 10)
	if err == nil || !strings.Contains(err.Error(), "the source broke") {
		t.Fatalf("a broken source: err %v", err)
	}
	if len(paths) != 3 {
		t.Errorf("%d files started before row 25 at 10 per file, want 3", len(paths))
	}
	for _, p := range paths {
		if _, err := os.Stat(trimFileScheme(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}

func trimFileScheme(p string) string {
	const prefix = "file://"
	if len(p) > len(prefix) && p[:len(prefix)] == prefix {
		return p[len(prefix):]
	}
	return p
}
