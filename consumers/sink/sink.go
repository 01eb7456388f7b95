package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// Stats is a snapshot of what a sink has done since it started.
type Stats struct {
	// Batches is the number of committed batches.
	Batches int64
	// FilesWritten counts published data files.
	FilesWritten int64
	// Rows counts committed rows per dataset (OMOP table or FHIR resource type).
	Rows map[string]int64
	// DeadLetters counts records sent to the dead-letter topic.
	DeadLetters int64
	// Skipped counts records that carry no row (Kafka tombstones on OMOP topics).
	Skipped int64
	// Removed and Republished count the files recovery removed (leftovers of uncommitted
	// batches) and published (pending files of a committed batch).
	Removed, Republished int64
	// Restarts counts group sessions restarted after an uncertain commit.
	Restarts int64
	// OpenRows is the number of rows in the open batch, written but not yet committed.
	OpenRows int64
}

// TotalRows is the sum of Rows.
func (s Stats) TotalRows() int64 {
	var n int64
	for _, v := range s.Rows {
		n += v
	}
	return n
}

// Sink consumes one layer's topics and writes them to the lake. Create it with New, run
// it with Run, and read Stats at any time from any goroutine.
type Sink struct {
	kcfg   kafkaclient.Config
	cfg    Config
	topics schemas.Topics
	layer  layer
	st     Storage
	ownsSt bool
	codec  compress.Codec
	log    *slog.Logger

	optsMu sync.Mutex
	opts   map[*dataset][]parquet.WriterOption

	statsMu sync.Mutex
	stats   Stats

	// Set by the group callbacks, read by the consuming goroutine.
	assignErr  atomic.Pointer[error]
	pollCancel atomic.Pointer[context.CancelFunc]
	hurry      atomic.Bool
	openRows   atomic.Int64
}

// errRestart ends a group session whose commit outcome is unknown or whose partitions
// changed under it: the session's in-memory state can no longer be trusted, so the sink
// leaves the group, rejoins, and lets recovery read the committed offsets again.
var errRestart = errors.New("restart group session")

// New checks the configuration and opens the storage.
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
	if c.Group == "" {
		c.Group = DefaultGroup(topics, c.Layer)
	}
	s := &Sink{kcfg: kcfg, cfg: c, topics: topics, log: c.Logger.With("stage", "sink-"+c.Layer), opts: map[*dataset][]parquet.WriterOption{}}
	s.stats.Rows = map[string]int64{}
	s.codec, _ = codec(c.Compression)
	switch c.Layer {
	case LayerOMOP:
		dec := c.Decoder
		if dec == nil {
			codecs, err := schemas.NewCodecs()
			if err != nil {
				return nil, fmt.Errorf("sink: OMOP codecs: %w", err)
			}
			dec = codecs
		}
		s.layer = newOMOPLayer(topics, dec)
	case LayerBronze:
		s.layer = newBronzeLayer(topics)
	}
	s.st = c.Storage
	if s.st == nil {
		if s.st, err = OpenStorage(ctx, c.Out); err != nil {
			return nil, err
		}
		s.ownsSt = true
	}
	return s, nil
}

// Run is New followed by (*Sink).Run, for callers that need no stats.
func Run(ctx context.Context, kcfg kafkaclient.Config, cfg Config) error {
	s, err := New(ctx, kcfg, cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	out := s.stats
	out.Rows = maps.Clone(s.stats.Rows)
	out.OpenRows = s.openRows.Load()
	return out
}

// Storage is the lake the sink writes.
func (s *Sink) Storage() Storage { return s.st }

// Run consumes until ctx ends, then commits what it holds and leaves the group. It returns
// nil on a clean stop and an error when the sink cannot go on (storage failures, a broker
// that cannot be reached); the lake is consistent either way.
func (s *Sink) Run(ctx context.Context) error {
	if s.ownsSt {
		defer s.st.Close()
	}
	if s.cfg.Layer == LayerOMOP {
		if err := writeSchemaFiles(ctx, s.st, s.cfg.RowGroupRows, s.codec); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting: nothing was consumed, nothing to flush
			}
			return err
		}
	}
	backoff := 100 * time.Millisecond
	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			// A requested stop (SIGTERM, Ctrl-C) is a clean end, as for the stages,
			// even when it came while the session was still starting.
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		if !errors.Is(err, errRestart) {
			return err
		}
		s.addStats(func(st *Stats) { st.Restarts++ })
		s.log.Warn("sink: restarting group session", "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Sink) addStats(f func(*Stats)) {
	s.statsMu.Lock()
	f(&s.stats)
	s.statsMu.Unlock()
}

