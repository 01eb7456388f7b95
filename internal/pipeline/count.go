package pipeline

import (
	"context"
	"fmt"
	"regexp"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// ReadTopics reads every committed record of the topics matching pattern (a regular
// expression), from the start up to each partition's last stable offset as it is when
// ReadTopics begins, and calls each for every data record. It is how the demo and the
// tests count what a stage wrote, independently of the stage's own counters.
func ReadTopics(ctx context.Context, cfg kafkaclient.Config, pattern string, each func(*kgo.Record)) error {
	admCl, err := cfg.NewClient()
	if err != nil {
		return err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("topic pattern %q: %w", pattern, err)
	}
	var topics []string
	for name := range all {
		if re.MatchString(name) {
			topics = append(topics, name)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("list stable offsets: %w", err)
	}
	remaining := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset <= 0 {
			return
		}
		if remaining[o.Topic] == nil {
			remaining[o.Topic] = map[int32]int64{}
		}
		remaining[o.Topic][o.Partition] = o.Offset
	})
	if len(remaining) == 0 {
		return nil
	}
	// Control records are kept so the position past a trailing commit marker is seen.
	cl, err := cfg.NewClient(kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", pattern, err)
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
