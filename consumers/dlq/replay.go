package dlq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
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
	// To overrides every record's destination (default: its source topic). It must be a
	// topic dlq replay may write (its node of the topology): a topic of the pipeline.
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
	// Deidentify says the pipeline runs the deid stage, whose topics replay may then
	// write to.
	Deidentify bool
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
// o.MaxReplays times, or one whose source topic is not a topic of this pipeline, is
// parked in ParkedTopic(t) instead, context and all.
//
// A replay is a stage: it runs on the stage runtime as the dlq-replay node of the
// topology, in consumer group o.Group, so it is exactly once as every stage is: the
// republished and parked records commit in one Kafka transaction with the group's
// offsets past them, an interrupted replay leaves nothing of its open transaction
// visible to read_committed readers, and the next run of the same replay resumes after
// the last committed batch. It drains: it reads from where its group left off up to the
// end offsets the topic had when it began (Options.Drain), and with o.Max it stops after
// exactly that many committed records. A dry run only reads and counts.
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
	node := t.Topology(schemas.TopologyOptions{Deidentify: o.Deidentify}).MustNode(schemas.NodeDLQReplay)
	if o.To != "" && !node.Writes(o.To) {
		return res, fmt.Errorf("--to %s: not a topic of this pipeline that dlq replay may write (see 'fhirstream topology')", o.To)
	}
	p := &replayer{o: o, node: node, parked: ParkedTopic(t), counts: newReplayCounts()}
	if o.DryRun {
		from, err := runtime.CommittedOffsets(ctx, cfg, o.Group, t.DLQ())
		if err != nil {
			return res, err
		}
		err = scanFrom(ctx, cfg, t.DLQ(), from, o.Filter, func(l Letter) error {
			if o.Max > 0 && res.Replayed+res.Parked >= o.Max {
				return errStop
			}
			action, _ := p.route(l)
			res.count(action, l.Context)
			return nil
		})
		if errors.Is(err, errStop) {
			err = nil
		}
		return res, err
	}
	if o.Rate > 0 {
		p.limiter = time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer p.limiter.Stop()
	}
	def := stage.Definition{Node: node, Topics: t, NewProcessor: func() (stage.Processor, error) { return p, nil }}.WithGroup(o.Group)
	ropts := runtime.Options{
		Logger:             o.Logger,
		Drain:              true,
		MaxPollRecords:     replayBatch(o.Rate),
		TransactionTimeout: txnTimeout(o.Rate),
		// A transient error (a rate wait cut short) aborts the batch at once: it is
		// read again, by this run or the next.
		MaxAttempts: 1,
	}
	if o.Max > 0 {
		ropts.NextBatch = func() int { return o.Max - p.counts.total() }
	}
	err := runtime.Run(ctx, cfg, def, ropts)
	p.counts.addTo(&res)
	return res, err
}

// maxReplayInterval is the longest wait between two records that --rate may ask for:
// a transaction waits one interval per record of its batch, and brokers cap
// transaction timeouts at 15 minutes (transaction.max.timeout.ms).
const maxReplayInterval = 5 * time.Minute

// replayBatch bounds one replay transaction: its records are invisible until it commits,
// and its offsets are the replay's saved progress. Rate-limited, a batch holds about ten
// seconds of records.
func replayBatch(rate float64) int {
	const unlimited = 500
	if rate <= 0 {
		return unlimited
	}
	return max(1, min(unlimited, int(10*rate)))
}

// txnTimeout is the replay's transaction timeout: room for a batch at the rate.
func txnTimeout(rate float64) time.Duration {
	d := time.Minute
	if rate > 0 {
		d = max(d, time.Duration(float64(replayBatch(rate))*float64(time.Second)/rate)+30*time.Second)
	}
	return d
}

// testHookBeforeEmit, when set by a test, is called before each record is emitted; an
// error fails that record transiently, which aborts its batch, as a crash would.
var testHookBeforeEmit func() error

