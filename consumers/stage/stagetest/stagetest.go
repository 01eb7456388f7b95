// Package stagetest runs stage processors in memory, without a broker, for tests: a
// recording emitter, a map store, and a chain that feeds each stage's outputs to the
// next one as the pipeline's topics would.
package stagetest

import (
	"context"
	"fmt"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

// Recorder is an Emitter that keeps what it is given.
type Recorder struct {
	Records []stage.Record
}

// Emit keeps r.
func (rec *Recorder) Emit(r stage.Record) { rec.Records = append(rec.Records, r) }

// Reset forgets what was emitted.
func (rec *Recorder) Reset() { rec.Records = rec.Records[:0] }

// MapStore is a stage.Store over a map, keeping copies of what it is given.
type MapStore map[string][]byte

// Get returns the value of key.
func (m MapStore) Get(key []byte) ([]byte, bool) {
	v, ok := m[string(key)]
	return v, ok
}

// Put sets key to a copy of value.
func (m MapStore) Put(key, value []byte) { m[string(key)] = append([]byte(nil), value...) }

// Delete removes key.
func (m MapStore) Delete(key []byte) { delete(m, string(key)) }

// Process runs p on in with store st (a new MapStore when nil) and returns its outputs,
// or its error (a *stage.Rejection for bad input).
func Process(ctx context.Context, p stage.Processor, in stage.Record, st stage.Store) ([]stage.Record, error) {
	if st == nil {
		st = MapStore{}
	}
	var out Recorder
	if err := p.Process(ctx, &in, st, &out); err != nil {
		return nil, err
	}
	return out.Records, nil
}

// Rejected is an input a stage of a Chain refused.
type Rejected struct {
	Stage     int // index in Chain.Stages
	Record    stage.Record
	Rejection *stage.Rejection
}

// Chain runs records through stages in order, as the pipeline does through its topics:
// each stage processes what the previous one emitted, in order, with a store of its own
// per input topic (as the runtime keeps one per input partition). What a stage rejects
// is collected in Rejected and goes no further.
type Chain struct {
	Stages   []stage.Processor
	Rejected []Rejected

	stores  []map[string]MapStore // per stage, by input topic
	offsets map[string]int64      // next offset per topic, so inputs look consumed
}

// NewChain returns a chain of stages.
func NewChain(stages ...stage.Processor) *Chain {
	c := &Chain{Stages: stages, stores: make([]map[string]MapStore, len(stages)), offsets: map[string]int64{}}
	for i := range c.stores {
		c.stores[i] = map[string]MapStore{}
	}
	return c
}

// Feed runs records through every stage and returns what the last stage emitted. A
// stage's transient error (not a rejection) ends the feed with that error.
func (c *Chain) Feed(ctx context.Context, records ...stage.Record) ([]stage.Record, error) {
	batch := records
	for i, p := range c.Stages {
		var next []stage.Record
		for _, in := range batch {
			in.Offset = c.offsets[in.Topic]
			c.offsets[in.Topic]++
			st := c.stores[i][in.Topic]
			if st == nil {
				st = MapStore{}
				c.stores[i][in.Topic] = st
			}
			out, err := Process(ctx, p, in, st)
			if rej, ok := stage.AsRejection(err); ok {
				c.Rejected = append(c.Rejected, Rejected{Stage: i, Record: in, Rejection: rej})
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("stage %d on %s offset %d: %w", i, in.Topic, in.Offset, err)
			}
			next = append(next, out...)
		}
		batch = next
	}
	return batch, nil
}
