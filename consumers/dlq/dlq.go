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
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
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
	Record stage.Record
	// Context is what the dead-letter headers say; HasContext is false for a record
	// without them (not written by a fhirstream node), which cannot be routed back.
	Context    deadletter.Context
	HasContext bool
}

func letterOf(rec *stage.Record) Letter {
	c, ok := deadletter.Parse(rec.Headers)
	return Letter{Record: *rec, Context: c, HasContext: ok}
}

// Scan calls fn for every dead letter on topic that matches f, in offset order per
// partition, from the start to the end offsets at the time of the call.
func Scan(ctx context.Context, cfg kafkaclient.Config, topic string, f Filter, fn func(Letter) error) error {
	return scanFrom(ctx, cfg, topic, nil, f, fn)
}

// scanFrom is Scan from the offsets in from (nil: the log start).
func scanFrom(ctx context.Context, cfg kafkaclient.Config, topic string, from map[int32]int64, f Filter, fn func(Letter) error) error {
	return runtime.Scan(ctx, cfg, topic, from, func(rec *stage.Record) error {
		l := letterOf(rec)
		if !f.Match(l.Context, rec.Key) {
			return nil
		}
		// The scan reuses its header slice: a letter handed on keeps its own.
		l.Record.Headers = slices.Clone(rec.Headers)
		return fn(l)
	})
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

// WriteTable prints the counts of topic's dead letters as a table per grouping, largest
// first.
func (c *Counts) WriteTable(w io.Writer, topic string) {
	fmt.Fprintf(w, "%s: %d dead letters\n", topic, c.Total)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	section := func(title string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		fmt.Fprintf(tw, "\n%s\tCOUNT\n", title)
		for _, k := range SortedByCount(m) {
			fmt.Fprintf(tw, "%s\t%d\n", k, m[k])
		}
	}
	section("STAGE", c.ByStage)
	section("STAGE/CLASS", c.ByClass)
	section("SOURCE TOPIC", c.BySource)
	if c.NoContext > 0 {
		fmt.Fprintf(tw, "\nwithout dead-letter context\t%d\n", c.NoContext)
	}
	_ = tw.Flush()
}

// SortedByCount returns m's keys, largest count first, then by name.
func SortedByCount(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
