package lakeops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// ExpireOptions tune Expire.
type ExpireOptions struct {
	// OlderThan: snapshots and orphan files older than this are removed
	// (subject to what is kept, see Expire). Zero removes every one not kept.
	OlderThan time.Duration
	// RetainLast keeps at least this many snapshots of the current ancestry
	// (default 1: the current one).
	RetainLast int
	// DryRun reports what would go and removes nothing.
	DryRun bool
}

// ExpireResult says what Expire did to one table.
type ExpireResult struct {
	Table table.Identifier
	// SnapshotsBefore and SnapshotsAfter count the table's snapshots.
	SnapshotsBefore, SnapshotsAfter int
	// Expired are the snapshots removed (or, in a dry run, that would be).
	Expired []int64
	// Kept maps each consumer group to the snapshot its offsets are resumed
	// from, which Expire kept with everything after it in the ancestry.
	Kept map[string]int64
	// Orphans are the files under the table's location that no snapshot or
	// metadata references, older than OlderThan: removed (or would be).
	Orphans []string
	// OrphanBytes is their total size.
	OrphanBytes int64
}

// Expire removes a table's snapshots older than opts.OlderThan, with the data
// and delete files only they referenced, then every orphan file under the
// table's location older than opts.OlderThan: files no snapshot references,
// such as those a sink wrote before it crashed and never committed.
//
// It keeps the current snapshot's ancestry back to (and including) the
// newest snapshot carrying each consumer group's Kafka offsets, whatever
// their age, so a sink always finds the offsets it resumes from; and at least
// opts.RetainLast snapshots. Files younger than OlderThan are never removed:
// with a sink running, OlderThan must exceed its longest write-to-commit time
// (the command refuses less than an hour).
func Expire(ctx context.Context, cat catalog.Catalog, id table.Identifier, opts ExpireOptions) (ExpireResult, error) {
	res := ExpireResult{Table: id}
	if opts.OlderThan < 0 {
		return res, errors.New("expire: negative age")
	}
	tbl, err := cat.LoadTable(ctx, id)
	if err != nil {
		return res, fmt.Errorf("load %s: %w", Name(id), err)
	}
	meta := tbl.Metadata()
	res.SnapshotsBefore = len(meta.Snapshots())
	res.Kept = offsetSnapshots(meta)

	retain := max(opts.RetainLast, 1)
	if cur := meta.CurrentSnapshot(); cur != nil {
		// The ancestry walk of ExpireSnapshots keeps the newest `retain`
		// snapshots whatever their age: make it reach the oldest snapshot a
		// sink resumes from.
		for i, s := range table.AncestorsOf(cur.SnapshotID, meta.SnapshotByID) {
			for _, keep := range res.Kept {
				if s.SnapshotID == keep {
					retain = max(retain, i+1)
				}
			}
		}
	}

	if res.SnapshotsBefore > 0 {
		tx := tbl.NewTransaction()
		if err := tx.ExpireSnapshots(table.WithOlderThan(opts.OlderThan), table.WithRetainLast(retain),
			table.WithPostCommit(!opts.DryRun)); err != nil {
			return res, fmt.Errorf("expire snapshots of %s: %w", Name(id), err)
		}
		staged, err := tx.StagedTable()
		if err != nil {
			return res, fmt.Errorf("expire snapshots of %s: %w", Name(id), err)
		}
		res.Expired = removed(meta, staged.Metadata())
		if !opts.DryRun && len(res.Expired) > 0 {
			if tbl, err = tx.Commit(ctx); err != nil {
				return res, fmt.Errorf("commit snapshot expiry of %s: %w", Name(id), err)
			}
		}
	}
	res.SnapshotsAfter = res.SnapshotsBefore
	if !opts.DryRun {
		res.SnapshotsAfter = len(tbl.Metadata().Snapshots())
	} else {
		res.SnapshotsAfter -= len(res.Expired)
	}

	orphans, err := tbl.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(opts.OlderThan), table.WithDryRun(opts.DryRun))
	if err != nil {
		return res, fmt.Errorf("remove orphan files of %s: %w", Name(id), err)
	}
	res.Orphans = orphans.OrphanFileLocations
	res.OrphanBytes = orphans.TotalSizeBytes
	slices.Sort(res.Orphans)
	return res, nil
}

// removed lists the snapshots of before that after no longer has.
func removed(before, after table.Metadata) []int64 {
	var out []int64
	for _, s := range before.Snapshots() {
		if after.SnapshotByID(s.SnapshotID) == nil {
			out = append(out, s.SnapshotID)
		}
	}
	return out
}
