package lakeops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"github.com/apache/iceberg-go/table/compaction"
)

// DefaultTargetFileSize is the size compaction aims its data files at: Iceberg's
// own default (write.target-file-size-bytes, 512 MiB) is made for object
// stores; a lake of a few hundred thousand patients per table fits in files
// this size with far fewer of them to plan.
const DefaultTargetFileSize = 128 << 20

// CompactOptions tune Compact.
type CompactOptions struct {
	// TargetFileSize is the size of the files written (default
	// DefaultTargetFileSize). Files at least 3/4 of it and without deletes
	// are left alone.
	TargetFileSize int64
	// Summary is added to the compaction snapshot's summary.
	Summary iceberg.Properties

	// beforeCommit, in tests, runs between the rewrite and its commit.
	beforeCommit func(attempt int)
}

// How a compaction group streams from the files it reads to the file it writes.
// iceberg-go's defaults (batches of 131,072 rows, 64 of them queued for the writer, a
// reader per core, row groups of up to 1,048,576 rows) let the reader run a whole
// group ahead of the writer: `lake compact` of a 3,000-patient bench lake peaked at
// 2.1 GB of RSS (bronze.observation, 92 MiB of Parquet, 1.85 GB alone), 20 times the
// size of the files it read. These bound what is in memory at once to a few batches
// and one row group (also capped by the table's write.parquet.row-group-size-bytes,
// 128 MiB by default): the lake in 390 MB and bronze.observation in 334 MB, no slower
// (docs/lakehouse.md, "Maintenance"; BenchmarkCompactWideRows).
const (
	// compactBatchRows is the rows decoded per Arrow batch.
	compactBatchRows = 4096
	// compactQueuedBatches is the batches queued between the reader and the writer.
	compactQueuedBatches = 4
	// compactReaders is the files read at once. Each reader holds up to one file's
	// rows while the writer is busy, so a second one doubled the peak when the
	// rewritten files were large (420 MB against 1.03 GB, three files of 26 MiB)
	// and saved no time: the single writer is the bottleneck.
	compactReaders = 1
	// compactRowGroupRows caps a written row group's rows; narrow tables reach it
	// before the byte limit, which wide ones (bronze, a resource's JSON a row) reach.
	compactRowGroupRows = 65536
)

// compactionGroupOptions are the options of each compaction group's rewrite.
func compactionGroupOptions(target int64) []table.CompactionGroupOption {
	return []table.CompactionGroupOption{
		table.WithCompactionTargetFileSize(target),
		table.WithCompactionArrowBatchSize(compactBatchRows),
		table.WithCompactionRecordBatchBufferSize(compactQueuedBatches),
		table.WithCompactionScanConcurrency(compactReaders),
		table.WithCompactionParquetRowGroupLimit(compactRowGroupRows),
	}
}

// compactAttempts bounds Compact's tries when a concurrent commit (a sink's)
// conflicts with the rewrite.
const compactAttempts = 5

// CompactResult says what Compact did to one table.
type CompactResult struct {
	Table table.Identifier
	// Before and after, in the current snapshot.
	DataFilesBefore, DataFilesAfter     int
	DeleteFilesBefore, DeleteFilesAfter int
	BytesBefore, BytesAfter             int64
	// RewrittenFiles data files were replaced by AddedFiles; SnapshotID is the
	// compaction's snapshot (0 when there was nothing to do).
	RewrittenFiles, AddedFiles int
	SnapshotID                 int64
}

// Compact rewrites a table's small data files into files of the target size
// and folds every delete file in: each data file that any delete file applies
// to is rewritten without its deleted rows, whatever its size, and delete
// files that no live data file needs any more are dropped in the same commit.
// The rows a reader sees do not change. A table with nothing to do is left as
// it is (no new snapshot).
//
// A sink committing deletes to a rewritten file meanwhile makes the commit
// conflict (iceberg-go's rewrite validation): nothing is committed, and
// Compact plans and rewrites again from the new state, up to compactAttempts
// times. The files of a failed attempt are orphans for Expire.
func Compact(ctx context.Context, cat catalog.Catalog, id table.Identifier, opts CompactOptions) (CompactResult, error) {
	for attempt := 1; ; attempt++ {
		res, err := compactOnce(ctx, cat, id, opts, attempt)
		if err == nil || !isConflict(err) || attempt == compactAttempts {
			return res, err
		}
	}
}

// isConflict reports whether a commit failed because the table moved on
// meanwhile. The REST catalog and a lost race in the SQL catalog say
// table.ErrCommitFailed; the SQL catalog's own check of the commit's
// requirements against the table it loads (iceberg-go v0.7.0,
// catalog/internal.UpdateAndStageTable) returns the requirement's plain
// error, "requirement failed: branch \"main\" has changed: …".
func isConflict(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(err.Error(), "requirement failed: ")
}

