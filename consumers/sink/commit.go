package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// errFenced is a table commit refused by the fence: the table's offsets of a partition
// this batch holds are no longer those this member started the partition from, so
// another member owns or owned it.
var errFenced = errors.New("fenced: another member committed a partition of this batch")

// commitTimeout bounds the attempts of one table commit (conflicts, an unreachable
// catalog); past it the session restarts and the partitions start again from the tables.
const commitTimeout = 2 * time.Minute

// flush makes the batch part of the lake: dead letters first (at least once), then one
// snapshot per table the batch changed, each carrying the offsets the table has absorbed,
// then (as a report for lag monitoring) the group's offsets.
func (s *Sink) flush(ctx context.Context, cl *kgo.Client, b *batch) error {
	start := time.Now()
	if len(b.dead) > 0 {
		// Dead letters go out before the commits that pass over their records, so none is
		// lost; a crash before the commit sends them again.
		if err := cl.ProduceSync(ctx, b.dead...).FirstErr(); err != nil {
			err = kafkaclient.Denied(err, "Write", "topic", s.topics.DLQ())
			if kafkaclient.IsDenied(err) {
				return fmt.Errorf("sink: produce %d dead letters: %w", len(b.dead), err)
			}
			return fmt.Errorf("%w: produce %d dead letters: %v", errRestart, len(b.dead), err)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		sem   = make(chan struct{}, s.cfg.CommitParallelism)
		stats = make(map[string]tableResult)
	)
	for topic, tb := range b.tables {
		if tb.changes == nil || tb.changes.Empty() {
			if len(tb.dead) == 0 {
				// Nothing changes this table; its records are read again after a restart
				// and change nothing again.
				continue
			}
			l, err := s.tableOf(ctx, topic)
			if err != nil {
				continue // an unknown topic: its dead letters are all there is to it
			}
			tb.layout = l
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			res, err := s.commitTable(ctx, b, tb)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("table %s: %w", tb.layout, err))
				return
			}
			stats[topic] = res
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		err := errors.Join(errs...)
		if errors.Is(err, errFenced) {
			s.addStats(func(st *Stats) { st.Fenced++ })
		}
		return fmt.Errorf("%w: %v", errRestart, err)
	}
	s.commitGroup(ctx, cl, b.offsets())

	s.openRows.Add(-int64(b.rows))
	s.m.batchSeconds.WithLabelValues(s.stage).Observe(time.Since(start).Seconds())
	s.m.batchRecords.WithLabelValues(s.stage).Observe(float64(b.records))
	s.m.batchesEndedBy.WithLabelValues(s.stage, b.endedBy).Inc()
	for topic, tb := range b.tables {
		for class, n := range tb.dead {
			s.m.deadLettered.WithLabelValues(s.stage, topic, class).Add(float64(n))
		}
	}
	for topic, n := range b.in {
		s.m.recordsIn.WithLabelValues(s.stage, topic).Add(float64(n))
	}
	s.addStats(func(st *Stats) {
		st.Batches++
		st.BatchesEndedBy[b.endedBy]++
		st.Records += b.records
		st.Skipped += b.skipped
		st.DeadLetters += int64(len(b.dead))
		for topic, r := range stats {
			name := b.tables[topic].layout.String()
			st.Commits++
			st.Retries += int64(r.retries)
			st.FilesWritten += int64(r.files)
			st.Rows[name] += r.rows
			st.Deletes[name] += r.deletes
			ts := st.Tables[name]
			ts.Commits++
			ts.Seconds += r.seconds
			st.Tables[name] = ts
			s.m.recordsOut.WithLabelValues(s.stage, topic).Add(float64(r.rows))
		}
	})
	s.log.Debug("sink: batch committed", "batch", b.id, "tables", len(stats), "records", b.records, "took", time.Since(start))
	return nil
}

type tableResult struct {
	rows, deletes int64
	files         int
	retries       int
	seconds       float64
}

