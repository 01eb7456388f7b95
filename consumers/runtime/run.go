package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// tp is an input topic partition.
type tp struct {
	topic     string
	partition int32
}

// runner is one Run of a stage.
type runner struct {
	def  stage.Definition
	opts Options
	cfg  kafkaclient.Config
	proc stage.Processor

	sess *kgo.GroupTransactSession
	adm  *kadm.Client
	// declared holds the node's outputs, checked on every Emit.
	declared *declaredOutputs
	// drain tracks progress against the end offsets at assignment (Options.Drain).
	drain *drainer
	// newTopics holds a batch that first writes to a topic until the session's client
	// has published the topic's partitions (see kafkaclient.NewTopicGuard); one per
	// session, as it tracks what that client knows.
	newTopics *kafkaclient.NewTopicGuard

	changelog      string // "" for a stateless stage
	changelogParts int32

	mu       sync.Mutex
	stores   map[tp]stage.Store
	assigned map[tp]bool // partitions this instance owns, restored together on first use
	instance string      // generated instance id, when Options.InstanceID is empty
	revoked  map[tp]bool // revoked or lost since the current batch began
	joined   atomic.Bool

	deniedMu sync.Mutex
	denied   error // the first request refused for lack of an ACL (denied.go)

	topicMu    sync.Mutex       // guards topicParts and known: partitions are processed concurrently
	topicParts map[string]int32 // partition counts of input topics, for created outputs
	known      map[string]bool  // output topics known to exist
}

// Run runs the stage def against the cluster in cfg until ctx ends, then finishes or
// aborts the current batch (within Options.ShutdownTimeout), leaves the group and
// returns nil. It returns an error when the stage cannot start or when the transactional
// producer is left in a state it cannot continue from; the caller should exit then (a
// restart resumes from the last committed batch).
func Run(ctx context.Context, cfg kafkaclient.Config, def stage.Definition, opts Options) error {
	if err := def.Validate(); err != nil {
		return err
	}
	opts.defaults()
	proc, err := def.NewProcessor()
	if err != nil {
		return fmt.Errorf("stage %s: %w", def.Name(), err)
	}
	// A record that crashes the stage is dead-lettered, not allowed to crash every
	// instance that reads it and stall its partition.
	recoverPanic := stage.Recover(func(in *stage.Record, v any, stack []byte) {
		opts.Logger.Error("stage panicked; record dead-lettered", "stage", def.Name(),
			"topic", in.Topic, "partition", in.Partition, "offset", in.Offset, "panic", fmt.Sprint(v), "stack", string(stack))
	})
	proc = stage.Chain(proc, append([]stage.Middleware{recoverPanic}, opts.Middleware...)...)
	r := &runner{def: def, opts: opts, cfg: cfg, proc: proc, declared: &declaredOutputs{node: def.Node},
		stores: map[tp]stage.Store{}, revoked: map[tp]bool{}, assigned: map[tp]bool{},
		topicParts: map[string]int32{}, known: map[string]bool{}}
	if opts.Drain {
		r.drain = newDrainer()
	}
	admCl, err := cfg.NewClient()
	if err != nil {
		return fmt.Errorf("stage %s: %w", def.Name(), err)
	}
	defer admCl.Close()
	r.adm = kadm.NewClient(admCl)
	if err := r.ensureFixedTopics(ctx); err != nil {
		return fmt.Errorf("stage %s: %w", def.Name(), err)
	}
	for _, in := range def.Node.Inputs {
		if err := kafkaclient.CheckInputsVisible(ctx, r.adm, in.Pattern); err != nil {
			return fmt.Errorf("stage %s: %w", def.Name(), err)
		}
	}
	if err := r.startSession(); err != nil {
		return fmt.Errorf("stage %s: %w", def.Name(), err)
	}
	if opts.Ready != nil {
		name := "stage " + def.Name()
		opts.Ready.Set(name, func() error {
			if !r.joined.Load() {
				return errors.New("consumer group " + def.Node.Group + " not joined")
			}
			return nil
		})
		defer opts.Ready.Remove(name)
	}
	opts.Logger.Info("stage starting", "stage", def.Name(), "group", def.Node.Group, "input", r.inputDesc(), "state", def.Changelog())
	failures, backoff := 0, opts.RetryBackoff
	for {
		var committed bool
		err = r.loop(ctx, &committed)
		// Close leaves the group, so the partitions move to the other instances at once
		// instead of after a session timeout. (A static member, one with an InstanceID,
		// keeps its membership until the session times out: it is expected back.)
		r.sess.Close()
		r.forgetPartitions()
		if err == nil || ctx.Err() != nil || !errors.Is(err, errSession) {
			break
		}
		// The transactional session broke (typically the broker went away mid-commit).
		// A new session with the same transactional id fences the old producer, so its
		// open transaction is aborted and the batch is read again from the committed
		// offsets: nothing is lost or repeated. A session that keeps breaking without
		// committing anything is given up, for the process supervisor to see.
		if committed {
			failures, backoff = 0, opts.RetryBackoff
		}
		if failures++; failures > maxSessionRestarts {
			err = fmt.Errorf("%w (the session failed %d times in a row)", err, failures)
			break
		}
		mSessionRestarts.WithLabelValues(def.Name()).Inc()
		opts.Logger.Warn("transactional session failed; starting a new one", "stage", def.Name(), "err", err, "after", backoff)
		if !sleep(ctx, backoff) {
			err = nil
			break
		}
		backoff = min(2*backoff, opts.MaxRetryBackoff)
		if err = r.startSession(); err != nil {
			err = fmt.Errorf("stage %s: %w", def.Name(), err)
			break
		}
	}
	opts.Logger.Info("stage stopped", "stage", def.Name())
	return err
}