func compactOnce(ctx context.Context, cat catalog.Catalog, id table.Identifier, opts CompactOptions, attempt int) (CompactResult, error) {
	res := CompactResult{Table: id}
	tbl, err := cat.LoadTable(ctx, id)
	if err != nil {
		return res, fmt.Errorf("load %s: %w", Name(id), err)
	}
	if tbl.CurrentSnapshot() == nil {
		return res, nil
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		return res, fmt.Errorf("plan files of %s: %w", Name(id), err)
	}
	before, err := countFiles(ctx, tbl)
	if err != nil {
		return res, err
	}
	res.DataFilesBefore, res.DeleteFilesBefore, res.BytesBefore = before.data, before.deletes, before.bytes

	target := opts.TargetFileSize
	if target <= 0 {
		target = DefaultTargetFileSize
	}
	cfg := compaction.DefaultConfig()
	cfg.TargetFileSizeBytes = target
	cfg.MinFileSizeBytes = target * 3 / 4
	cfg.MaxFileSizeBytes = target * 9 / 5
	// One delete file is enough to rewrite a data file: a table left with
	// equality deletes is one pyiceberg cannot read.
	cfg.DeleteFileThreshold = 1
	// A lone small file is rewritten only if it has deletes (below).
	cfg.MinInputFiles = 1
	plan, err := cfg.PlanCompaction(tasks)
	if err != nil {
		return res, fmt.Errorf("plan compaction of %s: %w", Name(id), err)
	}
	var groups []table.CompactionTaskGroup
	rewritten := map[string]struct{}{}
	for _, g := range plan.Groups {
		if len(g.Tasks) == 1 && g.DeleteFileCount == 0 {
			continue // rewriting one file as itself gains nothing
		}
		groups = append(groups, table.CompactionTaskGroup{
			PartitionKey: g.PartitionKey, Tasks: g.Tasks, TotalSizeBytes: g.TotalSizeBytes,
		})
		for _, t := range g.Tasks {
			rewritten[t.File.FilePath()] = struct{}{}
		}
	}
	// Data files of no rows (a sink commits one when a batch's records for the table
	// were all dead-lettered, to record the offsets) are never planned, since a scan
	// skips them; they go in a group of their own, rewritten into nothing.
	if g := emptyFilesGroup(before.empty, rewritten); len(g.Tasks) > 0 {
		groups = append(groups, g)
	}
	if len(groups) == 0 {
		res.DataFilesAfter, res.DeleteFilesAfter, res.BytesAfter = res.DataFilesBefore, res.DeleteFilesBefore, res.BytesBefore
		return res, nil
	}

	fs, err := tbl.FS(ctx)
	if err != nil {
		return res, fmt.Errorf("open %s's files: %w", Name(id), err)
	}
	deadEq, err := compaction.CollectDeadEqualityDeletesWithSpecs(ctx, fs, tbl.Metadata(), tbl.CurrentSnapshot(), rewritten)
	if err != nil {
		return res, fmt.Errorf("find equality deletes compaction retires in %s: %w", Name(id), err)
	}
	tx := tbl.NewTransaction()
	out, err := tx.RewriteDataFiles(ctx, groups, table.RewriteDataFilesOptions{
		SnapshotProps:            opts.Summary,
		ExtraDeleteFilesToRemove: deadEq,
		GroupOptions:             compactionGroupOptions(target),
	})
	if err != nil {
		return res, fmt.Errorf("rewrite data files of %s: %w", Name(id), err)
	}
	if opts.beforeCommit != nil {
		opts.beforeCommit(attempt)
	}
	committed, err := tx.Commit(ctx)
	if err != nil {
		return res, fmt.Errorf("commit compaction of %s: %w", Name(id), err)
	}
	res.RewrittenFiles, res.AddedFiles = out.RemovedDataFiles, out.AddedDataFiles
	res.SnapshotID = committed.CurrentSnapshot().SnapshotID
	after, err := countFiles(ctx, committed)
	if err != nil {
		return res, err
	}
	res.DataFilesAfter, res.DeleteFilesAfter, res.BytesAfter = after.data, after.deletes, after.bytes
	return res, nil
}

type fileCounts struct {
	data, deletes int
	bytes         int64
	empty         []iceberg.DataFile // live data files of no rows
}

// emptyFilesGroup is a compaction group of the data files of no rows that no other
// group rewrites.
func emptyFilesGroup(empty []iceberg.DataFile, rewritten map[string]struct{}) table.CompactionTaskGroup {
	var g table.CompactionTaskGroup
	for _, df := range empty {
		if _, ok := rewritten[df.FilePath()]; ok {
			continue
		}
		rewritten[df.FilePath()] = struct{}{}
		g.Tasks = append(g.Tasks, table.FileScanTask{File: df, Length: df.FileSizeBytes()})
		g.TotalSizeBytes += df.FileSizeBytes()
	}
	return g
}

// countFiles counts the live data and delete files of the current snapshot.
func countFiles(ctx context.Context, tbl *table.Table) (fileCounts, error) {
	var c fileCounts
	snap := tbl.CurrentSnapshot()
	if snap == nil {
		return c, nil
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return c, fmt.Errorf("open %s's files: %w", Name(tbl.Identifier()), err)
	}
	manifests, err := snap.Manifests(fs)
	if err != nil {
		return c, fmt.Errorf("read manifests of %s: %w", Name(tbl.Identifier()), err)
	}
	for _, m := range manifests {
		for e, err := range m.Entries(fs, true) {
			if err != nil {
				return c, fmt.Errorf("read manifest %s: %w", m.FilePath(), err)
			}
			df := e.DataFile()
			if df.ContentType() == iceberg.EntryContentData {
				c.data++
				c.bytes += df.FileSizeBytes()
				if df.Count() == 0 {
					c.empty = append(c.empty, df)
				}
			} else {
				c.deletes++
			}
		}
	}
	return c, nil
}
