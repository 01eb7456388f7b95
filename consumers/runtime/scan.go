package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// Scan reads topic read_committed, without a consumer group, from the offsets in from
// (nil: every partition from its log start; a partition absent from a non-nil from is
// not read) up to the end offsets the topic had when Scan began, and calls fn for each
// data record, in offset order per partition. It always terminates while writers go on.
// An error from fn ends the scan and is returned. The Record and its header slice are
// reused between calls; the byte slices they point to may be kept.
func Scan(ctx context.Context, cfg kafkaclient.Config, topic string, from map[int32]int64, fn func(*stage.Record) error) error {
	cl, err := cfg.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if from == nil {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return fmt.Errorf("start offsets of %s: %w", topic, err)
		}
		from = map[int32]int64{}
		starts.Each(func(o kadm.ListedOffset) { from[o.Partition] = o.Offset })
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	until := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if start, ok := from[o.Partition]; ok && start < o.Offset {
			until[o.Partition] = o.Offset
			assign[o.Partition] = kgo.NewOffset().At(start)
		}
	})
	if len(until) == 0 {
		return nil
	}
	// Control records are kept so that a partition ending in a transaction marker is
	// seen to be read to its end.
	rd, err := cfg.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer rd.Close()
	var w worker
	for len(until) > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fs.Err(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		var ferr error
		fs.EachRecord(func(rec *kgo.Record) {
			end, reading := until[rec.Partition]
			if !reading || ferr != nil {
				return
			}
			if !rec.Attrs.IsControl() {
				ferr = fn(w.toStage(rec))
			}
			if rec.Offset+1 >= end {
				delete(until, rec.Partition)
			}
		})
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// coordinatorWait bounds how long CommittedOffsets waits for a group coordinator.
const coordinatorWait = 30 * time.Second

// CommittedOffsets returns where group stands on topic: per partition, its committed
// offset, or the log start where it has none (or where retention removed what it had
// committed up to). A cluster that has just started, or whose group coordinator is
// moving, answers COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS for a while:
// that is waited out (up to 30 s), as the consumer group itself would, not reported.
func CommittedOffsets(ctx context.Context, cfg kafkaclient.Config, group, topic string) (map[int32]int64, error) {
	cl, err := cfg.NewClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	for wait := time.Now().Add(coordinatorWait); err != nil && kerr.IsRetriable(err) && time.Now().Before(wait); {
		if !sleep(ctx, 250*time.Millisecond) {
			return nil, fmt.Errorf("offsets of group %s: %w", group, errors.Join(err, ctx.Err()))
		}
		committed, err = adm.FetchOffsets(ctx, group)
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = kadm.OffsetResponses{}, nil // no progress yet
	}
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
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
