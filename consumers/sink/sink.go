package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/sink/rows"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// Stats is a snapshot of what a sink has done since it started.
type Stats struct {
	// Batches counts flushed batches; BatchesEndedBy counts them by what ended them:
	// "rows", "bytes", "interval", "idle", "rebalance" or "stop".
	Batches        int64
	BatchesEndedBy map[string]int64
	// Commits counts table commits (snapshots); Retries the attempts tried again.
	Commits, Retries int64
	// FilesWritten counts data and delete files of committed snapshots.
	FilesWritten int64
	// Rows counts rows inserted per table ("omop.person"); Deletes the keys put in
	// equality deletes per table.
	Rows, Deletes map[string]int64
	// Records counts input records of committed batches (data records, not transaction
	// markers); DeadLetters those sent to the dead-letter topic; Skipped those that
	// changed nothing (compaction tombstones on OMOP topics).
	Records, DeadLetters, Skipped int64
	// Restarts counts group sessions restarted (a fenced commit, a failed dependency).
	Restarts int64
	// Fenced counts table commits refused because another member had moved the table's
	// offsets of a partition this member held.
	Fenced int64
	// OpenRows is the number of rows in the open batch.
	OpenRows int64
	// Tables are per table ("omop.person"): its commits and the time they took, files
	// written and commit retries included.
	Tables map[string]TableStats
}

// TableStats is what a sink did to one table.
type TableStats struct {
	Commits int64
	Seconds float64
}

// TotalRows is the sum of Rows.
func (s Stats) TotalRows() int64 {
	var n int64
	for _, v := range s.Rows {
		n += v
	}
	return n
}

// Sink consumes one layer's topics and commits them to the lake's Iceberg tables. Create
// it with New, run it with Run, read Stats at any time from any goroutine.
type Sink struct {
	kcfg   kafkaclient.Config
	cfg    Config
	topics schemas.Topics
	layer  rows.Layer
	lake   *lakehouse.Lake
	stage  string
	log    *slog.Logger
	m      *metricSet

	statsMu sync.Mutex
	stats   Stats

	// fence holds, per partition this member consumes, the offset the partition's table
	// had absorbed when this member last read or wrote it (-1: none): a commit for the
	// partition is valid only while the table still says so. Set by the assignment
	// callback, advanced by commits.
	fenceMu sync.Mutex
	fence   map[topicPartition]int64

	report groupReport

	ensured sync.Map // topic → *lakehouse.Layout whose table exists

	// Set by the group callbacks, read by the consuming goroutine.
	assignErr  atomic.Pointer[error]
	pollCancel atomic.Pointer[context.CancelFunc]
	hurry      atomic.Bool
	openRows   atomic.Int64
}

type topicPartition struct {
	topic     string
	partition int32
}

// errRestart ends a group session whose state can no longer be trusted (a fenced commit,
// a commit whose outcome stayed unknown, a dependency that failed): the sink leaves the
// group, rejoins, and starts every partition again from its table's offsets.
var errRestart = errors.New("restart group session")

// New checks the configuration and opens the catalog.
func New(ctx context.Context, kcfg kafkaclient.Config, cfg Config) (*Sink, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := kcfg.Validate(); err != nil {
		return nil, err
	}
	topics, err := schemas.NewTopics(kcfg.TopicPrefix)
	if err != nil {
		return nil, err
	}
	node, err := topics.Topology(schemas.TopologyOptions{Deidentify: c.Deidentify}).Node(StageName(c.Layer))
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	if c.Group == "" {
		c.Group = node.Group
	}
	layer, err := rows.New(c.Layer, topics, node.InputPattern(), c.Decoder)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	lake, err := lakehouse.Open(ctx, c.Catalog)
	if err != nil {
		return nil, err
	}
	s := &Sink{kcfg: kcfg, cfg: c, topics: topics, layer: layer, lake: lake, stage: StageName(c.Layer),
		m: metrics(), fence: map[topicPartition]int64{}}
	s.log = c.Logger.With("stage", s.stage)
	s.stats.Rows, s.stats.Deletes, s.stats.Tables = map[string]int64{}, map[string]int64{}, map[string]TableStats{}
	s.stats.BatchesEndedBy = map[string]int64{}
	return s, nil
}

// Group is the consumer group the sink consumes in (and records table offsets under).
func (s *Sink) Group() string { return s.cfg.Group }

