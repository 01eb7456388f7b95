package runtime

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/deadletter"
)

// batchStats are counted during a batch and published only if it commits.
type batchStats struct {
	in, out map[string]int
	dl      map[[2]string]int // source topic, class
}

// batch processes one poll batch in one transaction. It returns why the batch was
// aborted ("" when it committed), or an error when the session cannot continue.
func (r *runner) batch(ctx, work context.Context, fetches kgo.Fetches) (abort string, err error) {
	start := time.Now()
	r.mu.Lock()
	clear(r.revoked)
	r.mu.Unlock()

	if err := r.sess.Begin(); err != nil {
		return "", fmt.Errorf("begin transaction: %w", err)
	}
	promise := kgo.AbortingFirstErrPromise(r.sess.Client())
	st := batchStats{in: map[string]int{}, out: map[string]int{}, dl: map[[2]string]int{}}
	batches := map[tp]*batchStore{}
	n := 0

	// The restore runs inside the transaction only so that an abort rewinds the
	// polled offsets; the broker's transaction timer starts at the first produce.
	if r.changelog != "" {
		if err := r.restoreMissing(work, fetches); err != nil {
			r.opts.Logger.Warn("state restore failed; batch aborted", "stage", r.def.Name, "err", err)
			abort = "restore"
		}
	}

	produce := func(rec *kgo.Record) { r.sess.Produce(work, rec, promise.Promise()) }
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if abort != "" || len(p.Records) == 0 {
			return
		}
		key := tp{p.Topic, p.Partition}
		var bs *batchStore
		if r.changelog != "" {
			r.mu.Lock()
			base := r.stores[key]
			r.mu.Unlock()
			if base == nil {
				// Revoked between restore and now: the transaction will abort.
				abort = "rebalance"
				return
			}
			// A lingering batch may hold several fetches of one partition: they share
			// one batch store.
			if bs = batches[key]; bs == nil || bs.base != base {
				bs = newBatchStore(base)
				batches[key] = bs
			}
		}
		for _, rec := range p.Records {
			if rec.Attrs.IsControl() {
				continue // a transaction marker: committed past, never processed
			}
			res, err := r.processOne(ctx, work, rec, bs)
			if err != nil {
				if ctx.Err() != nil {
					abort = "shutdown"
				} else {
					abort = "transient"
					r.opts.Logger.Warn("transient error; batch aborted and will be retried", "stage", r.def.Name,
						"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "attempts", res.attempts, "err", err)
				}
				return
			}
			n++
			st.in[rec.Topic]++
			if res.rejection != nil {
				dctx := deadletter.Context{Stage: r.def.Name, SourceTopic: rec.Topic, Partition: rec.Partition,
					Offset: rec.Offset, Class: res.rejection.Class, Path: res.rejection.Path,
					Message: res.rejection.Message, Attempts: res.attempts, Time: time.Now()}
				produce(deadletter.Record(r.def.Topics.DLQ(), rec, dctx))
				st.dl[[2]string{rec.Topic, res.rejection.Class}]++
				continue
			}
			for _, out := range res.outputs {
				if err := r.ensureOutput(work, out.Topic, rec.Topic); err != nil {
					r.opts.Logger.Warn("output topic unavailable; batch aborted", "stage", r.def.Name, "topic", out.Topic, "err", err)
					abort = "transient"
					return
				}
				produce(out)
				st.out[out.Topic]++
			}
			for _, op := range res.ops {
				bs.apply(op)
				cl := &kgo.Record{Topic: r.changelog, Partition: rec.Partition, Key: changelogKey(rec.Topic, op.key)}
				if !op.del {
					cl.Value = op.value
				}
				produce(cl)
			}
		}
	})

	var committed bool
	if abort != "" {
		committed, err = r.sess.End(work, kgo.TryAbort)
	} else {
		perr := promise.Err()
		if perr != nil {
			abort = "produce"
			r.opts.Logger.Warn("producing failed; batch aborted", "stage", r.def.Name, "err", perr)
		}
		committed, err = r.sess.End(work, perr == nil)
		if !committed && abort == "" {
			abort = "rebalance"
		}
	}
	r.afterEnd(committed, batches)
	if err != nil {
		mAborts.WithLabelValues(r.def.Name, "end-error").Inc()
		return "end-error", fmt.Errorf("end transaction: %w", err)
	}
	mBatchSeconds.WithLabelValues(r.def.Name).Observe(time.Since(start).Seconds())
	if !committed {
		mAborts.WithLabelValues(r.def.Name, abort).Inc()
		r.opts.Logger.Info("batch aborted", "stage", r.def.Name, "reason", abort, "records", fetches.NumRecords())
		return abort, nil
	}
	mBatchRecords.WithLabelValues(r.def.Name).Observe(float64(n))
	r.opts.Logger.Debug("batch committed", "stage", r.def.Name, "records", n, "took", time.Since(start))
	for t, c := range st.in {
		mRecordsIn.WithLabelValues(r.def.Name, t).Add(float64(c))
	}
	for t, c := range st.out {
		mRecordsOut.WithLabelValues(r.def.Name, t).Add(float64(c))
	}
	for k, c := range st.dl {
		mDeadLettered.WithLabelValues(r.def.Name, k[0], k[1]).Add(float64(c))
	}
	return "", nil
}

