package kafkaclient

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadCommitted reads every committed record of topics, from the start up to each
// partition's last stable offset as it is when ReadCommitted begins, and calls each for
// every data record (transaction markers are skipped). Missing topics read as empty. It
// is how the demo and the tests count what a stage wrote, independently of the stage.
func ReadCommitted(ctx context.Context, cfg Config, topics []string, each func(*kgo.Record)) error {
	if len(topics) == 0 {
		return nil
	}
	admCl, err := cfg.NewClient()
	if err != nil {
		return err
	}
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("list stable offsets: %w", err)
	}
	remaining := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset <= 0 {
			return // a missing topic or an empty partition
		}
		if remaining[o.Topic] == nil {
			remaining[o.Topic] = map[int32]int64{}
		}
		remaining[o.Topic][o.Partition] = o.Offset
	})
	if len(remaining) == 0 {
		return nil
	}
	// Control records are kept so that the position past a trailing commit marker is
	// visible: without them a partition ending in a marker could not be told apart from
	// one with a record still to come.
	cl, err := cfg.NewClient(kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %v: partitions unread up to their stable offset %v: %w", topics, remaining, err)
		}
		var fetchErr error
		fs.EachError(func(topic string, p int32, err error) {
			fetchErr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
		})
		if fetchErr != nil {
			return fetchErr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Topic][r.Partition]
			if !ok {
				return
			}
			if !r.Attrs.IsControl() && r.Offset < end {
				each(r)
			}
			if r.Offset+1 >= end {
				delete(remaining[r.Topic], r.Partition)
				if len(remaining[r.Topic]) == 0 {
					delete(remaining, r.Topic)
				}
			}
		})
	}
	return nil
}
