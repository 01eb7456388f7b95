package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
)

// Whole-table replacement, for tables that are recomputed rather than kept current
// record by record (the gold CDM, the vocabulary): the rows stream into data files, and
// one snapshot makes them the table's whole content.

// DefaultMaxFileRows bounds the rows of one data file WriteDataFiles writes: about 100
// to 300 MB of Parquet for the CDM's wider tables, the size engines plan well.
const DefaultMaxFileRows = 4 << 20

// WriteDataFiles writes rows (in the layout's column order, as parquet-go rows; the
// sequence may reuse one row) to as many Parquet data files as maxRows per file needs
// (DefaultMaxFileRows when 0), each at the path newPath gives, one at a time: memory holds
// one row group, whatever the number of rows. No rows, no file. On an error the files
// written so far are removed.
func (l *Layout) WriteDataFiles(fs iceio.WriteFileIO, newPath func() string, rows iter.Seq2[parquet.Row, error], o FileOptions, maxRows int64) ([]iceberg.DataFile, error) {
	if maxRows <= 0 {
		maxRows = DefaultMaxFileRows
	}
	next, stop := iter.Pull2(rows)
	defer stop()
	var (
		files   []iceberg.DataFile
		pending parquet.Row // a row pulled but not written yet
		done    bool
		srcErr  error
	)
	pull := func() bool {
		r, err, ok := next()
		switch {
		case !ok:
			done = true
		case err != nil:
			srcErr, done = err, true
		default:
			pending = r
		}
		return !done
	}
	fail := func(err error) ([]iceberg.DataFile, error) {
		for _, f := range files {
			_ = fs.Remove(f.FilePath())
		}
		return nil, err
	}
	if !pull() {
		if srcErr != nil {
			return nil, srcErr
		}
		return nil, nil
	}
	one := make([]parquet.Row, 1)
	for !done {
		df, err := l.write(fs, newPath(), l.pq, o, iceberg.EntryContentData, nil, func(w *parquet.GenericWriter[any]) error {
			for n := int64(0); n < maxRows && !done; n++ {
				one[0] = pending
				if _, err := w.WriteRows(one); err != nil {
					return err
				}
				pull()
			}
			return srcErr
		})
		if err != nil {
			return fail(err)
		}
		files = append(files, df)
	}
	return files, nil
}

// replaceAttempts bounds ReplaceContents' tries when another commit lands between its
// reading the table and its commit.
const replaceAttempts = 8

// ReplaceContents makes files the whole content of the table of layout l, in one
// snapshot whose summary carries props: every live data and delete file goes, files come
// (an Iceberg overwrite; an append on a table that has none). Without files the table
// gets one data file of no rows, so that it has a snapshot recording props, as every
// engine expects of a table it reads (iceberg-go commits no snapshot without a file to
// add). The table and its namespace
// are created when absent. Another commit in between (a concurrent refresh) makes it
// read the table again and retry; the snapshot committed is returned.
func (lk *Lake) ReplaceContents(ctx context.Context, l *Layout, files []iceberg.DataFile, props iceberg.Properties) (*table.Snapshot, error) {
	var lastErr error
	for attempt := range replaceAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(20+rand.IntN(80*attempt)) * time.Millisecond):
			}
		}
		tbl, err := lk.EnsureTable(ctx, l)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			empty, err := l.writeEmpty(ctx, tbl)
			if err != nil {
				return nil, fmt.Errorf("lakehouse: replace the contents of %s: %w", l, err)
			}
			files = []iceberg.DataFile{empty}
		}
		snap, err := replaceOnce(ctx, tbl, files, props)
		if err == nil {
			return snap, nil
		}
		if !isCommitConflict(err) {
			return nil, fmt.Errorf("lakehouse: replace the contents of %s: %w", l, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("lakehouse: replace the contents of %s: still conflicting after %d attempts: %w", l, replaceAttempts, lastErr)
}

// writeEmpty writes a data file of no rows in tbl's data directory.
func (l *Layout) writeEmpty(ctx context.Context, tbl *table.Table) (iceberg.DataFile, error) {
	fsys, err := tbl.FS(ctx)
	if err != nil {
		return nil, err
	}
	wfs, ok := fsys.(iceio.WriteFileIO)
	if !ok {
		return nil, fmt.Errorf("the warehouse of %s is not writable", l)
	}
	loc, err := tbl.LocationProvider()
	if err != nil {
		return nil, err
	}
	return l.WriteData(wfs, loc.NewDataLocation(fmt.Sprintf("empty-%d-%016x.parquet", time.Now().UnixNano(), rand.Uint64())), nil, FileOptions{})
}

func replaceOnce(ctx context.Context, tbl *table.Table, files []iceberg.DataFile, props iceberg.Properties) (*table.Snapshot, error) {
	data, deletes, err := LiveFiles(ctx, tbl)
	if err != nil {
		return nil, err
	}
	tx := tbl.NewTransaction()
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		return nil, err
	}
	if len(data) == 0 && len(deletes) == 0 {
		err = tx.AddDataFiles(ctx, files, props)
	} else {
		err = tx.ReplaceFiles(ctx, data, files, deletes, props)
	}
	if err != nil {
		return nil, err
	}
	committed, err := tx.Commit(ctx)
	if err != nil {
		return nil, err
	}
	return committed.CurrentSnapshot(), nil
}

// LiveFiles lists the data files and the delete files of tbl's current snapshot.
func LiveFiles(ctx context.Context, tbl *table.Table) (data, deletes []iceberg.DataFile, err error) {
	snap := tbl.CurrentSnapshot()
	if snap == nil {
		return nil, nil, nil
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return nil, nil, err
	}
	manifests, err := snap.Manifests(fs)
	if err != nil {
		return nil, nil, fmt.Errorf("read the manifests of %v: %w", tbl.Identifier(), err)
	}
	for _, m := range manifests {
		for e, err := range m.Entries(fs, true) {
			if err != nil {
				return nil, nil, fmt.Errorf("read manifest %s: %w", m.FilePath(), err)
			}
			if df := e.DataFile(); df.ContentType() == iceberg.EntryContentData {
				data = append(data, df)
			} else {
				deletes = append(deletes, df)
			}
		}
	}
	return data, deletes, nil
}

// isCommitConflict reports whether a commit failed because the table moved on
// meanwhile: table.ErrCommitFailed (REST, a lost race in the SQL catalog), or the SQL
// catalog's own check of an asserted snapshot, which iceberg-go v0.7.0 returns as a
// plain "requirement failed: ..." error.
func isCommitConflict(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(err.Error(), "requirement failed: ")
}
