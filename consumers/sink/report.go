package sink

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// reportRetry is how often an idle sink sends again the group offsets it could not report.
const reportRetry = time.Second

// groupReport holds the offsets the sink owes the consumer group. The group's committed
// offsets are a report of what the tables have absorbed (lag, autoscaling, `fhirstream
// status`); the sink never reads them back. A report can fall behind the tables in two
// ways: its commit failed (a broker restarting), or the sink stopped between a table
// commit and the group commit. Either way the partition's lag would stay stale until new
// records arrived, and a caught-up partition gets none; so the owed offsets wait here and
// an idle sink sends them again.
type groupReport struct {
	mu      sync.Mutex
	owed    map[topicPartition]int64
	lastTry time.Time
}

// owe records that the group should say offset for tp (the later offset wins).
func (r *groupReport) owe(tp topicPartition, offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owed == nil {
		r.owed = map[topicPartition]int64{}
	}
	if cur, ok := r.owed[tp]; !ok || offset > cur {
		r.owed[tp] = offset
	}
}

// settle forgets tp's debt if it is not above offset, which the group now says.
func (r *groupReport) settle(tp topicPartition, offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.owed[tp]; ok && cur <= offset {
		delete(r.owed, tp)
	}
}

// forget drops the debts of partitions this member no longer owns: their new owner reports.
func (r *groupReport) forget(parts map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(r.owed, topicPartition{t, p})
		}
	}
}

func (r *groupReport) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.owed)
	r.lastTry = time.Time{}
}

// due returns the owed offsets when there are some and the last attempt is reportRetry old.
func (r *groupReport) due(now time.Time) map[topicPartition]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.owed) == 0 || now.Sub(r.lastTry) < reportRetry {
		return nil
	}
	r.lastTry = now
	out := make(map[topicPartition]int64, len(r.owed))
	for tp, o := range r.owed {
		out[tp] = o
	}
	return out
}

// commitGroup commits offsets to the consumer group as the report of what the tables
// hold. A partition whose commit fails stays owed and is sent again while the sink is
// idle; the failure is logged, never fatal.
func (s *Sink) commitGroup(ctx context.Context, cl *kgo.Client, offsets map[topicPartition]int64) {
	if len(offsets) == 0 {
		return
	}
	req := map[string]map[int32]kgo.EpochOffset{}
	for tp, o := range offsets {
		s.report.owe(tp, o)
		if req[tp.topic] == nil {
			req[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		req[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	cl.CommitOffsetsSync(ctx, req, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("sink: report offsets to the group (tried again while idle; the tables hold the truth)", "err", err)
			}
			return
		}
		var failed error
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					failed = perr
					continue
				}
				tp := topicPartition{t.Topic, p.Partition}
				s.report.settle(tp, offsets[tp])
			}
		}
		if failed != nil {
			s.log.Warn("sink: report offsets to the group (tried again while idle; the tables hold the truth)", "err", failed)
		}
	})
}

// reportOwed sends the owed offsets of partitions this member still holds, when due.
func (s *Sink) reportOwed(ctx context.Context, cl *kgo.Client) {
	owed := s.report.due(time.Now())
	if owed == nil {
		return
	}
	s.fenceMu.Lock()
	for tp := range owed {
		if _, held := s.fence[tp]; !held {
			delete(owed, tp)
		}
	}
	s.fenceMu.Unlock()
	s.commitGroup(ctx, cl, owed)
}