// commitTable writes the batch's files for one table and commits them in one snapshot
// whose summary carries the table's offsets, merged with the batch's.
//
// The commit is conditional twice over. The fence: for every partition of the batch, the
// table's offset must still be the one this member started the partition from. And the
// snapshot it checked: the commit asserts that the table's current snapshot is the one
// the fence was checked on (AssertRefSnapshotID), so nothing can slip in between. A
// conflict (another member committed another partition) reloads and tries again; a
// commit whose outcome is unknown (a timeout) is looked up in the table's history by its
// commit id before anything is tried again. iceberg-go's own retry, which would replay
// the snapshot with the summary computed before the conflict, never runs: the asserted
// snapshot fails it.
func (s *Sink) commitTable(ctx context.Context, b *batch, tb *tableBatch) (tableResult, error) {
	start := time.Now()
	l := tb.layout
	name := l.String()
	commitID := b.id + "/" + name
	parts := b.partitions(tb.topic)
	var res tableResult
	tbl, err := s.lake.LoadTable(ctx, l)
	if err != nil {
		return res, fmt.Errorf("load: %w", err)
	}
	dataFile, deleteFile, err := s.writeFiles(ctx, tbl, b.id, tb, &res)
	if err != nil {
		return res, err
	}
	var files []string
	for _, f := range []iceberg.DataFile{dataFile, deleteFile} {
		if f != nil {
			files = append(files, f.FilePath())
		}
	}
	deadline := time.Now().Add(commitTimeout)
	unknown := false // an attempt may have committed without our knowing
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			res.retries++
			s.m.conflicts.WithLabelValues(s.stage, name).Inc()
			if time.Now().After(deadline) {
				// Files stay: if an attempt of unknown outcome did commit, they are the
				// table's; if not, they are orphans `lake expire` removes.
				return res, fmt.Errorf("commit %s not done after %s: %w", commitID, commitTimeout, err)
			}
			pause := time.Duration(10+rand.IntN(40*min(attempt, 10))) * time.Millisecond
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(pause):
			}
			if tbl, err = s.lake.LoadTable(ctx, l); err != nil {
				continue // the catalog is unreachable: try again until the deadline
			}
		}
		meta := tbl.Metadata()
		if unknown {
			if _, ok := lakehouse.FindCommit(meta, commitID, 0); ok {
				break // the attempt of unknown outcome had committed
			}
		}
		offsets, _, err2 := lakehouse.TableOffsets(meta, s.cfg.Group)
		if err2 != nil {
			return res, err2
		}
		if err2 := s.checkFence(tb.topic, parts, offsets); err2 != nil {
			if !unknown {
				s.removeFiles(tbl, files)
			}
			return res, err2
		}
		merged := offsets.Clone()
		merged.Topic = tb.topic
		for p, pr := range parts {
			merged.Offsets[p] = pr.next
		}
		props := iceberg.Properties{
			lakehouse.OffsetsKey(s.cfg.Group): merged.Encode(),
			lakehouse.SummaryCommitID:         commitID,
		}
		err = s.commitOnce(ctx, tbl, dataFile, deleteFile, props)
		if err == nil {
			break
		}
		if errors.Is(err, table.ErrCommitFailed) {
			continue // another commit came first: reload, check the fence again
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		// The catalog may or may not have applied it (a timeout, a 5xx, or a refused
		// requirement the catalog reports as a plain error): look it up before trying again.
		unknown = true
		s.log.Warn("sink: table commit of unknown outcome; looking it up", "table", name, "commit", commitID, "err", err)
	}
	s.fenceMu.Lock()
	for p, pr := range parts {
		s.fence[topicPartition{tb.topic, p}] = pr.next
	}
	s.fenceMu.Unlock()
	res.seconds = time.Since(start).Seconds()
	s.m.commitSecs.WithLabelValues(s.stage, name).Observe(res.seconds)
	s.m.deletes.WithLabelValues(s.stage, name).Add(float64(res.deletes))
	return res, nil
}

