package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// partWork is one input partition's share of a batch, processed in offset order by one
// worker. Its counts are published only if the batch commits.
type partWork struct {
	key  tp
	recs []*kgo.Record
	bs   *batchStore // nil for a stateless stage

	// seq is set when this is one run of a partition's records (splitRuns): its outputs
	// are produced in turn with the partition's other runs.
	seq *partSeq
	// Of a run: its records' results and outputs, kept until its turn to produce, and
	// whether it has been processed (under seq.mu).
	results   []result
	outputs   []*kgo.Record
	processed bool

	abort string // why this partition stopped the batch ("" if it did not)
	n     int    // input records processed
	out   map[string]int
	dl    map[string]int // by error class
	tally tally
}

// batch processes one poll batch in one transaction. It returns why the batch was
// aborted ("" when it committed), or an error when the session cannot continue.
func (r *runner) batch(ctx, work context.Context, fetches kgo.Fetches) (abort string, err error) {
	start := time.Now()
	r.mu.Lock()
	clear(r.revoked)
	r.mu.Unlock()

	if err := r.sess.Begin(); err != nil {
		if kafkaclient.IsDenied(err) {
			return "", fmt.Errorf("stage %s: begin transaction: %w", r.def.Name(), r.transactionDenied(err))
		}
		return "", fmt.Errorf("%w: begin transaction: %w", errSession, err)
	}
	promise := kgo.AbortingFirstErrPromise(r.sess.Client())
	batches := map[tp]*batchStore{}

	// The restore runs inside the transaction only so that an abort rewinds the
	// polled offsets; the broker's transaction timer starts at the first produce.
	if r.changelog != "" {
		if err := r.restoreMissing(work, fetches); err != nil {
			if !r.noteDenied(kafkaclient.Denied(err, "Read", "topic", r.changelog)) {
				r.opts.Logger.Warn("state restore failed; batch aborted", "stage", r.def.Name(), "err", err)
			}
			abort = "restore"
		}
	}

	var parts []*partWork
	if abort == "" {
		parts, abort = r.split(fetches, batches)
	}
	if abort == "" {
		if r.def.ConcurrentPartitions && r.def.ConcurrentRecords && r.changelog == "" {
			parts = splitRuns(parts, r.opts.PartitionWorkers)
		}
		abort = r.processParts(ctx, work, parts, promise)
	}
	processed := time.Since(start)

	// Ending the batch waits on the broker; bound it. Past the transaction timeout the
	// broker has aborted the transaction anyway, and a wait that outlasts it (a broker
	// that does not come back, a group that never rejoins) would stall the stage with
	// no error: it becomes a session failure instead, and the new session fences this
	// producer and restores state from the changelog.
	// Flushing and ending are bounded by the transaction timeout, after which the
	// broker aborts the transaction, plus time for the abort to be seen.
	ectx, cancelEnd := context.WithTimeout(work, r.opts.TransactionTimeout+30*time.Second)
	defer cancelEnd()
	var committed bool
	var flushed time.Duration
	if abort != "" {
		committed, err = r.sess.End(ectx, kgo.TryAbort)
	} else {
		// Flush sends the batch's last records at once instead of after the producer's
		// linger; the promise then has every produce result.
		perr := r.sess.Client().Flush(ectx)
		if err := promise.Err(); err != nil {
			perr = err
		}
		if perr == nil {
			perr = r.newTopics.Await(ectx, r.sess.Client())
		}
		flushed = time.Since(start)
		if perr != nil {
			abort = "produce"
			r.opts.Logger.Warn("producing failed; batch aborted", "stage", r.def.Name(), "err", perr)
		}
		committed, err = r.sess.End(ectx, perr == nil)
		if !committed && err == nil && abort == "" {
			abort = "rebalance"
			// Reported aborted: by the group, or a commit franz-go could not confirm.
			var verr error
			if committed, verr = r.committedAfterAll(ectx, fetches); verr != nil || committed {
				// Whatever the session now believes, its offsets and this instance's
				// state are not the broker's: a new session reads both from the broker.
				err = cmp.Or(verr, errCommittedUnreported)
				r.opts.Logger.Warn("the batch's outcome differs from what the client reported, or is unknown; restarting the session",
					"stage", r.def.Name(), "committed", committed, "err", err)
			}
		}
	}
	r.afterEnd(committed, batches)
	if err != nil {
		mAborts.WithLabelValues(r.def.Name(), "end-error").Inc()
		if kafkaclient.IsDenied(err) {
			return "end-error", fmt.Errorf("stage %s: end transaction: %w", r.def.Name(), r.transactionDenied(err))
		}
		return "end-error", fmt.Errorf("%w: end transaction: %w", errSession, err)
	}
	mBatchSeconds.WithLabelValues(r.def.Name()).Observe(time.Since(start).Seconds())
	if !committed {
		mAborts.WithLabelValues(r.def.Name(), abort).Inc()
		r.opts.Logger.Info("batch aborted", "stage", r.def.Name(), "reason", abort, "records", fetches.NumRecords())
		return abort, nil
	}
	n := 0
	for _, p := range parts {
		n += p.n
		mRecordsIn.WithLabelValues(r.def.Name(), p.key.topic).Add(float64(p.n))
		for t, c := range p.out {
			mRecordsOut.WithLabelValues(r.def.Name(), t).Add(float64(c))
		}
		for class, c := range p.dl {
			mDeadLettered.WithLabelValues(r.def.Name(), p.key.topic, class).Add(float64(c))
		}
		p.tally.publish()
	}
	mBatchRecords.WithLabelValues(r.def.Name()).Observe(float64(n))
	r.opts.Logger.Debug("batch committed", "stage", r.def.Name(), "records", n, "partitions", len(parts),
		"took", time.Since(start), "processed_at", processed, "flushed_at", flushed)
	return "", nil
}

