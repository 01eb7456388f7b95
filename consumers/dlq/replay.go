package dlq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// DefaultMaxReplays is how often a record may be replayed before it is parked.
const DefaultMaxReplays = 3

// ParkedTopic is where repeat offenders go: <prefix>.dlq.parked.
func ParkedTopic(t schemas.Topics) string { return t.DLQ() + ".parked" }

// ReplayOptions say what to replay and how.
type ReplayOptions struct {
	Filter Filter
	// To overrides every record's destination (default: its source topic).
	To string
	// DryRun only counts what would be replayed or parked; nothing is produced or
	// committed.
	DryRun bool
	// Rate limits republishing to this many records per second (0: unlimited).
	Rate float64
	// Max stops after this many records replayed or parked (0: no limit).
	Max int
	// MaxReplays is the replay count at which a record is parked instead of replayed
	// again. Default DefaultMaxReplays.
	MaxReplays int
	// Group is the consumer group holding the replay's progress. Default
	// "fhirstream-dlq-replay-<hash of filter and destination>", so rerunning the same
	// replay resumes it and a replay with another filter keeps its own progress.
	Group string
	// Logger gets progress; never payloads. Default slog.Default().
	Logger *slog.Logger
}

// ReplayResult says what a replay did (or, for a dry run, would do).
type ReplayResult struct {
	Group    string
	Replayed int
	Parked   int
	// Histogram counts replayed and parked records by "<action> <source topic> <stage>/<class>".
	Histogram map[string]int
}

