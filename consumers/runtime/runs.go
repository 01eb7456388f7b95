package runtime

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

// Runs: a stateless stage whose records may be processed at once
// (stage.Definition.ConcurrentRecords) has each partition of a batch split into runs of
// consecutive records, which the workers take in order like partitions. A batch of one
// topic often holds fewer partitions than workers, or partitions of unequal size, and
// with whole partitions as the unit one worker then processes the last partition alone
// while the others wait: with 2 workers and 3 equal partitions, one worker idles for
// the second half of the batch's processing. A run's outputs are kept until every earlier
// run of its partition has been produced, and then produced by whichever worker
// finishes the run that completes the prefix, so every output topic partition receives
// its records in input order, as when one goroutine processes the partition.

// minRunRecords is the smallest run: below it, keeping and handing over a run's
// outputs would cost more than the balance is worth.
const minRunRecords = 256

// runsPerWorker is how many runs a batch is cut into per worker: enough that the last
// run to finish is a small share of the batch.
const runsPerWorker = 8

// partSeq orders the production of one partition's runs.
type partSeq struct {
	mu   sync.Mutex
	runs []*partWork
	next int // the first run not produced yet
}

// splitRuns cuts each partition of parts into runs, for workers workers. A batch too
// small to be worth splitting is returned as it is.
func splitRuns(parts []*partWork, workers int) []*partWork {
	total := 0
	for _, p := range parts {
		total += len(p.recs)
	}
	if workers <= 1 || total < 2*minRunRecords {
		return parts
	}
	size := max(minRunRecords, total/(workers*runsPerWorker))
	var runs []*partWork
	for _, p := range parts {
		if len(p.recs) <= size {
			runs = append(runs, p)
			continue
		}
		seq := &partSeq{}
		for i := 0; i < len(p.recs); i += size {
			run := &partWork{key: p.key, recs: p.recs[i:min(i+size, len(p.recs))], seq: seq}
			seq.runs = append(seq.runs, run)
			runs = append(runs, run)
		}
	}
	return runs
}

// processRun processes run p's records, keeping their results, and then produces the
// runs of its partition that are next in turn.
func (r *runner) processRun(ctx, work context.Context, p *partWork, promise *kgo.FirstErrPromise, stop *atomic.Bool) {
	wctx := stage.WithCommitCounter(work, &p.tally)
	w := worker{em: emitter{declared: r.declared}, rs: recordStore{topic: p.key.topic}, tally: &p.tally}
	p.results = make([]result, 0, len(p.recs))
	for _, rec := range p.recs {
		res, ok := r.processNext(ctx, wctx, p, rec, &w, stop)
		if !ok {
			return // the batch aborts: nothing of this partition after here is produced
		}
		// The emitter's slice is reused for the next record: keep a copy, as a view of
		// the run's own output slice.
		n := len(p.outputs)
		p.outputs = append(p.outputs, res.outputs...)
		res.outputs = p.outputs[n:len(p.outputs):len(p.outputs)]
		p.results = append(p.results, res)
	}
	r.produceInTurn(work, p, promise, stop)
}

// produceInTurn marks run p processed and produces, in order, every processed run of its
// partition that no unproduced run precedes.
func (r *runner) produceInTurn(work context.Context, p *partWork, promise *kgo.FirstErrPromise, stop *atomic.Bool) {
	seq := p.seq
	seq.mu.Lock()
	defer seq.mu.Unlock()
	p.processed = true
	for seq.next < len(seq.runs) && seq.runs[seq.next].processed {
		run := seq.runs[seq.next]
		var lastOutput string
		for i, rec := range run.recs {
			if stop.Load() && run.abort == "" {
				run.abort = "stopped"
			}
			if run.abort != "" || !r.emit(work, run, rec, run.results[i], promise, stop, &lastOutput) {
				return
			}
		}
		run.results, run.outputs = nil, nil
		seq.next++
	}
}