var errStop = errors.New("max reached")

// replayer is the replay's stage logic.
type replayer struct {
	o       ReplayOptions
	node    schemas.Node
	parked  string
	limiter *time.Ticker
	counts  *replayCounts
}

// Process republishes or parks a matching dead letter; others are committed past (they
// belong to another replay, which has its own group).
func (p *replayer) Process(ctx context.Context, in *stage.Record, _ stage.Store, out stage.Emitter) error {
	l := letterOf(in)
	if !l.HasContext || !p.o.Filter.Match(l.Context, in.Key) {
		return nil
	}
	action, rec := p.route(l)
	if p.limiter != nil {
		select {
		case <-p.limiter.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if testHookBeforeEmit != nil {
		if err := testHookBeforeEmit(); err != nil {
			return err
		}
	}
	out.Emit(rec)
	stage.CountCommitted(ctx, p.counts.vec, action, l.Context.SourceTopic, l.Context.Stage, l.Context.Class)
	return nil
}

// route decides between replay and park and builds the record to produce.
func (p *replayer) route(l Letter) (string, stage.Record) {
	rec := l.Record
	count := 0
	for _, h := range rec.Headers {
		if h.Key == schemas.DLQReplayCount {
			count, _ = strconv.Atoi(string(h.Value))
		}
	}
	to := p.o.To
	if to == "" {
		to = l.Context.SourceTopic
	}
	if count >= p.o.MaxReplays || !p.node.Writes(to) {
		// Parked as is, context and all, so it can still be inspected: a repeat
		// offender, or a letter whose source is not a topic of this pipeline.
		return "park", stage.Record{Topic: p.parked, Key: rec.Key, Value: rec.Value, Headers: rec.Headers, Timestamp: rec.Timestamp}
	}
	headers := deadletter.Strip(rec.Headers)
	kept := headers[:0]
	for _, h := range headers {
		if h.Key != schemas.DLQReplayCount {
			kept = append(kept, h)
		}
	}
	kept = append(kept, stage.Header{Key: schemas.DLQReplayCount, Value: []byte(strconv.Itoa(count + 1))})
	return "replay", stage.Record{Topic: to, Key: rec.Key, Value: rec.Value, Headers: kept, Timestamp: rec.Timestamp}
}

// count adds one replayed or parked letter to the result.
func (res *ReplayResult) count(action string, c deadletter.Context) {
	res.add(action, c.SourceTopic, c.Stage, c.Class, 1)
}

func (res *ReplayResult) add(action, source, stageName, class string, n int) {
	res.Histogram[fmt.Sprintf("%s %s %s/%s", action, source, stageName, class)] += n
	if action == "park" {
		res.Parked += n
	} else {
		res.Replayed += n
	}
}

// replayCounts are the replay's committed counts: a counter vector the runtime adds to
// only when a batch commits (stage.CountCommitted), registered nowhere but here.
type replayCounts struct {
	vec *prometheus.CounterVec
	reg *prometheus.Registry
}

func newReplayCounts() *replayCounts {
	c := &replayCounts{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replayed", Help: "committed replay actions"},
			[]string{"action", "source", "stage", "class"}),
		reg: prometheus.NewRegistry(),
	}
	c.reg.MustRegister(c.vec)
	return c
}

func (c *replayCounts) each(fn func(labels map[string]string, n int)) {
	families, _ := c.reg.Gather()
	for _, f := range families {
		for _, m := range f.GetMetric() {
			fn(labelMap(m), int(m.GetCounter().GetValue()))
		}
	}
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func (c *replayCounts) total() int {
	n := 0
	c.each(func(_ map[string]string, v int) { n += v })
	return n
}

func (c *replayCounts) addTo(res *ReplayResult) {
	c.each(func(l map[string]string, n int) { res.add(l["action"], l["source"], l["stage"], l["class"], n) })
}