// errSession marks errors after which the transactional session cannot go on: Begin or
// End failed. Run then starts a new session, up to maxSessionRestarts times in a row.
var errSession = errors.New("transactional session failed")

// maxSessionRestarts bounds consecutive session restarts without a committed batch;
// with the doubling backoff (up to MaxRetryBackoff) they span about half a minute,
// enough for a broker restart.
const maxSessionRestarts = 8

// forgetPartitions drops every partition's store and assignment when a session ends:
// the revoke callbacks may not have run if the broker was unreachable.
func (r *runner) forgetPartitions() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.assigned {
		r.revoked[k] = true
	}
	clear(r.stores)
	clear(r.assigned)
	r.joined.Store(false)
}

func (r *runner) inputDesc() string {
	names := make([]string, len(r.def.Node.Inputs))
	for i, in := range r.def.Node.Inputs {
		names[i] = in.Name
	}
	return strings.Join(names, ", ")
}

// inputTopics returns what the group consumes: literal topic names when every input is
// one topic, else one regular expression (franz-go ConsumeRegex), so that new resource
// types are consumed as their topics appear.
func (r *runner) inputTopics() (topics []string, regex bool) {
	for _, in := range r.def.Node.Inputs {
		if !in.Literal {
			return []string{r.def.Node.InputPattern()}, true
		}
		topics = append(topics, in.Prefix)
	}
	return topics, false
}

func (r *runner) startSession() error {
	base, err := r.cfg.Opts()
	if err != nil {
		return err
	}
	instance := r.opts.InstanceID
	var static []kgo.Opt
	if instance == "" {
		// One id for the whole Run: a session started anew after a failure must fence
		// the broken one's open transaction, which only the same transactional id does.
		if r.instance == "" {
			r.instance = defaultInstanceID()
		}
		instance = r.instance
	} else {
		// A stable instance is a static group member (KIP-345): restarted after a crash
		// it takes its partitions back at once, instead of the group waiting out the
		// dead member's session timeout.
		static = append(static, kgo.InstanceID(r.def.Node.Group+"-"+instance))
	}
	topics, regex := r.inputTopics()
	opts := append(base,
		kgo.ConsumerGroup(r.def.Node.Group),
		kgo.ConsumeTopics(topics...),
		kgo.TransactionalID(r.def.Node.TransactionalIDPrefix+instance),
		kgo.TransactionTimeout(r.opts.TransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are delivered (and skipped by the batch) so that the
		// committed offset moves past a partition's trailing marker: a caught-up stage
		// then has a lag of 0, not 1 per partition, which is what autoscaling on lag,
		// alerts and "drained" checks read.
		kgo.KeepControlRecords(),
		// Stable offset fetches (KIP-447), which make a new owner wait for the previous
		// owner's open transaction, are always on in this franz-go version.
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMaxAge(r.opts.TopicRefresh),
		// A first produce to an output topic waits for its metadata, and franz-go
		// throttles refreshes to one per MetadataMinAge (default 5s): with several new
		// output topics in a batch, that batch would stall for seconds. Not lower than
		// a second, though: with a topic pattern every refresh reads the metadata of
		// every topic in the cluster, and on a cluster with topics coming and going a
		// refresh that sees one still loading triggers the next.
		kgo.MetadataMinAge(min(r.opts.TopicRefresh, time.Second)),
		kgo.RecordPartitioner(changelogPartitioner{changelog: r.changelog}),
		// Room to buffer a whole batch's produces: its outputs, and as many changelog
		// records for a stateful stage. At franz-go's default of 10000, a batch of
		// 20000 inputs waits in Produce for broker round trips instead of processing on
		// while earlier records are sent; a stateful stage, producing twice as many
		// records, waited most. The records are the batch's, which is in memory anyway.
		kgo.MaxBufferedRecords(max(10000, 3*r.opts.MaxPollRecords)),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.assignPartitions(m) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.dropPartitions(m) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.dropPartitions(m) }),
	)
	if regex {
		opts = append(opts, kgo.ConsumeRegex())
	}
	opts = append(opts, static...)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("transactional consumer for group %s: %w", r.def.Node.Group, err)
	}
	r.sess = sess
	r.newTopics = &kafkaclient.NewTopicGuard{}
	return nil
}

