package lakehouse

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

// FileOptions tune the Parquet files the lake writes.
type FileOptions struct {
	// RowGroupRows bounds the rows of one row group. Default 128 Ki.
	RowGroupRows int64
	// PageBufferSize is parquet-go's per-column page buffer. Default 256 KiB.
	PageBufferSize int
	// Compression is the pages' codec. Default zstd at its default level, with a window
	// of a page buffer (ZstdCodec).
	Compression compress.Codec
}

// defaultCompression is FileOptions' default codec.
var defaultCompression = &ZstdCodec{}

func (o FileOptions) writerOptions(schema *parquet.Schema) []parquet.WriterOption {
	rg, pb, codec := o.RowGroupRows, o.PageBufferSize, o.Compression
	if rg <= 0 {
		rg = 128 << 10
	}
	if pb <= 0 {
		pb = 256 << 10
	}
	if codec == nil {
		codec = defaultCompression
	}
	// DATA_PAGE v1 with PLAIN (and dictionary) encodings: Spark 3.x's vectorized reader,
	// Trino and DuckDB read these without settings; v2 pages with DELTA_LENGTH_BYTE_ARRAY
	// strings are refused by Spark before 3.4.
	return []parquet.WriterOption{
		schema,
		parquet.DataPageVersion(1),
		parquet.Compression(codec),
		parquet.MaxRowsPerRowGroup(rg),
		parquet.PageBufferSize(pb),
		parquet.DataPageStatistics(true),
		parquet.CreatedBy("fhirstream", "lakehouse", ""),
	}
}

// WriteData writes rows (in the layout's column order, as parquet-go rows) to a new
// Parquet file at path and returns it as an Iceberg data file with its column
// statistics, ready for a commit.
func (l *Layout) WriteData(fs iceio.WriteFileIO, path string, rows []parquet.Row, o FileOptions) (iceberg.DataFile, error) {
	return l.write(fs, path, l.pq, o, iceberg.EntryContentData, nil, func(w *parquet.GenericWriter[any]) error {
		_, err := w.WriteRows(rows)
		return err
	})
}

// WriteEqualityDeletes writes an equality-delete file on the layout's delete key holding
// keys, and returns it as an Iceberg delete file.
func (l *Layout) WriteEqualityDeletes(fs iceio.WriteFileIO, path string, keys []string, o FileOptions) (iceberg.DataFile, error) {
	if l.deletes == nil {
		return nil, fmt.Errorf("lakehouse: table %s is append-only, it takes no deletes", l)
	}
	id := l.index[l.DeleteKey] + 1
	return l.write(fs, path, l.deletes, o, iceberg.EntryContentEqDeletes, []int{id}, func(w *parquet.GenericWriter[any]) error {
		row := make([]parquet.Row, 1)
		for _, k := range keys {
			row[0] = append(row[0][:0], parquet.ByteArrayValue([]byte(k)).Level(0, 0, 0))
			if _, err := w.WriteRows(row); err != nil {
				return err
			}
		}
		return nil
	})
}

func (l *Layout) write(fs iceio.WriteFileIO, path string, schema *parquet.Schema, o FileOptions,
	content iceberg.ManifestEntryContent, eqIDs []int, fill func(*parquet.GenericWriter[any]) error) (iceberg.DataFile, error) {
	f, err := fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	tw := &tailWriter{w: f}
	w := parquet.NewGenericWriter[any](tw, o.writerOptions(schema)...)
	err = fill(w)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		// On a local disk, data must be durable before a commit references it.
		if s, ok := f.(interface{ Sync() error }); ok {
			err = s.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = fs.Remove(path)
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	footer, err := tw.footer()
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	md, err := metadata.NewFileMetaData(footer, nil)
	if err != nil {
		return nil, fmt.Errorf("read back the footer of %s: %w", path, err)
	}
	df, err := table.DataFileFromMetadata(table.DataFileArgs{
		Schema:           l.ice,
		Spec:             *iceberg.UnpartitionedSpec,
		Format:           iceberg.ParquetFile,
		Metadata:         md,
		FilePath:         path,
		FileSize:         tw.n,
		Content:          content,
		EqualityFieldIDs: eqIDs,
		FormatVersion:    FormatVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", path, err)
	}
	return df, nil
}

// tailWriter counts the bytes written and keeps the last tailKeep of them, so the
// Parquet footer (written last) can be read back without reading the file.
type tailWriter struct {
	w    interface{ Write([]byte) (int, error) }
	n    int64
	tail []byte
}

const tailKeep = 1 << 20

func (t *tailWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.n += int64(n)
	if n >= tailKeep { // a column chunk written whole: only its end can be the tail
		t.tail = append(t.tail[:0], p[n-tailKeep:n]...)
		return n, err
	}
	t.tail = append(t.tail, p[:n]...)
	if len(t.tail) > 2*tailKeep {
		t.tail = append(t.tail[:0], t.tail[len(t.tail)-tailKeep:]...)
	}
	return n, err
}

// footer returns the serialized FileMetaData at the end of the file.
func (t *tailWriter) footer() ([]byte, error) {
	b := t.tail
	if len(b) < 8 || string(b[len(b)-4:]) != "PAR1" {
		return nil, errors.New("no Parquet footer at the end of the file")
	}
	size := int(binary.LittleEndian.Uint32(b[len(b)-8:]))
	if size+8 > len(b) {
		return nil, fmt.Errorf("the Parquet footer (%d bytes) is larger than the %d bytes kept", size, tailKeep)
	}
	return b[len(b)-8-size : len(b)-8], nil
}
