package runtime

import (
	"context"
	"errors"
	"fmt"

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
	ends.Each(func(o kadm.ListedOffset) {
		if _, ok := from[o.Partition]; ok {
			until[o.Partition] = o.Offset
		}
	})
	var w worker
	var fnErr error
	err = kafkaclient.ReadPartitions(ctx, cfg, map[string]map[int32]int64{topic: from}, map[string]map[int32]int64{topic: until},
		func(rec *kgo.Record) (bool, error) {
			if !rec.Attrs.IsControl() {
				fnErr = fn(w.toStage(rec))
			}
			return fnErr == nil, nil
		}, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	switch {
	case fnErr != nil:
		return fnErr
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("read %s: %w", topic, err)
	}
	return nil
}

// CommittedOffsets returns where group stands on topic: per partition, its committed
// offset, or the log start where it has none (or where retention removed what it had
// committed up to). A group coordinator that is not ready yet is waited out
// (kafkaclient.WaitCoordinator).
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
	committed, err := kafkaclient.WaitCoordinator(ctx, func() (kadm.OffsetResponses, error) { return adm.FetchOffsets(ctx, group) })
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