func defaultInstanceID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// assignPartitions notes newly assigned partitions.
func (r *runner) assignPartitions(m map[string][]int32) {
	if r.drain != nil {
		r.drain.assign(m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for topic, parts := range m {
		for _, p := range parts {
			r.assigned[tp{topic, p}] = true
		}
	}
	r.joined.Store(true)
}

// dropPartitions forgets the stores of partitions this instance no longer owns; they are
// restored again from the changelog if the partitions come back.
func (r *runner) dropPartitions(m map[string][]int32) {
	if r.drain != nil {
		r.drain.revoke(m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for topic, parts := range m {
		for _, p := range parts {
			k := tp{topic, p}
			delete(r.stores, k)
			delete(r.assigned, k)
			r.revoked[k] = true
			mLag.DeleteLabelValues(r.def.Name(), topic, fmt.Sprint(p))
		}
	}
}

// loop polls and processes batches until ctx ends.
func (r *runner) loop(ctx context.Context, committed *bool) error {
	// work is the context of processing and producing: it outlives ctx by the
	// shutdown timeout, so a batch under way when SIGTERM arrives can still commit.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.opts.ShutdownTimeout, cancelWork)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stop()

	backoff := r.opts.RetryBackoff
	for {
		limit := r.opts.MaxPollRecords
		if r.opts.NextBatch != nil {
			if limit = min(limit, r.opts.NextBatch()); limit <= 0 {
				return nil
			}
		}
		pollCtx, cancelPoll := ctx, context.CancelFunc(func() {})
		if r.drain != nil {
			done, err := r.drain.done(ctx, r.adm, r.def.Node.Group)
			if err != nil {
				r.opts.Logger.Warn("drain: cannot tell how far the partitions are read yet", "stage", r.def.Name(), "err", err)
			}
			if done {
				return nil
			}
			// Poll in short turns, so that a drained partition set is noticed even when
			// no new record arrives.
			pollCtx, cancelPoll = context.WithTimeout(ctx, drainPollInterval)
		}
		fetches := r.sess.PollRecords(pollCtx, limit)
		cancelPoll()
		if fetches.IsClientClosed() || ctx.Err() != nil {
			// Records polled but not processed are simply not committed: the next
			// owner of their partitions reads them again.
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) {
				return // a draining poll's turn ended
			}
			if !r.noteDenied(kafkaclient.ConsumeDenied(err, topic, r.def.Node.Group)) {
				r.opts.Logger.Warn("fetch error", "stage", r.def.Name(), "topic", topic, "partition", p, "err", err)
			}
		})
		if err := r.deniedErr(); err != nil {
			return err
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		fetches = r.fill(ctx, fetches, limit)
		r.observeLag(fetches)
		r.joined.Store(true)
		reason, err := r.batch(ctx, work, fetches)
		if err != nil {
			return err
		}
		if err := r.deniedErr(); err != nil {
			return err
		}
		if reason == "" {
			*committed = true
			if r.drain != nil {
				r.drain.committed(fetches)
			}
		}
		if reason == "transient" || reason == "restore" {
			// The batch's records come back with the next poll; give the failing
			// dependency time before trying them again.
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, r.opts.MaxRetryBackoff)
		} else {
			backoff = r.opts.RetryBackoff
		}
	}
}

// drainPollInterval is how long a draining run polls before it checks again whether it
// has read everything.
const drainPollInterval = time.Second

// fill polls for up to BatchLinger more, until the batch holds limit records.
func (r *runner) fill(ctx context.Context, fetches kgo.Fetches, limit int) kgo.Fetches {
	if r.opts.BatchLinger <= 0 {
		return fetches
	}
	n := fetches.NumRecords()
	lctx, cancel := context.WithTimeout(ctx, r.opts.BatchLinger)
	defer cancel()
	for n < limit && lctx.Err() == nil {
		more := r.sess.PollRecords(lctx, limit-n)
		if more.IsClientClosed() {
			break
		}
		// Errors of the linger context are not fetch errors; others are logged with
		// the next poll's.
		if m := more.NumRecords(); m > 0 {
			fetches = append(fetches, more...)
			n += m
		}
	}
	return fetches
}

func (r *runner) observeLag(fetches kgo.Fetches) {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 || p.HighWatermark < 0 {
			return
		}
		last := p.Records[len(p.Records)-1].Offset
		mLag.WithLabelValues(r.def.Name(), p.Topic, fmt.Sprint(p.Partition)).Set(float64(max(0, p.HighWatermark-last-1)))
	})
}

// sleep waits d or until ctx ends, reporting whether it waited the full time.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