// session is one membership of the group: join, consume and commit batches, leave.
func (s *Sink) session(ctx context.Context) (err error) {
	s.assignErr.Store(nil)
	s.hurry.Store(false)
	opts := []kgo.Opt{
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(s.layer.pattern()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are delivered so the committed offset moves past a
		// partition's trailing marker: a caught-up sink then shows a lag of 0, not 1,
		// which is what lag-based autoscaling, alerts and "drained" checks read.
		kgo.KeepControlRecords(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.MetadataMinAge(time.Second),
		kgo.MetadataMaxAge(10 * time.Second),
		kgo.FetchMaxBytes(int32(min(s.cfg.FlushBytes, fetchBufferBytes))),
		kgo.MaxConcurrentFetches(1),
		// Recovery runs on the OffsetFetch response the client starts consuming from,
		// not in OnPartitionsAssigned with an offset fetch of its own: see onOffsetsFetched.
		kgo.OnOffsetsFetched(s.onOffsetsFetched),
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
	cl, err := s.kcfg.NewClient(opts...)
	if err != nil {
		return err
	}
	if err := kafkaclient.CheckInputsVisible(ctx, kadm.NewClient(cl), s.layer.pattern()); err != nil {
		cl.Close()
		return fmt.Errorf("sink %s: %w", s.cfg.Layer, err)
	}
	defer func() {
		// Leaving the group runs the revoke callback, which waits for polls to be allowed.
		cl.AllowRebalance()
		cl.Close()
	}()
	s.log.Info("sink: consuming", "pattern", s.layer.pattern(), "group", s.cfg.Group, "out", s.st.String())

	b := newBatch()
	defer func() {
		if !b.empty() {
			b.abort()
		}
		s.openRows.Store(0)
	}()
	var row parquet.Row
	for {
		if e := s.assignErr.Load(); e != nil {
			return *e
		}
		if ctx.Err() != nil {
			if !b.empty() {
				// Commit what was consumed with a fresh context: the caller's is done.
				fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := s.flush(fctx, cl, b)
				cancel()
				b = newBatch()
				if err != nil {
					return err
				}
			}
			return nil
		}
		wait := s.cfg.FlushInterval
		if !b.empty() {
			wait = max(time.Until(b.started.Add(s.cfg.FlushInterval)), time.Millisecond)
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		s.pollCancel.Store(&cancel)
		fetches := cl.PollRecords(pctx, 10_000)
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
		now := time.Now()
		var dead []*kgo.Record
		for it := fetches.RecordIter(); !it.Done(); {
			rec := it.Next()
			pr := b.take(rec, now)
			if rec.Attrs.IsControl() {
				continue // a transaction marker: its offset is taken, it makes no row
			}
			var err error
			row, err = s.add(ctx, cl, b, pr, rec, row[:0])
			var rej *rejection
			switch {
			case err == nil:
			case errors.Is(err, errSkip):
				s.addStats(func(st *Stats) { st.Skipped++ })
			case errors.As(err, &rej):
				dead = append(dead, deadletter.Record(s.topics.DLQ(), rec, deadletter.Context{
					Stage: "sink-" + s.cfg.Layer, SourceTopic: rec.Topic, Partition: rec.Partition,
					Offset: rec.Offset, Class: rej.class, Message: rej.msg,
				}))
			default:
				return err
			}
		}
		if len(dead) > 0 {
			// Dead letters go out before the offsets that pass over their records are
			// committed, so none is lost; a crash before the commit may send one twice.
			if err := cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
				return fmt.Errorf("sink: produce %d dead letters: %w", len(dead), kafkaclient.Denied(err, "Write", "topic", s.topics.DLQ()))
			}
			s.addStats(func(st *Stats) { st.DeadLetters += int64(len(dead)) })
			metricDeadLetters.WithLabelValues(s.cfg.Layer).Add(float64(len(dead)))
		}
		if !b.empty() && (s.hurry.Load() || b.rows >= s.cfg.FlushRows || b.bytes >= s.cfg.FlushBytes ||
			len(b.files) >= s.cfg.MaxOpenFiles || time.Since(b.started) >= s.cfg.FlushInterval) {
			err := s.flush(ctx, cl, b)
			b = newBatch()
			if err != nil {
				return err
			}
			s.hurry.Store(false)
		}
		if b.empty() {
			cl.AllowRebalance()
		}
	}
}

// add writes rec's row into the batch.
func (s *Sink) add(ctx context.Context, cl *kgo.Client, b *batch, pr *partRange, rec *kgo.Record, row parquet.Row) (parquet.Row, error) {
	ds, err := s.layer.dataset(rec.Topic)
	if err != nil {
		return row, reject("unknown-topic", "%v", err)
	}
	row, err = s.layer.appendRow(ctx, ds, rec, row)
	if err != nil {
		return row, err
	}
	f, err := b.file(ctx, s.st, ds, rec, s.writerOpts(ds))
	if err != nil {
		return row, err
	}
	if _, err := f.w.WriteRows([]parquet.Row{row}); err != nil {
		return row, fmt.Errorf("write %s: %w", f.pending, err)
	}
	f.rows++
	pr.rows++
	b.rows++
	s.openRows.Add(1)
	return row, nil
}

func (s *Sink) writerOpts(ds *dataset) []parquet.WriterOption {
	s.optsMu.Lock()
	defer s.optsMu.Unlock()
	o, ok := s.opts[ds]
	if !ok {
		o = writerOptions(ds, &s.cfg, s.codec)
		s.opts[ds] = o
	}
	return o
}

// flush makes the batch durable and visible, in the order the package doc argues for:
// finish and fsync the pending files, commit the offsets with the batch id as metadata,
// then publish the files.
func (s *Sink) flush(ctx context.Context, cl *kgo.Client, b *batch) error {
	start := time.Now()
	if err := b.closeFiles(ctx, s.st); err != nil {
		b.abort()
		return fmt.Errorf("sink: write batch: %w", err)
	}
	if err := s.commit(ctx, cl, b); err != nil {
		// The commit may or may not have happened. Either way the pending files stay:
		// recovery publishes them if it did, removes them if it did not.
		return fmt.Errorf("%w: commit batch %s: %v", errRestart, b.id, err)
	}
	if err := b.publish(ctx, s.st); err != nil {
		if errors.Is(err, errVanished) {
			// Not a storage hiccup a restart may cure: committed rows are missing from the
			// lake. Say so loudly; the restart lets recovery re-read the committed state.
			s.log.Error("sink: committed rows missing from the lake", "batch", b.id, "err", err)
		}
		return fmt.Errorf("%w: publish batch %s: %w", errRestart, b.id, err)
	}
	s.openRows.Add(-int64(b.rows))
	rows := map[string]int64{}
	for _, f := range b.order {
		rows[f.ds.name] += int64(f.rows)
		metricRows.WithLabelValues(s.cfg.Layer, f.ds.name).Add(float64(f.rows))
	}
	metricFiles.WithLabelValues(s.cfg.Layer).Add(float64(len(b.order)))
	metricFlushSeconds.WithLabelValues(s.cfg.Layer).Observe(time.Since(start).Seconds())
	s.addStats(func(st *Stats) {
		st.Batches++
		st.FilesWritten += int64(len(b.order))
		for k, v := range rows {
			st.Rows[k] += v
		}
	})
	s.log.Debug("sink: batch committed", "batch", b.id, "files", len(b.order), "rows", b.rows, "took", time.Since(start))
	return nil
}

// commit commits the offset after each partition's last record, tagging each with the
// batch id. The group generation travels with the commit, so a member that lost its
// partitions is refused by the coordinator.
func (s *Sink) commit(ctx context.Context, cl *kgo.Client, b *batch) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for tp, pr := range b.parts {
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: pr.lastEpoch, Offset: pr.last + 1}
	}
	meta := commitMetadata(b.id)
	cctx := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].Metadata = &meta
			}
		}
		return nil
	})
	var cerr error
	cl.CommitOffsetsSync(cctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		n := 0
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				n++
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
		if cerr == nil && n != len(b.parts) {
			cerr = fmt.Errorf("commit answered for %d partitions, sent %d", n, len(b.parts))
		}
	})
	return cerr
}

