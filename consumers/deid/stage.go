package deid

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

// Output layer and header of the deid stage (its node, group and topics are declared in
// schemas.Topology, with TopologyOptions.Deidentify).
const (
	// Layer is the topic layer deid writes: <prefix>.deid.<Type>.
	Layer = schemas.LayerDeid
	// HeaderConfig carries a fingerprint of the configuration that made a record (the
	// first 16 hex digits of the SHA-256 of its rules and parameters, keys left out),
	// so a subscriber can tell which policy it reads.
	HeaderConfig = "fhir.deid.config"
)

// keptHeaders are the input headers an output record carries. The rest are dropped:
// the provenance headers name the source file and line (a way back to the identified
// record) and the export's status URL, and a header nobody declared could hold anything.
var keptHeaders = map[string]bool{
	schemas.ContentTypeHeader:     true,
	schemas.HeaderResourceType:    true,
	schemas.HeaderDeleted:         true,
	schemas.HeaderTransactionTime: true, // when the export ran: a date of no individual
}

// Processor is the deid stage's logic: each resource of <prefix>.unique.<Type>
// de-identified to <prefix>.deid.<Type>, keyed <Type>/<pseudonymised id>.
type Processor struct {
	Topics schemas.Topics
	Engine *Engine
	// Fingerprint is the HeaderConfig value (see ConfigFingerprint).
	Fingerprint string

	routes sync.Map // input topic → route
}

type route struct{ typ, out string }

func (p *Processor) routeOf(in string) (route, bool) {
	if r, ok := p.routes.Load(in); ok {
		return r.(route), true
	}
	layer, rt, ok := p.Topics.ParseLayerTopic(in)
	if !ok || layer != schemas.LayerUnique {
		return route{}, false
	}
	r := route{typ: rt, out: OutputTopic(p.Topics, rt)}
	p.routes.Store(in, r)
	return r, true
}

// OutputTopic is the topic deid writes resources of resourceType to.
func OutputTopic(t schemas.Topics, resourceType string) string {
	return t.Prefix + "." + Layer + "." + resourceType
}

// OutputPattern matches every deid topic (as schemas.Topics.LayerPattern does a layer's),
// for stages and sinks that read the de-identified layer.
func OutputPattern(t schemas.Topics) string {
	return t.LayerPattern(Layer)
}

// Process de-identifies one resource. A tombstone (a deleted resource) is passed on
// with its key pseudonymised as the resource's id would be.
func (p *Processor) Process(_ context.Context, in *stage.Record, _ stage.Store, out stage.Emitter) error {
	r, ok := p.routeOf(in.Topic)
	if !ok {
		return stage.Reject("type-mismatch", "", "topic %s is not a <prefix>.unique.<Type> topic", in.Topic)
	}
	headers := p.headers(in.Headers)
	if in.IsTombstone() {
		rt, id, err := schemas.ParseKey(in.Key)
		if err != nil || rt != r.typ {
			return stage.Reject("type-mismatch", "", "a tombstone's key is not <%s>/<id>", r.typ)
		}
		pid, err := p.Engine.PseudonymID(rt, id)
		if err != nil {
			return err
		}
		out.Emit(stage.Record{Topic: r.out, Key: schemas.Key(rt, pid), Headers: headers, Timestamp: in.Timestamp})
		return nil
	}
	res, err := p.Engine.Apply(make([]byte, 0, len(in.Value)), in.Value)
	if err != nil {
		return err
	}
	if res.Type != r.typ {
		return stage.Reject("type-mismatch", res.Type+".resourceType", "a %s on the topic of %s", res.Type, r.typ)
	}
	out.Emit(stage.Record{Topic: r.out, Key: schemas.Key(res.Type, res.ID), Value: res.JSON, Headers: headers, Timestamp: in.Timestamp})
	return nil
}

func (p *Processor) headers(in []stage.Header) []stage.Header {
	hs := make([]stage.Header, 0, len(in)+1)
	for _, h := range in {
		if keptHeaders[h.Key] {
			hs = append(hs, h)
		}
	}
	if p.Fingerprint != "" {
		hs = append(hs, stage.Header{Key: HeaderConfig, Value: []byte(p.Fingerprint)})
	}
	return hs
}

// ConfigFingerprint identifies a configuration by its rules and parameters, without
// its keys (a hash of a short key could be searched for it).
func ConfigFingerprint(c *Config) string {
	clean := *c
	clean.Parameters.CryptoHashKey, clean.Parameters.DateShiftKey, clean.Parameters.EncryptKey = "", "", ""
	b, _ := json.Marshal(clean)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Definition declares the deid stage: its node of topo (which must have been made with
// TopologyOptions.Deidentify), <prefix>.unique.* → <prefix>.deid.*, stateless.
func Definition(topo schemas.Topology, cfg *Config, keys Keys, opts ...Option) stage.Definition {
	t := topo.Topics
	return stage.Definition{
		Node:                 topo.MustNode(schemas.NodeDeid),
		Topics:               t,
		ConcurrentPartitions: true,
		NewProcessor: func() (stage.Processor, error) {
			e, err := New(cfg, keys, opts...)
			if err != nil {
				return nil, err
			}
			return &Processor{Topics: t, Engine: e, Fingerprint: ConfigFingerprint(cfg)}, nil
		},
	}
}