// Pattern is the regular expression of the sink's input topics.
func (s *Sink) Pattern() string { return s.layer.Pattern() }

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	out := s.stats
	out.Rows, out.Deletes, out.Tables = maps.Clone(s.stats.Rows), maps.Clone(s.stats.Deletes), maps.Clone(s.stats.Tables)
	out.BatchesEndedBy = maps.Clone(s.stats.BatchesEndedBy)
	out.OpenRows = s.openRows.Load()
	return out
}

func (s *Sink) addStats(f func(*Stats)) {
	s.statsMu.Lock()
	f(&s.stats)
	s.statsMu.Unlock()
}

// Run consumes until ctx ends, then commits what it holds and leaves the group. It
// returns nil on a clean stop and an error when the sink cannot go on; the lake is
// consistent either way.
func (s *Sink) Run(ctx context.Context) error {
	defer s.lake.Close()
	backoff := 100 * time.Millisecond
	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, errRestart) {
				return nil
			}
			return err
		}
		if !errors.Is(err, errRestart) {
			return err
		}
		s.addStats(func(st *Stats) { st.Restarts++ })
		s.m.restarts.WithLabelValues(s.stage).Inc()
		s.log.Warn("sink: restarting group session", "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// session is one membership of the group: join, consume and commit batches, leave.
func (s *Sink) session(ctx context.Context) error {
	s.assignErr.Store(nil)
	s.hurry.Store(false)
	s.fenceMu.Lock()
	clear(s.fence)
	s.fenceMu.Unlock()
	s.report.reset()
	opts := []kgo.Opt{
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(s.layer.Pattern()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are delivered so that the offsets committed move past a
		// partition's trailing marker: a caught-up sink shows a lag of 0, not 1.
		kgo.KeepControlRecords(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		// Rebalances wait for the open batch, so a batch never spans a change of
		// ownership and the fence of its partitions is the one read at assignment.
		kgo.BlockRebalanceOnPoll(),
		kgo.MetadataMinAge(time.Second),
		kgo.MetadataMaxAge(s.cfg.TopicRefresh),
		kgo.FetchMaxBytes(int32(min(s.cfg.FlushBytes, fetchBufferBytes))),
		// Consumption starts where each table says, not where the group committed.
		kgo.AdjustFetchOffsetsFn(s.adjustOffsets),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onRevoked),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) {
			// A rebalance waits for the open batch: commit it now instead of at its deadline.
			s.hurry.Store(true)
			if c := s.pollCancel.Load(); c != nil {
				(*c)()
			}
		}),
	}
	if s.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(s.cfg.InstanceID))
	}
	if s.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(s.cfg.SessionTimeout))
	}
	cl, err := s.kcfg.NewClient(opts...)
	if err != nil {
		return err
	}
	if err := kafkaclient.CheckInputsVisible(ctx, kadm.NewClient(cl), s.layer.Pattern()); err != nil {
		cl.Close()
		return fmt.Errorf("sink %s: %w", s.cfg.Layer, err)
	}
	defer func() {
		// Leaving the group runs the revoke callback, which waits for polls to be allowed.
		cl.AllowRebalance()
		cl.Close()
	}()
	s.log.Info("sink: consuming", "pattern", s.layer.Pattern(), "group", s.cfg.Group)

	b := s.newBatch()
	defer func() { s.openRows.Store(0) }()
	for {
		if e := s.assignErr.Load(); e != nil {
			return *e
		}
		if ctx.Err() != nil {
			if b.empty() {
				return nil
			}
			// Commit what was consumed with a fresh context: the caller's is done.
			fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b.endedBy = endedByStop
			return s.flush(fctx, cl, b)
		}
		pctx, cancel := context.WithTimeout(ctx, s.pollWait(b, time.Now()))
		s.pollCancel.Store(&cancel)
		fetches := cl.PollRecords(pctx, s.cfg.MaxPollRecords)
		s.pollCancel.Store(nil)
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			if kafkaclient.IsDenied(fe.Err) {
				return fmt.Errorf("sink %s: %w", s.cfg.Layer, kafkaclient.ConsumeDenied(fe.Err, fe.Topic, s.cfg.Group))
			}
			s.log.Warn("sink: fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
		}
		if e := s.assignErr.Load(); e != nil {
			return *e
		}
		if err := s.transform(ctx, b, fetches); err != nil {
			return err
		}
		if b.endedBy = s.batchEnd(b, time.Now()); b.endedBy != "" {
			err := s.flush(ctx, cl, b)
			b = s.newBatch()
			if err != nil {
				return err
			}
			s.hurry.Store(false)
		}
		if b.empty() {
			s.reportOwed(ctx, cl)
			cl.AllowRebalance()
		}
	}
}