func (s *Sink) onRevoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	// Nothing to flush: with BlockRebalanceOnPoll these callbacks run only between batches.
	s.log.Info("sink: partitions released", "partitions", lost)
}

// onOffsetsFetched recovers the files of the partitions whose committed offsets the group
// client has just fetched, before it assigns them for consuming. The response is the one
// the client starts consuming from, offset for offset, so recovery reasons about exactly
// the offsets that consumption resumes at. It is called for every partition the client
// fetches offsets for, including those whose earlier fetch a rebalance cancelled (which
// OnPartitionsAssigned does not name again).
//
// Deciding from an offset fetch of our own, as the sink once did in OnPartitionsAssigned,
// can lose committed rows silently: that fetch (all of the group's topics, not required
// to be stable) is a different request from the client's, and where the answers differ
// the files are judged against one offset while consumption resumes at another. A
// partition missing from that answer (a topic the client could not name from the topic
// id OffsetFetch v10 answers with) read as "no commit", so recovery removed every file of
// the partition, published ones included; an older commit removed the pending files of
// the newer, committed batch. TestRecoveryUsesOffsetsConsumptionStartsFrom shows both.
func (s *Sink) onOffsetsFetched(ctx context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	err := s.recoverFetched(ctx, resp)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// The group session is ending (a rebalance): the client fetches these partitions'
		// offsets again in its next session and calls this again; recovery is idempotent.
		return ctx.Err()
	}
	err = fmt.Errorf("sink: recover assigned partitions: %w", err)
	s.log.Error("sink: recovery failed", "err", err)
	s.assignErr.Store(&err)
	// Wake the consuming goroutine so it ends the session; the error also stops the client
	// from assigning these partitions.
	if c := s.pollCancel.Load(); c != nil {
		(*c)()
	}
	return err
}

