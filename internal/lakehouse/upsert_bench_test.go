package lakehouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
)

// Upserts, merge-on-read against copy-on-write: a person table of base rows in files of
// 20,000 rows (as a sink's initial load leaves it), then one batch that changes `changed`
// keys spread over the whole table. Merge-on-read is what the sink commits: one data file
// of the new rows and one equality-delete file of their keys, one snapshot. Copy-on-write
// is iceberg-go's Delete (write.delete.mode copy-on-write: every data file holding a
// changed key is read, filtered and written again) followed by an append of the new rows.
//
//	go test -run '^$' -bench Upsert -benchtime 3x ./internal/lakehouse/

func BenchmarkUpsertMergeOnRead(b *testing.B) { benchUpsert(b, false) }
func BenchmarkUpsertCopyOnWrite(b *testing.B) { benchUpsert(b, true) }

func benchUpsert(b *testing.B, copyOnWrite bool) {
	const base, perFile, changed = 200_000, 20_000, 1_000
	ctx := context.Background()
	tb := &testing.T{}
	for range b.N {
		b.StopTimer()
		lake, err := Open(ctx, Config{Out: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		l, _ := OMOPLayout("person")
		tbl, err := lake.EnsureTable(ctx, l)
		if err != nil {
			b.Fatal(err)
		}
		fsys, _ := tbl.FS(ctx)
		wfs := fsys.(iceio.WriteFileIO)
		loc, _ := tbl.LocationProvider()
		birth := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
		var files []iceberg.DataFile
		for f := 0; f < base/perFile; f++ {
			rows := make([]parquet.Row, perFile)
			for i := range rows {
				id := int64(f*perFile + i)
				rows[i] = personRow(tb, l, id, fmt.Sprintf("Patient/p%d", id), birth)
			}
			df, err := l.WriteData(wfs, loc.NewDataLocation(fmt.Sprintf("base-%d.parquet", f)), rows, FileOptions{})
			if err != nil {
				b.Fatal(err)
			}
			files = append(files, df)
		}
		tx := tbl.NewTransaction()
		if err := tx.AddDataFiles(ctx, files, nil); err != nil {
			b.Fatal(err)
		}
		if tbl, err = tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		keys := make([]string, changed)
		rows := make([]parquet.Row, changed)
		for i := range keys {
			id := int64(i * (base / changed))
			keys[i] = fmt.Sprintf("Patient/p%d", id)
			rows[i] = personRow(tb, l, id+base, keys[i], birth)
		}

		b.StartTimer()
		start := time.Now()
		tx = tbl.NewTransaction()
		data, err := l.WriteData(wfs, loc.NewDataLocation(fmt.Sprintf("new-%d.parquet", time.Now().UnixNano())), rows, FileOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if copyOnWrite {
			if err := tx.Delete(ctx, iceberg.IsIn(iceberg.Reference(ColFHIRKey), keys...), nil); err != nil {
				b.Fatal(err)
			}
			if err := tx.AddDataFiles(ctx, []iceberg.DataFile{data}, nil); err != nil {
				b.Fatal(err)
			}
		} else {
			dels, err := l.WriteEqualityDeletes(wfs, loc.NewDataLocation(fmt.Sprintf("del-%d.parquet", time.Now().UnixNano())), keys, FileOptions{})
			if err != nil {
				b.Fatal(err)
			}
			rd := tx.NewRowDelta(nil)
			rd.AddRows(data)
			rd.AddDeletes(dels)
			if err := rd.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if tbl, err = tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()

		// Both leave the same current state: base rows, the changed keys once each.
		n := countRows(b, tbl)
		if n != base {
			b.Fatalf("%d rows after the upsert, want %d", n, base)
		}
		written := int64(0)
		if s := tbl.CurrentSnapshot(); s != nil && s.Summary != nil {
			fmt.Sscan(s.Summary.Properties["total-files-size"], &written)
		}
		b.ReportMetric(float64(took.Milliseconds()), "ms/upsert")
		b.ReportMetric(float64(written)/1e6, "table_MB")
		lake.Close()
	}
}

func countRows(b *testing.B, tbl *table.Table) int {
	_, itr, err := tbl.Scan(table.WithSelectedFields("person_id")).ToArrowRecords(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for rec, err := range itr {
		if err != nil {
			b.Fatal(err)
		}
		n += int(rec.NumRows())
		rec.Release()
	}
	return n
}
