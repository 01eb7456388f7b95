package validate

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

// Name is the validate stage's name, its node's in schemas.Topology.
const Name = schemas.NodeValidate

// Processor is the validate stage's logic.
type Processor struct {
	Topics    schemas.Topics
	Validator *Validator

	routes sync.Map // input topic → route, so a record costs no topic parsing or string building
}

// route is where records of one input topic go: the resource type their topic names
// and the valid topic of that type.
type route struct{ typ, out string }

// routeOf returns the route of input topic in, false if in is not a layer topic.
func (p *Processor) routeOf(in string) (route, bool) {
	if r, ok := p.routes.Load(in); ok {
		return r.(route), true
	}
	_, rt, ok := p.Topics.ParseLayerTopic(in)
	if !ok {
		return route{}, false
	}
	r := route{typ: rt, out: p.Topics.Valid(rt)}
	p.routes.Store(in, r)
	return r, true
}

// Process forwards a passing resource unchanged to the valid topic of its type and
// rejects a failing one with its first failure's class and path; the message lists
// every failure found (up to Options.MaxFailures). Tombstones pass through.
func (p *Processor) Process(_ context.Context, in *stage.Record, _ stage.Store, out stage.Emitter) error {
	r, ok := p.routeOf(in.Topic)
	if !ok {
		return stage.Reject(ClassTypeMismatch, "", "topic %s is not a <prefix>.<layer>.<Type> topic", in.Topic)
	}
	if !in.IsTombstone() {
		if fails := p.Validator.Validate(r.typ, in.Key, in.Value); len(fails) > 0 {
			return Reject(fails)
		}
	}
	out.Emit(stage.Record{Topic: r.out, Key: in.Key, Value: in.Value, Headers: in.Headers, Timestamp: in.Timestamp})
	return nil
}

// Reject turns failures into one rejection: class and path of the first, and every
// failure in the message, so an operator sees all that is wrong with one record.
func Reject(fails []Failure) error {
	msgs := make([]string, len(fails))
	for i, f := range fails {
		msgs[i] = f.String()
	}
	msg := fails[0].Message
	if len(fails) > 1 {
		msg = fmt.Sprintf("%d failures: %s", len(fails), strings.Join(msgs, "; "))
	}
	return &stage.Rejection{Class: fails[0].Class, Path: fails[0].Path, Message: msg}
}

// Definition declares the validate stage, its node of topo: fhir.raw.* → fhir.valid.*,
// stateless.
func Definition(topo schemas.Topology, o Options) stage.Definition {
	t := topo.Topics
	return stage.Definition{
		Node:                 topo.MustNode(schemas.NodeValidate),
		Topics:               t,
		ConcurrentPartitions: true,
		ConcurrentRecords:    true, // each record is checked on its own
		NewProcessor: func() (stage.Processor, error) {
			return &Processor{Topics: t, Validator: New(o)}, nil
		},
	}
}
