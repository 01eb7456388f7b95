// Package stage is the API between a stage's logic and the runtime that runs it. A
// stage is a Processor: record in, records out (or a reason to reject the record). It
// never imports the Kafka client, so it can be tested without a broker.
package stage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is a Kafka record as a stage sees it. Inputs carry their topic, partition and
// offset; outputs need only Topic, Key, Value and Headers (partitioning is by key).
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	// Value is nil for a tombstone (a deleted resource, or a compaction delete marker).
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Header returns the value of the first header called key.
func (r *Record) Header(key string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// IsTombstone reports whether the record deletes its key.
func (r *Record) IsTombstone() bool { return r.Value == nil }

// Store is partition-local state, restored by the runtime from a compacted changelog
// topic when a partition is assigned. Writes go to the changelog in the same Kafka
// transaction as the outputs and the input offsets, so state and outputs never disagree.
// Keys and values passed in may be retained by the store only as copies; returned values
// must not be modified.
type Store interface {
	Get(key []byte) (value []byte, ok bool)
	Put(key, value []byte)
	Delete(key []byte)
}

// Emitter receives a stage's outputs for one input.
type Emitter interface {
	Emit(out Record)
}

// Processor is a stage's logic. Process is called once per input record, in offset order
// within a partition, possibly concurrently for different partitions (each partition has
// its own Store), and for a stateless stage with Definition.ConcurrentRecords possibly
// concurrently for records of one partition (their outputs are still produced in offset
// order). The runtime reuses in and in.Headers from one record to the next, so
// they are valid only during the call; the byte slices they point to (key, value, header
// values) may be kept. It emits zero or more outputs, or returns an error:
//
//   - a *Rejection (see Reject) for bad data: the runtime dead-letters the input with the
//     rejection's class, path and message, and its outputs for that input are discarded;
//   - any other error is treated as transient (a dependency, not the data): the runtime
//     retries with backoff and never dead-letters for it.
type Processor interface {
	Process(ctx context.Context, in *Record, state Store, out Emitter) error
}

// ProcessorFunc adapts a function to Processor.
type ProcessorFunc func(ctx context.Context, in *Record, state Store, out Emitter) error

// Process calls f.
func (f ProcessorFunc) Process(ctx context.Context, in *Record, state Store, out Emitter) error {
	return f(ctx, in, state, out)
}

// Rejection is a data error: the input cannot be processed as it is, and retrying will
// not help. It is routed to the dead-letter topic with these fields as headers, so it
// must not contain PHI: name elements and rules, not their values.
type Rejection struct {
	// Class is a short, stable, machine-readable reason, e.g. "invalid-json",
	// "missing-required", "bad-format", "type-mismatch", "unmapped-reference".
	Class string
	// Path is the element path within the resource, e.g. "Observation.code.coding[0].system".
	Path string
	// Message is a human-readable explanation.
	Message string
}

func (r *Rejection) Error() string {
	if r.Path != "" {
		return fmt.Sprintf("%s at %s: %s", r.Class, r.Path, r.Message)
	}
	return fmt.Sprintf("%s: %s", r.Class, r.Message)
}

// Reject returns a Rejection.
func Reject(class, path, format string, args ...any) error {
	return &Rejection{Class: class, Path: path, Message: fmt.Sprintf(format, args...)}
}

// AsRejection returns the Rejection inside err, if any.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}