// recoverFetched runs recovery for every partition of an OffsetFetch response that the
// client will consume from. A partition answered with an error is not assigned (the client
// reports the error as a fetch error), so it is left for a later session.
func (s *Sink) recoverFetched(ctx context.Context, resp *kmsg.OffsetFetchResponse) error {
	if len(resp.Groups) == 0 {
		return fmt.Errorf("offset fetch for %s answered no group", s.cfg.Group)
	}
	for _, t := range resp.Groups[0].Topics {
		var parts []kmsg.OffsetFetchResponseGroupTopicPartition
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				parts = append(parts, p)
			}
		}
		if len(parts) == 0 {
			continue
		}
		if t.Topic == "" {
			// Without the name there is no telling which files are this partition's.
			return fmt.Errorf("committed offsets of topic id %x arrived without the topic's name", t.TopicID)
		}
		ds, err := s.layer.dataset(t.Topic)
		if err != nil {
			// A topic the pattern matched but this layer cannot name: its records will be
			// dead-lettered, and it has no files.
			continue
		}
		// One listing serves every partition of the topic: on an object store a listing
		// costs a request per thousand files, and the dataset holds all partitions' files.
		files, err := s.st.List(ctx, ds.dir)
		if err != nil {
			return err
		}
		for _, p := range parts {
			// A negative offset is "no commit": the client starts at the log start.
			off, meta := p.Offset, ""
			if off < 0 {
				off = -1
			} else if p.Metadata != nil {
				meta = *p.Metadata
			}
			res, err := recoverFiles(ctx, s.st, files, t.Topic, p.Partition, off, batchFromMetadata(meta))
			if err != nil {
				return err
			}
			if res.removed+res.published > 0 {
				s.log.Info("sink: recovered partition", "topic", t.Topic, "partition", p.Partition, "committed", off,
					"removed", res.removed, "published", res.published)
			}
			s.addStats(func(st *Stats) { st.Removed += int64(res.removed); st.Republished += int64(res.published) })
		}
	}
	return nil
}

type recovery struct{ removed, published int }

// recoverPartition brings the files of one partition in line with its committed offset
// (committed < 0: none) and the batch that commit named. See classify.
func recoverPartition(ctx context.Context, st Storage, datasetDir, topic string, partition int32, committed int64, committedBatch string) (recovery, error) {
	files, err := st.List(ctx, datasetDir)
	if err != nil {
		return recovery{}, err
	}
	return recoverFiles(ctx, st, files, topic, partition, committed, committedBatch)
}

// recoverFiles is recoverPartition over a listing of the dataset's files.
func recoverFiles(ctx context.Context, st Storage, files []string, topic string, partition int32, committed int64, committedBatch string) (recovery, error) {
	var res recovery
	dirs := map[string]bool{}
	for _, f := range files {
		p, ok := parseName(path.Base(f))
		if !ok || p.Topic != topic || p.Partition != partition {
			continue
		}
		switch classify(p, committed, committedBatch) {
		case remove:
			if err := st.Remove(ctx, f); err != nil {
				return res, err
			}
			res.removed++
		case publish:
			to := path.Join(path.Dir(f), p.dataName())
			if err := st.Publish(ctx, f, to); err != nil {
				return res, err
			}
			res.published++
		default:
			continue
		}
		dirs[path.Dir(f)] = true
	}
	for d := range dirs {
		if err := st.SyncDir(ctx, d); err != nil {
			return res, err
		}
	}
	return res, nil
}

// fetchBufferBytes bounds one fetch response. franz-go keeps a fetched response buffered
// while the sink works through the previous one, decompressed, so the fetch size, not the
// batch, dominates the sink's heap (measured: 16 MiB fetches held about 100 MB of
// decompressed records). 4 MiB keeps the consumer fed; a record larger than this is still
// fetched whole, since a broker always returns the first batch of a partition.
const fetchBufferBytes = 4 << 20