// split groups the batch's data records by input partition, in offset order (a
// lingering batch may hold several fetches of one partition), and gives each partition
// of a stateful stage its batch store.
func (r *runner) split(fetches kgo.Fetches, batches map[tp]*batchStore) ([]*partWork, string) {
	var parts []*partWork
	byKey := map[tp]*partWork{}
	abort := ""
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if abort != "" || len(p.Records) == 0 {
			return
		}
		key := tp{p.Topic, p.Partition}
		pw := byKey[key]
		if pw == nil {
			pw = &partWork{key: key}
			if r.changelog != "" {
				r.mu.Lock()
				base := r.stores[key]
				r.mu.Unlock()
				if base == nil {
					// Revoked between restore and now: the transaction will abort.
					abort = "rebalance"
					return
				}
				pw.bs = newBatchStore(base)
				batches[key] = pw.bs
			}
			byKey[key] = pw
			parts = append(parts, pw)
		}
		for _, rec := range p.Records {
			if !rec.Attrs.IsControl() { // a transaction marker is committed past, never processed
				pw.recs = append(pw.recs, rec)
			}
		}
	})
	return parts, abort
}

// processParts processes every partition of the batch, several at once when the stage
// allows it (Definition.ConcurrentPartitions), and returns why the batch must abort
// ("" if it need not). The first partition to fail stops the others.
func (r *runner) processParts(ctx, work context.Context, parts []*partWork, promise *kgo.FirstErrPromise) string {
	var stop atomic.Bool
	workers := 1
	if r.def.ConcurrentPartitions {
		workers = min(len(parts), r.opts.PartitionWorkers)
	}
	if workers <= 1 {
		for _, p := range parts {
			if r.processPart(ctx, work, p, promise, &stop); p.abort != "" {
				return p.abort
			}
		}
		return ""
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(parts) || stop.Load() {
					return
				}
				r.processPart(ctx, work, parts[i], promise, &stop)
			}
		})
	}
	wg.Wait()
	for _, p := range parts {
		if p.abort != "" {
			return p.abort
		}
	}
	return ""
}

// processPart processes one partition's records in order, producing outputs, dead
// letters and changelog records into the open transaction. A run of a partition's
// records (p.seq set) is processed first and produced when every earlier run of the
// partition has been (processRun).
func (r *runner) processPart(ctx, work context.Context, p *partWork, promise *kgo.FirstErrPromise, stop *atomic.Bool) {
	if p.seq != nil {
		r.processRun(ctx, work, p, promise, stop)
		return
	}
	wctx := stage.WithCommitCounter(work, &p.tally)
	if p.bs != nil {
		p.bs.reserve(len(p.recs)) // most stateful stages change state once per record
	}
	w := worker{em: emitter{declared: r.declared}, rs: recordStore{batch: p.bs, topic: p.key.topic}, tally: &p.tally}
	now := time.Now() // the timestamp of the partition's changelog records
	var lastOutput string
	changelogNoted := false
	for _, rec := range p.recs {
		res, ok := r.processNext(ctx, wctx, p, rec, &w, stop)
		if !ok {
			return
		}
		if !r.emit(work, p, rec, res, promise, stop, &lastOutput) {
			return
		}
		if len(res.ops) > 0 && !changelogNoted {
			r.newTopics.Note(r.changelog)
			changelogNoted = true
		}
		for _, op := range res.ops {
			p.bs.apply(op)
			r.sess.Produce(work, p.bs.changelogRecord(r.changelog, rec.Partition, op, now), r.promised(promise))
		}
	}
}