// Replay republishes the dead letters on t.DLQ() matching o.Filter to their source topic
// (or o.To), with the original key, value, timestamp and headers, the dead-letter context
// stripped and the replay count header incremented. A record already replayed
// o.MaxReplays times is parked in ParkedTopic(t) instead.
//
// It is exactly once: the replay's consumer group (o.Group) reads the dead-letter topic
// in a franz-go GroupTransactSession, and the republished and parked records commit in
// one Kafka transaction with the group's offsets past them (a transaction every
// replayTxnRecords records or replayTxnAge). A replay that is interrupted or crashes
// leaves nothing of its open transaction visible to read_committed readers, and the
// next run of the same replay resumes after the last committed one. It reads from where
// its group left off until it has passed the end offsets the topic had when it began
// (dead letters arriving meanwhile may be replayed too); run one replay per group at a
// time (a second one fences the first). A dry run only reads and counts.
func Replay(ctx context.Context, cfg kafkaclient.Config, t schemas.Topics, o ReplayOptions) (ReplayResult, error) {
	if o.MaxReplays <= 0 {
		o.MaxReplays = DefaultMaxReplays
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Group == "" {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s|to=%s", o.Filter, o.To)
		o.Group = t.Group(fmt.Sprintf("fhirstream-dlq-replay-%016x", h.Sum64()))
	}
	res := ReplayResult{Group: o.Group, Histogram: map[string]int{}}
	if o.Rate < 0 || o.Rate > 0 && time.Duration(float64(time.Second)/o.Rate) > maxReplayInterval {
		return res, fmt.Errorf("replay rate %g/s: want 0 (unlimited) or at least one record per %v", o.Rate, maxReplayInterval)
	}
	cl, err := cfg.NewClient()
	if err != nil {
		return res, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := t.DLQ()
	parked := ParkedTopic(t)
	from, err := startOffsets(ctx, adm, o.Group, topic)
	if err != nil {
		return res, err
	}
	if o.DryRun {
		err := readRange(ctx, cfg, adm, topic, from, func(rec *kgo.Record) error {
			l := letterOf(rec)
			if !l.HasContext || !o.Filter.Match(l.Context, rec.Key) {
				return nil
			}
			if o.Max > 0 && res.Replayed+res.Parked >= o.Max {
				return errStop
			}
			action, _ := route(l, o, parked)
			res.count(action, l)
			return nil
		})
		if errors.Is(err, errStop) {
			err = nil
		}
		return res, err
	}
	spec := kafkaclient.TopicSpec{Name: parked, Partitions: 1, ReplicationFactor: -1,
		Configs: map[string]string{"cleanup.policy": "delete", "max.message.bytes": strconv.Itoa(int(cfg.MaxRecordBytes))}}
	if _, err := kafkaclient.EnsureTopicsExist(ctx, adm, []kafkaclient.TopicSpec{spec}); err != nil {
		return res, err
	}
	until, err := pendingRange(ctx, adm, topic, from)
	if err != nil || len(until) == 0 {
		return res, err
	}
	r := &replayer{o: o, res: &res, parked: parked, until: until, reached: map[int32]int64{}}
	return res, r.run(ctx, cfg, topic)
}

// maxReplayInterval is the longest wait between two records that --rate may ask for:
// a transaction waits one interval (plus replayTxnAge) before it commits, and brokers
// cap transaction timeouts at 15 minutes (transaction.max.timeout.ms).
const maxReplayInterval = 5 * time.Minute

// txnTimeout is the replay's transaction timeout: room for one rate interval.
func txnTimeout(rate float64) time.Duration {
	d := time.Minute
	if rate > 0 {
		d = max(d, 2*time.Duration(float64(time.Second)/rate)+30*time.Second)
	}
	return d
}

// replayTxnRecords and replayTxnAge bound one replay transaction: its records are
// invisible until it commits, and its offsets are the replay's saved progress.
var (
	replayTxnRecords = 500
	replayTxnAge     = time.Second
)

// testHookAfterProduce, when set by a test, is called after each record is produced
// in a transaction; an error aborts the transaction there, as a crash would.
var testHookAfterProduce func() error

var errStop = errors.New("max reached")

// replayer is one transactional replay.
type replayer struct {
	o       ReplayOptions
	res     *ReplayResult
	parked  string
	until   map[int32]int64 // partitions still to read, and where the snapshot ends
	reached map[int32]int64 // partitions finished in the open transaction

	sess *kgo.GroupTransactSession
	// newTopics holds the commit of a transaction that first republished to a topic
	// until the client has published its partitions (see kafkaclient.NewTopicGuard).
	newTopics kafkaclient.NewTopicGuard
	open      bool // a transaction is open
	began     time.Time
	pending   ReplayResult // counts of the open transaction, added to res when it commits
}

func (r *replayer) run(ctx context.Context, cfg kafkaclient.Config, topic string) error {
	base, err := cfg.Opts()
	if err != nil {
		return err
	}
	r.sess, err = kgo.NewGroupTransactSession(append(base,
		kgo.ConsumerGroup(r.o.Group),
		kgo.ConsumeTopics(topic),
		kgo.TransactionalID(r.o.Group),
		kgo.TransactionTimeout(txnTimeout(r.o.Rate)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers are seen, so a partition ending in one is known to be read to its end.
		kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	)...)
	if err != nil {
		return fmt.Errorf("replay session for group %s: %w", r.o.Group, err)
	}
	defer r.sess.Close()
	// Ending the last transaction is not cut short by ctx: what was replayed before an
	// interruption is committed, so a rerun does not do it again.
	endCtx := context.WithoutCancel(ctx)
	r.pending.Histogram = map[string]int{}
	var limiter *time.Ticker
	if r.o.Rate > 0 {
		limiter = time.NewTicker(time.Duration(float64(time.Second) / r.o.Rate))
		defer limiter.Stop()
	}
	for aborts := 0; ; aborts++ {
		err := r.loop(ctx, endCtx, topic, limiter)
		if !errors.Is(err, errTxnAborted) || aborts == maxReplayAborts {
			return err
		}
		// The group rebalanced under the transaction (a member joining or leaving):
		// the session rewound to the committed offsets; go on from there.
		r.o.Logger.Info("replay transaction aborted by a rebalance; continuing from the last commit", "group", r.o.Group)
	}
}

// maxReplayAborts bounds how often one replay's transactions may be aborted by
// rebalances before it gives up.
const maxReplayAborts = 5

// errTxnAborted is end's error for a transaction the broker or group aborted.
var errTxnAborted = errors.New("replay transaction aborted (the replay group rebalanced: is another replay of it running?); rerun to resume")

// loop replays until the snapshot is read, Max is reached or ctx ends, and commits.
func (r *replayer) loop(ctx, endCtx context.Context, topic string, limiter *time.Ticker) error {
	unhandled := false
	for len(r.until) > 0 {
		if r.o.Max > 0 && r.res.Replayed+r.res.Parked+r.pending.Replayed+r.pending.Parked >= r.o.Max {
			break
		}
		if r.open && (r.pending.Replayed+r.pending.Parked >= replayTxnRecords || time.Since(r.began) >= replayTxnAge) {
			if err := r.end(endCtx, true); err != nil {
				return err
			}
		}
		// One record at a time, so that no record is polled (and so committed) that
		// is not handled: the loop may stop before any poll.
		fs := r.sess.PollRecords(ctx, 1)
		var rec *kgo.Record
		fs.EachRecord(func(x *kgo.Record) { rec = x })
		if fs.IsClientClosed() || ctx.Err() != nil {
			unhandled = rec != nil
			break
		}
		if err := fs.Err0(); err != nil {
			return errors.Join(fmt.Errorf("read %s: %w", topic, err), r.end(endCtx, false))
		}
		if rec == nil {
			continue
		}
		if !r.open {
			if err := r.sess.Begin(); err != nil {
				return fmt.Errorf("begin replay transaction: %w", err)
			}
			r.open, r.began = true, time.Now()
		}
		if end, ok := r.until[rec.Partition]; ok && rec.Offset+1 >= end {
			delete(r.until, rec.Partition)
			r.reached[rec.Partition] = end
		}
		if rec.Attrs.IsControl() {
			continue
		}
		l := letterOf(rec)
		if !l.HasContext || !r.o.Filter.Match(l.Context, rec.Key) {
			// Skipped records are committed past too: they belong to another replay,
			// which has its own group.
			continue
		}
		action, out := route(l, r.o, r.parked)
		if limiter != nil {
			select {
			case <-limiter.C:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				unhandled = true
				break
			}
		}
		r.newTopics.Note(out.Topic)
		if err := r.sess.ProduceSync(endCtx, out).FirstErr(); err != nil {
			return errors.Join(fmt.Errorf("republish %s/%d@%d to %s: %w", rec.Topic, rec.Partition, rec.Offset, out.Topic, err), r.end(endCtx, false))
		}
		r.pending.count(action, l)
		if testHookAfterProduce != nil {
			if err := testHookAfterProduce(); err != nil {
				return errors.Join(err, r.end(endCtx, false))
			}
		}
	}
	// A record polled but not handled (interrupted) must not be committed: the
	// transaction is aborted, and its records are replayed by the next run instead.
	return r.end(endCtx, !unhandled)
}

// end ends the open transaction, committing it (with the group's offsets) if commit.
func (r *replayer) end(ctx context.Context, commit bool) error {
	if !r.open {
		return nil
	}
	r.open = false
	var guardErr error
	if commit {
		if guardErr = r.newTopics.Await(ctx, r.sess.Client()); guardErr != nil {
			commit = false
		}
	}
	committed, err := r.sess.End(ctx, kgo.TransactionEndTry(commit))
	pending := r.pending
	r.pending = ReplayResult{Histogram: map[string]int{}}
	reached := r.reached
	r.reached = map[int32]int64{}
	if err != nil || guardErr != nil {
		return fmt.Errorf("end replay transaction: %w", errors.Join(guardErr, err))
	}
	if !committed {
		// The session rewinds to the committed offsets: partitions finished in this
		// transaction are to be read again.
		for p, end := range reached {
			r.until[p] = end
		}
		if commit {
			return errTxnAborted
		}
		return nil
	}
	r.res.Replayed += pending.Replayed
	r.res.Parked += pending.Parked
	for k, v := range pending.Histogram {
		r.res.Histogram[k] += v
	}
	return nil
}

// count adds one replayed or parked letter to the result.
func (res *ReplayResult) count(action string, l Letter) {
	res.Histogram[fmt.Sprintf("%s %s %s/%s", action, l.Context.SourceTopic, l.Context.Stage, l.Context.Class)]++
	if action == "park" {
		res.Parked++
	} else {
		res.Replayed++
	}
}

// pendingRange returns, for each partition of topic with records at or after from, its
// end offset now.
func pendingRange(ctx context.Context, adm *kadm.Client, topic string, from map[int32]int64) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	until := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if start, ok := from[o.Partition]; ok && start < o.Offset {
			until[o.Partition] = o.Offset
		}
	})
	return until, nil
}

