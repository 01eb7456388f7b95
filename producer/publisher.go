package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// publisher owns the transactional producer. Workers publish lines between enter and
// leave; commit takes the gate exclusively, so it always sees every file at a line
// boundary, writes the files' checkpoints into the open transaction and commits.
type publisher struct {
	ctx        context.Context
	cl         *kgo.Client
	stateTopic string
	log        *slog.Logger

	gate    sync.RWMutex
	files   []*fileRun // registered files, for checkpoints
	filesMu sync.Mutex

	pending  atomic.Int64 // bytes produced since the last commit
	limit    int64
	commitCh chan struct{}
	errOnce  sync.Once
	err      atomic.Pointer[error]
	commits  atomic.Int64
	promise  func(*kgo.Record, error)
	inTxn    bool
	// newTopics keeps a transaction that first writes to a topic from ending before the
	// client has published the topic's partitions (see kafkaclient.NewTopicGuard).
	newTopics kafkaclient.NewTopicGuard
	// blocks recycles the files' line arenas' byte blocks (blockPool).
	blocks blockPool
}

func newPublisher(ctx context.Context, cl *kgo.Client, stateTopic string, commitBytes int64, log *slog.Logger) *publisher {
	p := &publisher{ctx: ctx, cl: cl, stateTopic: stateTopic, log: log, limit: commitBytes, commitCh: make(chan struct{}, 1)}
	p.promise = func(r *kgo.Record, err error) {
		if err != nil {
			p.fail(fmt.Errorf("produce to %s: %w", r.Topic, err))
		}
		// The client is done with the record, sent or failed: its line's bytes may be
		// written over.
		if b := blockOf(r); b != nil {
			b.release()
		}
	}
	return p
}

func (p *publisher) fail(err error) {
	p.errOnce.Do(func() { p.err.Store(&err) })
}

func (p *publisher) failed() error {
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

func (p *publisher) register(f *fileRun) {
	p.filesMu.Lock()
	p.files = append(p.files, f)
	p.filesMu.Unlock()
}

// begin opens the first transaction.
func (p *publisher) begin() error {
	if err := p.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	p.inTxn = true
	return nil
}

func (p *publisher) enter() { p.gate.RLock() }

// leave ends a worker's critical section after n bytes were produced.
func (p *publisher) leave(n int64) {
	p.gate.RUnlock()
	if p.pending.Add(n) >= p.limit {
		select {
		case p.commitCh <- struct{}{}:
		default:
		}
	}
}

// produce buffers r in the open transaction. Records take the fetch's context, not a
// worker's: a worker finishing must not cancel records still buffered.
func (p *publisher) produce(_ context.Context, r *kgo.Record) {
	p.newTopics.Note(r.Topic)
	p.cl.Produce(p.ctx, r, p.promise)
}

// run commits whenever enough bytes are pending or interval has passed, until ctx ends.
func (p *publisher) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.commitCh:
		}
		// A commit under way finishes even when the run is being stopped: cancelling
		// it half way would turn a clean stop into a failed fetch (and an aborted
		// transaction the restart has to redo). The client's own timeouts bound it.
		if err := p.commit(context.WithoutCancel(ctx)); err != nil {
			p.fail(err)
			return
		}
	}
}

// commit writes checkpoints of files that progressed plus extra records, then commits
// and opens the next transaction.
func (p *publisher) commit(ctx context.Context, extra ...*kgo.Record) error {
	p.gate.Lock()
	defer p.gate.Unlock()
	if err := p.failed(); err != nil {
		return err
	}
	p.filesMu.Lock()
	n := 0
	for _, f := range p.files {
		if f.cp != f.committed {
			p.produce(ctx, stateRecord(p.stateTopic, f.key, f.cp))
			n++
		}
	}
	p.filesMu.Unlock()
	for _, r := range extra {
		p.produce(ctx, r)
	}
	if n == 0 && len(extra) == 0 && p.pending.Load() == 0 {
		return nil
	}
	start := time.Now()
	var flushed time.Duration
	defer func() { p.log.Debug("fetch: commit", "flush", flushed, "took", time.Since(start)) }()
	if err := p.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	flushed = time.Since(start)
	if err := p.failed(); err != nil {
		abortErr := p.cl.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		return errors.Join(err, abortErr)
	}
	if err := p.newTopics.Await(ctx, p.cl); err != nil {
		abortErr := p.cl.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		return errors.Join(err, abortErr)
	}
	if err := p.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	p.inTxn = false
	p.filesMu.Lock()
	for _, f := range p.files {
		f.committed = f.cp
	}
	p.filesMu.Unlock()
	p.pending.Store(0)
	// A worker that crossed the byte limit while this commit waited for the gate has
	// signalled for a commit that this one already is: drop it, or the next commit would
	// follow at once with next to nothing in it.
	select {
	case <-p.commitCh:
	default:
	}
	p.commits.Add(1)
	if err := p.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	p.inTxn = true
	return nil
}

// abort ends an open transaction without committing (on failure or cancellation).
func (p *publisher) abort(ctx context.Context) {
	p.gate.Lock()
	defer p.gate.Unlock()
	if !p.inTxn {
		return
	}
	if err := p.cl.AbortBufferedRecords(ctx); err != nil {
		p.log.Warn("fetch: abort buffered records", "err", err)
	}
	if err := p.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		p.log.Warn("fetch: abort transaction", "err", err)
	}
	p.inTxn = false
}