// checkFence reports errFenced unless the table's offset of every partition of the batch
// is still the one this member started it from.
func (s *Sink) checkFence(topic string, parts map[int32]partRange, o lakehouse.Offsets) error {
	s.fenceMu.Lock()
	defer s.fenceMu.Unlock()
	for p := range parts {
		want, held := s.fence[topicPartition{topic, p}]
		if !held {
			return fmt.Errorf("%w: %s/%d is no longer assigned to this member", errFenced, topic, p)
		}
		have, ok := o.Offsets[p]
		if !ok {
			have = -1
		}
		if have != want {
			return fmt.Errorf("%w: %s/%d: the table is at offset %d, this member started from %d", errFenced, topic, p, have, want)
		}
	}
	return nil
}

// commitOnce commits the files in one snapshot on top of tbl's current snapshot.
func (s *Sink) commitOnce(ctx context.Context, tbl *table.Table, data, deletes iceberg.DataFile, props iceberg.Properties) error {
	tx := tbl.NewTransaction()
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		return err
	}
	rd := tx.NewRowDelta(props)
	if data != nil {
		rd.AddRows(data)
	}
	if deletes != nil {
		rd.AddDeletes(deletes)
	}
	if err := rd.Commit(ctx); err != nil {
		return err
	}
	_, err := tx.Commit(ctx)
	return err
}

// writeFiles writes the table's data file and equality-delete file of the batch (either
// may be absent, not both), named after the batch, in the table's data directory.
//
// A batch whose records for the table were all dead-lettered still commits, so that the
// table records the offsets it passed over: it gets a data file of no rows. iceberg-go
// commits no snapshot without a file (an empty AddDataFiles is a no-op), and a table left
// behind its fence would refuse the partition's next commit, restarting the session and
// dead-lettering the same records again.
func (s *Sink) writeFiles(_ context.Context, tbl *table.Table, batchID string, tb *tableBatch, res *tableResult) (data, deletes iceberg.DataFile, err error) {
	fsys, err := tbl.FS(context.Background())
	if err != nil {
		return nil, nil, err
	}
	wfs, ok := fsys.(iceio.WriteFileIO)
	if !ok {
		return nil, nil, fmt.Errorf("the warehouse of %s is not writable", tb.layout)
	}
	loc, err := tbl.LocationProvider()
	if err != nil {
		return nil, nil, err
	}
	empty := tb.changes == nil || tb.changes.Empty()
	var rs []parquet.Row
	if !empty {
		rs = tb.changes.Rows()
	}
	if len(rs) > 0 || empty {
		if data, err = tb.layout.WriteData(wfs, loc.NewDataLocation(batchID+"-data.parquet"), rs, s.cfg.Files); err != nil {
			return nil, nil, err
		}
		res.rows, res.files = int64(len(rs)), res.files+1
	}
	if empty {
		return data, nil, nil
	}
	if keys := tb.changes.Deletes(); len(keys) > 0 {
		if deletes, err = tb.layout.WriteEqualityDeletes(wfs, loc.NewDataLocation(batchID+"-deletes.parquet"), keys, s.cfg.Files); err != nil {
			if data != nil {
				_ = wfs.Remove(data.FilePath())
			}
			return nil, nil, err
		}
		res.deletes, res.files = int64(len(keys)), res.files+1
	}
	return data, deletes, nil
}

// removeFiles removes the files of a commit that was refused and never happened.
func (s *Sink) removeFiles(tbl *table.Table, files []string) {
	fsys, err := tbl.FS(context.Background())
	if err != nil {
		return
	}
	for _, f := range files {
		if err := fsys.Remove(f); err != nil {
			s.log.Warn("sink: remove a refused commit's file (lake expire removes it later)", "err", err)
		}
	}
}