// route decides between replay and park and builds the record to produce.
func route(l Letter, o ReplayOptions, parked string) (string, *kgo.Record) {
	rec := l.Record
	count := 0
	for _, h := range rec.Headers {
		if h.Key == schemas.DLQReplayCount {
			count, _ = strconv.Atoi(string(h.Value))
		}
	}
	if count >= o.MaxReplays {
		// Parked as is, context and all, so it can still be inspected.
		return "park", &kgo.Record{Topic: parked, Key: rec.Key, Value: rec.Value, Headers: rec.Headers, Timestamp: rec.Timestamp}
	}
	headers := deadletter.Strip(rec.Headers)
	kept := headers[:0]
	for _, h := range headers {
		if h.Key != schemas.DLQReplayCount {
			kept = append(kept, h)
		}
	}
	kept = append(kept, kgo.RecordHeader{Key: schemas.DLQReplayCount, Value: []byte(strconv.Itoa(count + 1))})
	to := o.To
	if to == "" {
		to = l.Context.SourceTopic
	}
	return "replay", &kgo.Record{Topic: to, Key: rec.Key, Value: rec.Value, Headers: kept, Timestamp: rec.Timestamp}
}

// coordinatorWait bounds how long startOffsets waits for the group coordinator.
const coordinatorWait = 30 * time.Second

// startOffsets returns where the replay group left off on topic, or the log start.
func startOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	// A cluster that has just started, or whose group coordinator is moving, answers
	// COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS for a while: wait that
	// out, as the consumer group itself would, instead of failing the replay.
	for wait := time.Now().Add(coordinatorWait); err != nil && kerr.IsRetriable(err) && time.Now().Before(wait); {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("offsets of replay group %s: %w", group, errors.Join(err, ctx.Err()))
		case <-time.After(250 * time.Millisecond):
		}
		committed, err = adm.FetchOffsets(ctx, group)
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = kadm.OffsetResponses{}, nil // a first replay: no progress yet
	}
	if err != nil {
		return nil, fmt.Errorf("offsets of replay group %s: %w", group, err)
	}
	from := map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		from[o.Partition] = o.Offset
		if c, ok := committed.Lookup(topic, o.Partition); ok && c.Err == nil && c.At > o.Offset {
			from[o.Partition] = c.At
		}
	})
	return from, nil
}
