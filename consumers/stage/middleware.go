package stage

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/fhirstream/fhirstream/schemas"
)

// Middleware wraps a Processor in behaviour of its own, as watermill's middleware wraps a
// handler: the stage's logic stays a plain record-in, records-out function, and concerns
// around it (recovering panics, counting) are written once. The stage runtime runs every
// stage's processor as Chain(processor, Recover(...), Options.Middleware...).
//
// Retrying transient errors is not a middleware: an attempt's outputs, state changes and
// pending counts must all be discarded before the next attempt, and only the runtime,
// which owns the emitter, the store's change log and the counts, can discard them
// without buffering every attempt a second time.
type Middleware func(Processor) Processor

// Chain returns p wrapped in mws, the first outermost: Chain(p, a, b) runs a, then b,
// then p.
func Chain(p Processor, mws ...Middleware) Processor {
	for i := len(mws) - 1; i >= 0; i-- {
		p = mws[i](p)
	}
	return p
}

// Recover turns a panic in the processor into a Rejection of class schemas.ClassPanic,
// so a record that crashes a stage is dead-lettered instead of crashing every instance
// that reads it and stalling its partition. onPanic, when set, is told the input, the
// panic value and the stack, for the log (never the record's content).
func Recover(onPanic func(in *Record, v any, stack []byte)) Middleware {
	return func(next Processor) Processor {
		return ProcessorFunc(func(ctx context.Context, in *Record, st Store, out Emitter) (err error) {
			defer func() {
				if v := recover(); v != nil {
					if onPanic != nil {
						onPanic(in, v, debug.Stack())
					}
					err = &Rejection{Class: schemas.ClassPanic, Message: fmt.Sprintf("the stage panicked: %v", v)}
				}
			}()
			return next.Process(ctx, in, st, out)
		})
	}
}

// ByteMeter counts the key and value bytes a processor reads and emits, as processed:
// work redone after an aborted batch or a retry counts again.
type ByteMeter struct {
	In, Out atomic.Int64
}

// Middleware counts into m.
func (m *ByteMeter) Middleware() Middleware {
	return func(next Processor) Processor {
		return ProcessorFunc(func(ctx context.Context, in *Record, st Store, out Emitter) error {
			m.In.Add(int64(len(in.Key) + len(in.Value)))
			return next.Process(ctx, in, st, meteredEmitter{out: out, m: m})
		})
	}
}

type meteredEmitter struct {
	out Emitter
	m   *ByteMeter
}

func (e meteredEmitter) Emit(r Record) {
	e.m.Out.Add(int64(len(r.Key) + len(r.Value)))
	e.out.Emit(r)
}