// processNext processes rec, keeping or dropping its counts; ok is false when the batch
// stops (p.abort says why).
func (r *runner) processNext(ctx, wctx context.Context, p *partWork, rec *kgo.Record, w *worker, stop *atomic.Bool) (res result, ok bool) {
	if stop.Load() {
		if p.abort == "" {
			p.abort = "stopped"
		}
		return res, false
	}
	res, err := r.processOne(ctx, wctx, rec, w)
	if err != nil {
		p.tally.drop()
		if ctx.Err() != nil {
			p.fail("shutdown", stop)
		} else {
			p.fail("transient", stop)
			r.opts.Logger.Warn("transient error; batch aborted and will be retried", "stage", r.def.Name(),
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "attempts", res.attempts, "err", err)
		}
		return res, false
	}
	if res.rejection != nil {
		p.tally.drop()
	} else {
		p.tally.keep()
	}
	return res, true
}

func (p *partWork) fail(reason string, stop *atomic.Bool) {
	p.abort = reason
	stop.Store(true)
}

// emit produces the outputs of rec, or its dead letter, into the open transaction. It
// returns false when the batch stops (p.abort says why). lastOutput is the output topic
// known to exist most recently, kept from one record to the next of a partition: it
// skips ensureOutput's lookup.
func (r *runner) emit(work context.Context, p *partWork, rec *kgo.Record, res result, promise *kgo.FirstErrPromise, stop *atomic.Bool, lastOutput *string) bool {
	p.n++
	if res.rejection != nil {
		dctx := deadletter.Context{Stage: r.def.Name(), SourceTopic: rec.Topic, Partition: rec.Partition,
			Offset: rec.Offset, Class: res.rejection.Class, Path: res.rejection.Path,
			Message: res.rejection.Message, Attempts: res.attempts, Time: time.Now()}
		r.newTopics.Note(r.def.Topics.DLQ())
		r.sess.Produce(work, deadletter.Record(r.def.Topics.DLQ(), rec, dctx), r.promised(promise))
		if p.dl == nil {
			p.dl = map[string]int{}
		}
		p.dl[res.rejection.Class]++
		return true
	}
	for _, out := range res.outputs {
		if out.Topic != *lastOutput {
			if err := r.ensureOutput(work, out.Topic, rec.Topic); err != nil {
				if r.noteDenied(err) {
					p.fail("denied", stop)
					return false
				}
				r.opts.Logger.Warn("output topic unavailable; batch aborted", "stage", r.def.Name(), "topic", out.Topic, "err", err)
				p.fail("transient", stop)
				return false
			}
			*lastOutput = out.Topic
			r.newTopics.Note(out.Topic)
		}
		r.sess.Produce(work, out, r.promised(promise))
		if p.out == nil {
			p.out = map[string]int{}
		}
		p.out[out.Topic]++
	}
	return true
}

// afterEnd keeps the state changes of a committed batch or rolls back those of an
// aborted one, and forgets partitions that were revoked while it ran (a store restored
// for one of them may already be stale).
func (r *runner) afterEnd(committed bool, batches map[tp]*batchStore) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.revoked {
		delete(r.stores, k)
		delete(batches, k)
	}
	clear(r.revoked)
	for k, bs := range batches {
		switch {
		case r.stores[k] != bs.base:
			// Dropped (revoked, lost or restored anew): nothing reads it any more.
		case committed:
			bs.commit()
		default:
			bs.rollback()
		}
	}
}

// result is the outcome of processing one input. Its slices belong to the worker and
// are valid until its next record.
type result struct {
	outputs   []*kgo.Record
	ops       []stateOp
	rejection *stage.Rejection
	attempts  int
}

// worker holds what processOne reuses from one record to the next of a partition.
type worker struct {
	in    stage.Record
	hs    []stage.Header
	em    emitter
	rs    recordStore
	ns    noStore
	tally *tally // the partition's counts, of which a failed attempt's are dropped
}

