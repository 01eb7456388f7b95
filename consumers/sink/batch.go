package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/twmb/franz-go/pkg/kgo"
)

// batch is what the sink has consumed since its last commit: one open Parquet file per
// (dataset, day, partition), and per partition the range of offsets taken.
type batch struct {
	id      string
	started time.Time
	files   map[fileKey]*openFile
	order   []*openFile // creation order, for deterministic flushing and logs
	parts   map[topicPartition]*partRange
	rows    int
	bytes   int64
}

type fileKey struct {
	dir       string // the partition directory, dataset/date=...
	topic     string
	partition int32
}

type topicPartition struct {
	topic     string
	partition int32
}

// partRange is the part of one Kafka partition a batch covers.
type partRange struct {
	first, last int64
	lastEpoch   int32
	rows        int // rows written (records that were skipped or dead-lettered not counted)
}

// openFile is a pending Parquet file being written.
type openFile struct {
	ds      *dataset
	id      fileID
	dir     string
	pending string // lake-relative pending path
	final   string // lake-relative final path
	out     PendingFile
	//lint:ignore SA1019 the dynamic, per-table schema needs the untyped Writer; GenericWriter[T] wants a Go type per table
	w    *parquet.Writer
	rows int
}

func newBatchID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newBatch() *batch {
	return &batch{id: newBatchID(), files: map[fileKey]*openFile{}, parts: map[topicPartition]*partRange{}}
}

func (b *batch) empty() bool { return len(b.parts) == 0 }

// take records that rec's offset is part of the batch, whether or not it made a row.
func (b *batch) take(rec *kgo.Record, now time.Time) *partRange {
	if b.started.IsZero() {
		b.started = now
	}
	tp := topicPartition{rec.Topic, rec.Partition}
	pr := b.parts[tp]
	if pr == nil {
		pr = &partRange{first: rec.Offset}
		b.parts[tp] = pr
	}
	pr.last, pr.lastEpoch = rec.Offset, rec.LeaderEpoch
	b.bytes += int64(len(rec.Key) + len(rec.Value))
	return pr
}

// writerOptions are the parquet-go options of every file of a dataset.
func writerOptions(ds *dataset, cfg *Config, codec compress.Codec) []parquet.WriterOption {
	opts := []parquet.WriterOption{
		ds.schema,
		parquet.Compression(codec),
		parquet.MaxRowsPerRowGroup(cfg.RowGroupRows),
		parquet.PageBufferSize(cfg.PageBufferSize),
		parquet.DataPageStatistics(true),
		parquet.CreatedBy("fhirstream", "sink", ""),
	}
	if len(ds.bloom) > 0 {
		filters := make([]parquet.BloomFilterColumn, len(ds.bloom))
		for i, c := range ds.bloom {
			filters[i] = parquet.SplitBlockFilter(10, c)
		}
		opts = append(opts, parquet.BloomFilters(filters...))
	}
	return opts
}

// file returns the open file for rec's dataset, day and partition, creating it (named
// after rec's offset, its first row) when the batch has none yet.
func (b *batch) file(ctx context.Context, st Storage, ds *dataset, rec *kgo.Record, opts []parquet.WriterOption) (*openFile, error) {
	dir := partitionDir(ds.dir, rec.Timestamp)
	k := fileKey{dir: dir, topic: rec.Topic, partition: rec.Partition}
	if f, ok := b.files[k]; ok {
		return f, nil
	}
	id := fileID{Topic: rec.Topic, Partition: rec.Partition, Start: rec.Offset}
	f := &openFile{
		ds: ds, id: id, dir: dir,
		pending: path.Join(dir, id.pendingName(b.id)),
		final:   path.Join(dir, id.dataName()),
	}
	out, err := st.Create(ctx, f.pending)
	if err != nil {
		return nil, err
	}
	f.out = out
	f.w = parquet.NewWriter(out, opts...)
	f.w.SetKeyValueMetadata("fhirstream.batch", b.id)
	b.files[k] = f
	b.order = append(b.order, f)
	return f, nil
}

// closeFiles finishes every file (footer, fsync, close) and fsyncs their directories, so
// that the pending files are durable before the commit that covers them.
func (b *batch) closeFiles(ctx context.Context, st Storage) error {
	dirs := map[string]bool{}
	for _, f := range b.order {
		if err := f.w.Close(); err != nil {
			return fmt.Errorf("finish %s: %w", f.pending, err)
		}
		if err := f.out.Commit(); err != nil {
			return err
		}
		f.out = nil
		dirs[f.dir] = true
	}
	for d := range dirs {
		if err := st.SyncDir(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// abort discards the open files. Used when the batch cannot be committed and has not been
// (errors before the commit); the pending files would also be removed by recovery.
func (b *batch) abort() {
	for _, f := range b.order {
		if f.out != nil {
			_ = f.out.Abort()
		}
	}
}

// publish moves every pending file to its final name and fsyncs the directories. It is
// called only after the commit covering the batch succeeded. A pending file already gone
// is fine only when its final file is there: the partition's next owner published it
// (its recovery publishes the pending files of the committed batch, under the same
// names). A pending file gone with no final file means committed rows are not in the
// lake, which the protocol must never allow: that is errVanished, never silence.
func (b *batch) publish(ctx context.Context, st Storage) error {
	dirs := map[string]bool{}
	for _, f := range b.order {
		err := st.Publish(ctx, f.pending, f.final)
		if errors.Is(err, fs.ErrNotExist) {
			err = b.checkPublished(ctx, st, f)
		}
		if err != nil {
			return err
		}
		dirs[f.dir] = true
	}
	for d := range dirs {
		if err := st.SyncDir(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// errVanished marks a pending file of a committed batch that is gone without having been
// published: its rows are committed in Kafka but missing from the lake.
var errVanished = errors.New("pending file of a committed batch vanished")

// checkPublished tells whether the missing pending file f was published by someone else.
func (b *batch) checkPublished(ctx context.Context, st Storage, f *openFile) error {
	files, err := st.List(ctx, f.dir)
	if err != nil {
		return err
	}
	for _, p := range files {
		if p == f.final {
			return nil
		}
	}
	pr := b.parts[topicPartition{f.id.Topic, f.id.Partition}]
	return fmt.Errorf("%w: %s (batch %s committed %s/%d offsets %d-%d; its %d rows there are not in the lake: rewind the group to offset %d to write them again)",
		errVanished, f.pending, b.id, f.id.Topic, f.id.Partition, pr.first, pr.last, f.rows, f.id.Start)
}
