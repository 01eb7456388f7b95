package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// drainer tracks, for Options.Drain, how far this instance has committed each assigned
// partition against the end offset the partition had when it was assigned.
type drainer struct {
	mu       sync.Mutex
	end      map[tp]int64 // end offset at assignment; -1 until looked up
	position map[tp]int64 // next offset to commit past, as far as known
	joined   bool
}

func newDrainer() *drainer {
	return &drainer{end: map[tp]int64{}, position: map[tp]int64{}}
}

func (d *drainer) assign(m map[string][]int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.joined = true
	for topic, parts := range m {
		for _, p := range parts {
			d.end[tp{topic, p}] = -1
		}
	}
}

func (d *drainer) revoke(m map[string][]int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for topic, parts := range m {
		for _, p := range parts {
			delete(d.end, tp{topic, p})
			delete(d.position, tp{topic, p})
		}
	}
}

// committed notes the positions a committed batch reached, markers included.
func (d *drainer) committed(fetches kgo.Fetches) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 {
			k := tp{p.Topic, p.Partition}
			d.position[k] = max(d.position[k], p.Records[n-1].Offset+1)
		}
	})
}

// done looks up what it does not know yet (end offsets of new partitions, and where the
// group stands on them) and reports whether every assigned partition is consumed to its
// end offset at assignment.
func (d *drainer) done(ctx context.Context, adm *kadm.Client, group string) (bool, error) {
	d.mu.Lock()
	var unknown []tp
	for k, end := range d.end {
		if end < 0 {
			unknown = append(unknown, k)
		}
	}
	joined := d.joined
	d.mu.Unlock()
	if !joined {
		return false, nil
	}
	if len(unknown) > 0 {
		if err := d.lookUp(ctx, adm, group, unknown); err != nil {
			return false, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, end := range d.end {
		if end < 0 || d.position[k] < end {
			return false, nil
		}
	}
	return true, nil
}

func (d *drainer) lookUp(ctx context.Context, adm *kadm.Client, group string, parts []tp) error {
	topics := map[string]bool{}
	for _, k := range parts {
		topics[k.topic] = true
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of %v: %w", names, err)
	}
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("start offsets of %v: %w", names, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = kadm.OffsetResponses{}, nil
	}
	if err != nil {
		return fmt.Errorf("offsets of group %s: %w", group, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range parts {
		if _, still := d.end[k]; !still {
			continue // revoked meanwhile
		}
		end, ok := ends.Lookup(k.topic, k.partition)
		if !ok {
			continue
		}
		pos := int64(0)
		if s, ok := starts.Lookup(k.topic, k.partition); ok {
			pos = s.Offset
		}
		if c, ok := committed.Lookup(k.topic, k.partition); ok && c.Err == nil {
			pos = max(pos, c.At)
		}
		d.end[k] = end.Offset
		d.position[k] = max(d.position[k], pos)
	}
	return nil
}
