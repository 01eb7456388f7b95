package goldlake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// tableWriter writes the data files of one table's new content, to be made the table's
// content by commit (or removed by abort).
type tableWriter struct {
	lk      *lakehouse.Lake
	l       *lakehouse.Layout
	fs      iceio.WriteFileIO
	loc     table.LocationProvider
	opts    lakehouse.FileOptions
	maxRows int64
	prefix  string
	n       int

	files []iceberg.DataFile
	rows  int64
	took  time.Duration
}

// newTableWriter creates the table (and its namespace) when absent: its location is
// where the files go.
func newTableWriter(ctx context.Context, lk *lakehouse.Lake, l *lakehouse.Layout, prefix string, o lakehouse.FileOptions, maxRows int64) (*tableWriter, error) {
	tbl, err := lk.EnsureTable(ctx, l)
	if err != nil {
		return nil, err
	}
	fsys, err := tbl.FS(ctx)
	if err != nil {
		return nil, fmt.Errorf("goldlake: %s: %w", l, err)
	}
	wfs, ok := fsys.(iceio.WriteFileIO)
	if !ok {
		return nil, fmt.Errorf("goldlake: the warehouse of %s is not writable", l)
	}
	loc, err := tbl.LocationProvider()
	if err != nil {
		return nil, fmt.Errorf("goldlake: %s: %w", l, err)
	}
	return &tableWriter{lk: lk, l: l, fs: wfs, loc: loc, opts: o, maxRows: maxRows, prefix: prefix}, nil
}

// write streams rows into new data files.
func (w *tableWriter) write(rows iter.Seq2[parquet.Row, error]) error {
	start := time.Now()
	counted := func(yield func(parquet.Row, error) bool) {
		for r, err := range rows {
			if err == nil {
				w.rows++
			}
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
	newPath := func() string {
		w.n++
		return w.loc.NewDataLocation(fmt.Sprintf("%s-%05d.parquet", w.prefix, w.n))
	}
	files, err := w.l.WriteDataFiles(w.fs, newPath, counted, w.opts, w.maxRows)
	w.took += time.Since(start)
	if err != nil {
		return fmt.Errorf("write %s: %w", w.l, err)
	}
	w.files = append(w.files, files...)
	return nil
}

// commit makes the files written the table's whole content, in one snapshot carrying
// props, and returns its id.
func (w *tableWriter) commit(ctx context.Context, props iceberg.Properties) (int64, error) {
	snap, err := w.lk.ReplaceContents(ctx, w.l, w.files, props)
	if err != nil {
		return 0, err
	}
	w.files = nil
	return snap.SnapshotID, nil
}

// abort removes the files written and not committed (what a failed refresh leaves;
// `lake expire` removes any it could not).
func (w *tableWriter) abort() {
	for _, f := range w.files {
		_ = w.fs.Remove(f.FilePath())
	}
	w.files = nil
}

// errStop ends a callback-driven stream early.
var errStop = errors.New("stop")

// newID is a random id naming a refresh or a load (and its files).
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