// afterEnd applies the state changes of a committed batch and forgets partitions that
// were revoked while it ran (a store restored for one of them may already be stale).
func (r *runner) afterEnd(committed bool, batches map[tp]*batchStore) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.revoked {
		delete(r.stores, k)
		delete(batches, k)
	}
	clear(r.revoked)
	if !committed {
		return
	}
	for k, bs := range batches {
		if r.stores[k] == bs.base {
			bs.commit()
		}
	}
}

// result is the outcome of processing one input.
type result struct {
	outputs   []*kgo.Record
	ops       []stateOp
	rejection *stage.Rejection
	attempts  int
}

// processOne runs the processor on rec, retrying transient errors with backoff. It
// returns an error only when retries are exhausted or the run is shutting down.
func (r *runner) processOne(ctx, work context.Context, rec *kgo.Record, bs *batchStore) (result, error) {
	in := toStage(rec)
	backoff := r.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		em := &emitter{in: rec}
		var store stage.Store
		var rs *recordStore
		var ns *noStore
		if bs != nil {
			rs = &recordStore{batch: bs}
			store = rs
		} else {
			ns = &noStore{}
			store = ns
		}
		err := r.safeProcess(work, in, store, em)
		if err == nil {
			switch {
			case ns != nil && ns.wrote:
				err = stage.Reject("stage-bug", "", "stage %s wrote state but declares none", r.def.Name)
			case em.err != nil:
				err = em.err
			default:
				res := result{outputs: em.out, attempts: attempt}
				if rs != nil {
					res.ops = rs.ops
				}
				return res, nil
			}
		}
		if rej, ok := stage.AsRejection(err); ok {
			return result{rejection: rej, attempts: attempt}, nil
		}
		if attempt >= r.opts.MaxAttempts {
			return result{attempts: attempt}, err
		}
		mRetries.WithLabelValues(r.def.Name).Inc()
		if !sleep(ctx, backoff) {
			return result{attempts: attempt}, ctx.Err()
		}
		backoff = min(2*backoff, r.opts.MaxRetryBackoff)
	}
}

// safeProcess turns a panic in the stage into a rejection: a record that crashes the
// stage would otherwise crash every instance that reads it, stalling its partition.
func (r *runner) safeProcess(ctx context.Context, in *stage.Record, store stage.Store, em *emitter) (err error) {
	defer func() {
		if v := recover(); v != nil {
			r.opts.Logger.Error("stage panicked; record dead-lettered", "stage", r.def.Name,
				"topic", in.Topic, "partition", in.Partition, "offset", in.Offset, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = &stage.Rejection{Class: "panic", Message: fmt.Sprintf("stage %s panicked: %v", r.def.Name, v)}
		}
	}()
	return r.proc.Process(ctx, in, store, em)
}

func toStage(rec *kgo.Record) *stage.Record {
	var hs []stage.Header
	if len(rec.Headers) > 0 {
		hs = make([]stage.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			hs[i] = stage.Header{Key: h.Key, Value: h.Value}
		}
	}
	return &stage.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Key: rec.Key, Value: rec.Value, Headers: hs, Timestamp: rec.Timestamp}
}

// emitter collects the outputs of one input.
type emitter struct {
	in  *kgo.Record
	out []*kgo.Record
	err error
}

var errNoTopic = errors.New("emitted a record without a topic")

// Emit converts out to a Kafka record. An output without a timestamp inherits the
// input's, so event time flows through the pipeline.
func (e *emitter) Emit(out stage.Record) {
	if out.Topic == "" {
		e.err = &stage.Rejection{Class: "stage-bug", Message: errNoTopic.Error()}
		return
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
