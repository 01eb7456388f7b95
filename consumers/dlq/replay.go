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
// o.MaxReplays times is parked in ParkedTopic(t) instead. Progress is committed to the
// replay's group after each record, so an interrupted replay resumes where it stopped;
// a crash between a republish and its commit republishes that one record again, which
// dedupe downstream drops as an exact repeat.
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
		o.Group = fmt.Sprintf("fhirstream-dlq-replay-%016x", h.Sum64())
	}
	res := ReplayResult{Group: o.Group, Histogram: map[string]int{}}
	cl, err := cfg.NewClient(kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return res, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := t.DLQ()
	parked := ParkedTopic(t)
	if !o.DryRun {
		spec := kafkaclient.TopicSpec{Name: parked, Partitions: 1, ReplicationFactor: -1,
			Configs: map[string]string{"cleanup.policy": "delete", "max.message.bytes": strconv.Itoa(int(cfg.MaxRecordBytes))}}
		if _, err := kafkaclient.EnsureTopics(ctx, adm, []kafkaclient.TopicSpec{spec}); err != nil {
			return res, err
		}
	}
	from, err := startOffsets(ctx, adm, o.Group, topic)
	if err != nil {
		return res, err
	}
	var limiter *time.Ticker
	if o.Rate > 0 {
		limiter = time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer limiter.Stop()
	}
	errStop := errors.New("max reached")
	err = readRange(ctx, cfg, adm, topic, from, func(rec *kgo.Record) error {
		l := letterOf(rec)
		if l.HasContext && o.Filter.Match(l.Context, rec.Key) {
			if o.Max > 0 && res.Replayed+res.Parked >= o.Max {
				return errStop
			}
			action, out := route(l, o, parked)
			res.Histogram[fmt.Sprintf("%s %s %s/%s", action, l.Context.SourceTopic, l.Context.Stage, l.Context.Class)]++
			if action == "park" {
				res.Parked++
			} else {
				res.Replayed++
			}
			if o.DryRun {
				return nil
			}
			if limiter != nil {
				select {
				case <-limiter.C:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := cl.ProduceSync(ctx, out).FirstErr(); err != nil {
				return fmt.Errorf("republish %s/%d@%d to %s: %w", rec.Topic, rec.Partition, rec.Offset, out.Topic, err)
			}
		} else if o.DryRun {
			return nil
		}
		// Records the filter skips are committed past too: they belong to another
		// replay, which has its own group.
		return commit(ctx, adm, o.Group, rec)
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return res, err
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

// startOffsets returns where the replay group left off on topic, or the log start.
func startOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
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

func commit(ctx context.Context, adm *kadm.Client, group string, rec *kgo.Record) error {
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: rec.Topic, Partition: rec.Partition, At: rec.Offset + 1, LeaderEpoch: -1})
	resp, err := adm.CommitOffsets(ctx, group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("commit replay progress to %s: %w", group, err)
	}
	return nil
}