// processOne runs the processor on rec, retrying transient errors with backoff. It
// returns an error only when retries are exhausted or the run is shutting down.
func (r *runner) processOne(ctx, work context.Context, rec *kgo.Record, w *worker) (result, error) {
	in := w.toStage(rec)
	backoff := r.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		w.em.reset(rec)
		var store stage.Store
		if w.rs.batch != nil {
			w.rs.ops = w.rs.ops[:0]
			store = &w.rs
		} else {
			w.ns.wrote = false
			store = &w.ns
		}
		err := r.proc.Process(work, in, store, &w.em)
		if err == nil {
			switch {
			case w.ns.wrote:
				err = stage.Reject(schemas.ClassStageBug, "", "stage %s wrote state but declares none", r.def.Name())
			case w.em.err != nil:
				err = w.em.err
			default:
				res := result{outputs: w.em.out, attempts: attempt}
				if w.rs.batch != nil {
					res.ops = w.rs.ops
				}
				return res, nil
			}
		}
		w.tally.drop()
		if rej, ok := stage.AsRejection(err); ok {
			return result{rejection: rej, attempts: attempt}, nil
		}
		if attempt >= r.opts.MaxAttempts {
			return result{attempts: attempt}, err
		}
		mRetries.WithLabelValues(r.def.Name()).Inc()
		if !sleep(ctx, backoff) {
			return result{attempts: attempt}, ctx.Err()
		}
		backoff = min(2*backoff, r.opts.MaxRetryBackoff)
	}
}

// toStage is the stage's view of rec. The Record and its header slice are the worker's,
// reused for its next record: a stage keeps neither beyond Process (it may keep the
// key, value and header bytes, which belong to rec).
func (w *worker) toStage(rec *kgo.Record) *stage.Record {
	w.hs = w.hs[:0]
	for _, h := range rec.Headers {
		w.hs = append(w.hs, stage.Header{Key: h.Key, Value: h.Value})
	}
	hs := w.hs
	if len(hs) == 0 {
		hs = nil
	}
	w.in = stage.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Key: rec.Key, Value: rec.Value, Headers: hs, Timestamp: rec.Timestamp}
	return &w.in
}

// emitter collects the outputs of one input.
type emitter struct {
	in  *kgo.Record
	out []*kgo.Record
	err error
	// declared says which topics the stage's node may write; lastDeclared is the topic
	// it allowed most recently, so that a stage writing one topic is checked once.
	declared     *declaredOutputs
	lastDeclared string
}

func (e *emitter) reset(in *kgo.Record) {
	clear(e.out)
	*e = emitter{in: in, out: e.out[:0], declared: e.declared, lastDeclared: e.lastDeclared}
}

var errNoTopic = errors.New("emitted a record without a topic")

// declaredOutputs answers whether a node declares a topic as an output, remembering the
// answer per topic (a pattern match per record would cost more than the record).
type declaredOutputs struct {
	node  schemas.Node
	known sync.Map // topic → bool
}

func (d *declaredOutputs) allows(topic string) bool {
	if ok, found := d.known.Load(topic); found {
		return ok.(bool)
	}
	ok := d.node.Writes(topic)
	d.known.Store(topic, ok)
	return ok
}

// Emit converts out to a Kafka record. An output without a timestamp inherits the
// input's, so event time flows through the pipeline.
func (e *emitter) Emit(out stage.Record) {
	if out.Topic == "" {
		e.err = &stage.Rejection{Class: schemas.ClassStageBug, Message: errNoTopic.Error()}
		return
	}
	if out.Topic != e.lastDeclared {
		if !e.declared.allows(out.Topic) {
			// Like goka's undeclared outputs: the graph in schemas.Topology is the one
			// operators, ACLs and subscribers rely on, so a stage may not widen it.
			e.err = &stage.Rejection{Class: schemas.ClassStageBug,
				Message: fmt.Sprintf("stage %s emitted to %s, which its node of the topology does not declare as an output", e.declared.node.Name, out.Topic)}
			return
		}
		e.lastDeclared = out.Topic
	}
	ts := out.Timestamp
	if ts.IsZero() {
		ts = e.in.Timestamp
	}
	var hs []kgo.RecordHeader
	if len(out.Headers) > 0 {
		hs = make([]kgo.RecordHeader, len(out.Headers))
		for i, h := range out.Headers {
			hs[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	e.out = append(e.out, &kgo.Record{Topic: out.Topic, Key: out.Key, Value: out.Value, Headers: hs, Timestamp: ts})
}