// What ends a batch (Stats.Batches, the metric fhirstream_stage_sink_batches_total).
const (
	endedByRebalance = "rebalance" // a rebalance waits for it
	endedByRows      = "rows"      // FlushRows
	endedByBytes     = "bytes"     // FlushBytes
	endedByInterval  = "interval"  // FlushInterval
	endedByIdle      = "idle"      // FlushIdle
	endedByStop      = "stop"      // the sink stops
)

// batchEnd says what makes b due for its commit at now, or "" while it is not.
func (s *Sink) batchEnd(b *batch, now time.Time) string {
	switch {
	case b.empty():
		return ""
	case s.hurry.Load():
		return endedByRebalance
	case b.rows >= s.cfg.FlushRows:
		return endedByRows
	case b.bytes >= s.cfg.FlushBytes:
		return endedByBytes
	case now.Sub(b.started) >= s.cfg.FlushInterval:
		return endedByInterval
	case now.Sub(b.last) >= s.cfg.FlushIdle:
		return endedByIdle
	}
	return ""
}

// pollWait is how long the next poll may wait for records: until b is due by its
// interval or its idle time, or a whole interval when there is no open batch.
func (s *Sink) pollWait(b *batch, now time.Time) time.Duration {
	if b.empty() {
		return s.cfg.FlushInterval
	}
	return max(min(b.started.Add(s.cfg.FlushInterval).Sub(now), b.last.Add(s.cfg.FlushIdle).Sub(now)), time.Millisecond)
}

// transform applies the polled records to the batch, in partition order.
func (s *Sink) transform(ctx context.Context, b *batch, fetches kgo.Fetches) error {
	now := time.Now()
	opening := b.empty()
	var in stage.Record
	for it := fetches.RecordIter(); !it.Done(); {
		rec := it.Next()
		b.take(rec, now)
		if rec.Attrs.IsControl() {
			continue // a transaction marker: its offset is taken, it makes no row
		}
		b.bytes += int64(len(rec.Value)) // the row's strings are copies of the value's
		l, err := s.tableOf(ctx, rec.Topic)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var unknown *unknownTopicError
			if errors.As(err, &unknown) {
				b.deadLetter(s.topics.DLQ(), s.stage, rec, &stage.Rejection{Class: schemas.ClassUnknownTopic, Message: err.Error()})
				continue
			}
			return fmt.Errorf("%w: table of %s: %v", errRestart, rec.Topic, err)
		}
		toStage(rec, &in)
		b.bytes += int64(len(l.Columns)) * valueSize
		c, err := s.layer.Change(ctx, &in, l, b.rowBuffer(len(l.Columns)))
		if err != nil {
			if rej, ok := stage.AsRejection(err); ok {
				b.deadLetter(s.topics.DLQ(), s.stage, rec, rej)
				continue
			}
			// A dependency, not the data (a schema registry that did not answer): start
			// again from the tables' offsets after a pause.
			return fmt.Errorf("%w: %v", errRestart, err)
		}
		if c.Key == "" {
			b.skipped++
			continue
		}
		tb := b.table(l, s.cfg.UpsertDeletes == DeletesAlways, rec.Topic)
		tb.changes.Apply(c)
		if c.Row != nil {
			b.rows++
			s.openRows.Add(1)
		}
	}
	if opening && !b.empty() {
		s.log.Debug("sink: batch opened", "batch", b.id, "records", b.records)
	}
	return nil
}

// toStage fills in with rec's fields; the slices are rec's.
func toStage(rec *kgo.Record, in *stage.Record) {
	in.Topic, in.Partition, in.Offset = rec.Topic, rec.Partition, rec.Offset
	in.Key, in.Value, in.Timestamp = rec.Key, rec.Value, rec.Timestamp
	in.Headers = in.Headers[:0]
	for _, h := range rec.Headers {
		in.Headers = append(in.Headers, stage.Header{Key: h.Key, Value: h.Value})
	}
}

type unknownTopicError struct{ err error }

func (e *unknownTopicError) Error() string { return e.err.Error() }

