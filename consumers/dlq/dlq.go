// Package dlq is the logic of 'fhirstream dlq': reading the dead-letter topic, counting
// its records by stage, error class and source topic, and replaying them to the topics
// they came from. The command in cmd/fhirstream only parses flags and prints.
//
// Reads are read_committed snapshots: a scan or replay stops at the end offsets the
// topic had when it began, so it always terminates while stages keep dead-lettering.
// Payloads (resource JSON, which is PHI) are never printed unless asked for explicitly.
package dlq

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// Filter selects dead letters. Empty fields match everything; a list matches any of its
// entries.
type Filter struct {
	Stages       []string
	Classes      []string
	SourceTopics []string
	// Keys are record keys; an entry may be a shell pattern ("Observation/*").
	Keys []string
	// Since and Until bound the time a record was dead-lettered (Until exclusive).
	Since, Until time.Time
}

// Match reports whether a dead letter with context c and key matches f.
func (f Filter) Match(c deadletter.Context, key []byte) bool {
	if !oneOf(f.Stages, c.Stage) || !oneOf(f.Classes, c.Class) || !oneOf(f.SourceTopics, c.SourceTopic) {
		return false
	}
	if !f.Since.IsZero() && c.Time.Before(f.Since) || !f.Until.IsZero() && !c.Time.Before(f.Until) {
		return false
	}
	if len(f.Keys) > 0 {
		k := string(key)
		for _, p := range f.Keys {
			if ok, _ := path.Match(p, k); ok || p == k {
				return true
			}
		}
		return false
	}
	return true
}

// String is a stable description of the filter, used to name its replay group.
func (f Filter) String() string {
	var parts []string
	add := func(name string, vs []string) {
		if len(vs) > 0 {
			parts = append(parts, name+"="+strings.Join(vs, ","))
		}
	}
	add("stage", f.Stages)
	add("class", f.Classes)
	add("source", f.SourceTopics)
	add("key", f.Keys)
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "until="+f.Until.UTC().Format(time.RFC3339Nano))
	}
	return strings.Join(parts, " ")
}

func oneOf(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Letter is a dead letter as read from the topic.
type Letter struct {
	Record  *kgo.Record
	Context deadletter.Context
	// HasContext is false for a record without dead-letter headers (not written by a
	// fhirstream stage); it cannot be routed back.
	HasContext bool
}

// Scan calls fn for every dead letter on topic that matches f, in offset order per
// partition, from the start to the end offsets at the time of the call.
func Scan(ctx context.Context, cfg kafkaclient.Config, topic string, f Filter, fn func(Letter) error) error {
	cl, err := cfg.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	from := map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			from[o.Partition] = o.Offset
		}
	})
	return readRange(ctx, cfg, adm, topic, from, func(rec *kgo.Record) error {
		l := letterOf(rec)
		if !f.Match(l.Context, rec.Key) {
			return nil
		}
		return fn(l)
	})
}

func letterOf(rec *kgo.Record) Letter {
	c, ok := deadletter.Parse(rec.Headers)
	return Letter{Record: rec, Context: c, HasContext: ok}
}

// readRange reads topic's partitions from the offsets in from up to the high watermarks
// at the time of the call, read_committed, calling fn for each data record. Partitions
// absent from from, or already at their end, are not read.
func readRange(ctx context.Context, cfg kafkaclient.Config, adm *kadm.Client, topic string, from map[int32]int64, fn func(*kgo.Record) error) error {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	until := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		start, ok := from[o.Partition]
		if ok && start < o.Offset {
			until[o.Partition] = o.Offset
			assign[o.Partition] = kgo.NewOffset().At(start)
		}
	})
	if len(until) == 0 {
		return nil
	}
	// Control records are kept so that a partition ending in a transaction marker is
	// seen to be read to its end.
	cl, err := cfg.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(until) > 0 {
		fs := cl.PollFetches(ctx)
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
				ferr = fn(rec)
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

// Counts are dead letters counted by stage, error class and source topic.
type Counts struct {
	Total     int
	ByStage   map[string]int
	ByClass   map[string]int // "<stage>/<class>"
	BySource  map[string]int
	NoContext int // records without dead-letter headers
}

// NewCounts returns empty counts.
func NewCounts() *Counts {
	return &Counts{ByStage: map[string]int{}, ByClass: map[string]int{}, BySource: map[string]int{}}
}

// Add counts one letter.
func (c *Counts) Add(l Letter) {
	c.Total++
	if !l.HasContext {
		c.NoContext++
		return
	}
	c.ByStage[l.Context.Stage]++
	c.ByClass[l.Context.Stage+"/"+l.Context.Class]++
	c.BySource[l.Context.SourceTopic]++
}

// Stats counts the dead letters on topic matching f.
func Stats(ctx context.Context, cfg kafkaclient.Config, topic string, f Filter) (*Counts, error) {
	c := NewCounts()
	err := Scan(ctx, cfg, topic, f, func(l Letter) error { c.Add(l); return nil })
	return c, err
}
