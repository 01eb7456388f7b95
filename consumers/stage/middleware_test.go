package stage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

type recorder []stage.Record

func (r *recorder) Emit(rec stage.Record) { *r = append(*r, rec) }

func TestChainOrderAndRecover(t *testing.T) {
	var order []string
	mark := func(name string) stage.Middleware {
		return func(next stage.Processor) stage.Processor {
			return stage.ProcessorFunc(func(ctx context.Context, in *stage.Record, st stage.Store, out stage.Emitter) error {
				order = append(order, name)
				return next.Process(ctx, in, st, out)
			})
		}
	}
	var panicked any
	proc := stage.ProcessorFunc(func(_ context.Context, in *stage.Record, _ stage.Store, out stage.Emitter) error {
		order = append(order, "proc")
		if string(in.Value) == "boom" {
			panic("boom")
		}
		out.Emit(stage.Record{Topic: "t", Value: in.Value})
		return nil
	})
	p := stage.Chain(proc, stage.Recover(func(_ *stage.Record, v any, stack []byte) {
		panicked = v
		if !strings.Contains(string(stack), "middleware_test") {
			t.Errorf("stack does not show where the panic was: %s", stack)
		}
	}), mark("a"), mark("b"))
	var out recorder
	if err := p.Process(context.Background(), &stage.Record{Value: []byte("ok")}, nil, &out); err != nil || len(out) != 1 {
		t.Fatalf("ok record: %v, %d outputs", err, len(out))
	}
	if got := strings.Join(order, ","); got != "a,b,proc" {
		t.Fatalf("order %s, want a,b,proc", got)
	}
	err := p.Process(context.Background(), &stage.Record{Value: []byte("boom")}, nil, &out)
	rej, ok := stage.AsRejection(err)
	if !ok || rej.Class != schemas.ClassPanic || panicked == nil {
		t.Fatalf("panicking record: %v (rejection %v), onPanic saw %v", err, ok, panicked)
	}
}

func TestByteMeter(t *testing.T) {
	var m stage.ByteMeter
	proc := stage.ProcessorFunc(func(_ context.Context, in *stage.Record, _ stage.Store, out stage.Emitter) error {
		out.Emit(stage.Record{Key: in.Key, Value: append(in.Value, in.Value...)})
		out.Emit(stage.Record{Key: in.Key})
		return nil
	})
	p := stage.Chain(proc, m.Middleware())
	var out recorder
	if err := p.Process(context.Background(), &stage.Record{Key: []byte("k1"), Value: []byte("abc")}, nil, &out); err != nil {
		t.Fatal(err)
	}
	if in, o := m.In.Load(), m.Out.Load(); in != 5 || o != 2+6+2 {
		t.Fatalf("counted %d in, %d out; want 5 and 10", in, o)
	}
}