// tableOf returns the layout of topic's table, creating the table in the catalog the
// first time.
func (s *Sink) tableOf(ctx context.Context, topic string) (*lakehouse.Layout, error) {
	if l, ok := s.ensured.Load(topic); ok {
		return l.(*lakehouse.Layout), nil
	}
	l, err := s.layer.Table(topic)
	if err != nil {
		return nil, &unknownTopicError{err}
	}
	if _, err := s.lake.EnsureTable(ctx, l); err != nil {
		return nil, err
	}
	s.ensured.Store(topic, l)
	return l, nil
}

// adjustOffsets is called once the group client has fetched the committed offsets of
// newly assigned partitions, before it fetches records: it replaces each with the offset
// the partition's table has absorbed (the log start when it has none) and records that
// offset as the partition's fence. The group's committed offsets are only a report for
// lag monitoring; the table is the truth.
func (s *Sink) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	err := s.tableOffsets(ctx, offsets)
	if err == nil {
		return offsets, nil
	}
	if ctx.Err() != nil {
		// The group session is revoking: the client fetches these partitions' offsets
		// again in its next session and calls this again.
		return nil, ctx.Err()
	}
	err = fmt.Errorf("%w: read the tables' offsets: %v", errRestart, err)
	s.log.Error("sink: assignment failed", "err", err)
	s.assignErr.Store(&err)
	if c := s.pollCancel.Load(); c != nil {
		(*c)()
	}
	return nil, err
}

func (s *Sink) tableOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) error {
	for topic, parts := range offsets {
		l, err := s.tableOf(ctx, topic)
		if err != nil {
			var unknown *unknownTopicError
			if errors.As(err, &unknown) {
				continue // its records are dead-lettered; the group's offsets stand
			}
			return err
		}
		tbl, err := s.lake.LoadTable(ctx, l)
		if err != nil {
			return fmt.Errorf("load %s: %w", l, err)
		}
		o, snap, err := lakehouse.TableOffsets(tbl.Metadata(), s.cfg.Group)
		if err != nil {
			return fmt.Errorf("table %s: %w", l, err)
		}
		if o.Topic != "" && o.Topic != topic {
			return fmt.Errorf("table %s records offsets of topic %s for group %s, not of %s: two topics feed one table", l, o.Topic, s.cfg.Group, topic)
		}
		s.fenceMu.Lock()
		for p := range parts {
			off, ok := o.Offsets[p]
			if ok {
				if committed := parts[p].EpochOffset().Offset; committed != off {
					// The group's report differs from the table (a sink stopped between
					// its table commit and its group commit): put it right.
					s.report.owe(topicPartition{topic, p}, off)
				}
				parts[p] = kgo.NewOffset().At(off).WithEpoch(-1)
			} else {
				off = -1
				parts[p] = kgo.NewOffset().AtStart()
			}
			s.fence[topicPartition{topic, p}] = off
		}
		s.fenceMu.Unlock()
		s.log.Info("sink: partitions assigned", "topic", topic, "partitions", len(parts), "table", l.String(), "snapshot", snap)
	}
	return nil
}

func (s *Sink) onRevoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	// Nothing to flush: with BlockRebalanceOnPoll these callbacks run only between batches.
	s.fenceMu.Lock()
	for t, ps := range lost {
		for _, p := range ps {
			delete(s.fence, topicPartition{t, p})
		}
	}
	s.fenceMu.Unlock()
	s.report.forget(lost)
	s.log.Info("sink: partitions released", "partitions", lost)
}

// newBatch starts a batch with a fresh id, which names its files and its commits.
func (s *Sink) newBatch() *batch {
	return &batch{id: uuid.NewString(), parts: map[topicPartition]*partRange{}, tables: map[string]*tableBatch{}, in: map[string]int64{}}
}

// fetchBufferBytes bounds one fetch response: franz-go keeps a fetched response buffered
// while the sink works through the previous one, and its batches decompressed are four to
// five times its size. A batch's rows keep their records' decompressed Kafka batches
// until the commit, so the fetch ahead is on top of the batch's own (`--flush-bytes`). In
// `fhirstream bench --processes` (3,000 patients) 2 MiB instead of 4 took sink-silver's
// peak from 318-322 to 269-273 MB and sink-bronze's from 285-297 to 255-259 MB at the
// same CPU per resource and table commits: a sink's CPU is in Parquet, not in fetching.
// (A record batch larger than this still comes whole, KIP-74.)
const fetchBufferBytes = 2 << 20
