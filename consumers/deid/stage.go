package deid

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"sync/atomic"

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

// keptHeader reports whether an output record carries the input header key. The rest
// are dropped: the provenance headers name the source file and line (a way back to the
// identified record) and the export's status URL, and a header nobody declared could
// hold anything.
func keptHeader(key string) bool {
	switch key {
	case schemas.ContentTypeHeader, schemas.HeaderResourceType, schemas.HeaderDeleted,
		schemas.HeaderTransactionTime: // when the export ran: a date of no individual
		return true
	}
	return false
}

// Processor is the deid stage's logic: each resource of <prefix>.unique.<Type>
// de-identified to <prefix>.deid.<Type>, keyed <Type>/<pseudonymised id>.
type Processor struct {
	Topics schemas.Topics
	Engine *Engine
	// Fingerprint is the HeaderConfig value (see ConfigFingerprint).
	Fingerprint string

	routes sync.Map // input topic → route
	// lastHeaders is the last output header set made: records of a topic carry the same
	// headers, and the set is read only (the runtime copies it), so it is shared.
	lastHeaders atomic.Pointer[[]stage.Header]
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
	typ, key, value, err := p.Engine.applyRecord(in.Value)
	if err != nil {
		return err
	}
	if typ != r.typ {
		return stage.Reject("type-mismatch", typ+".resourceType", "a %s on the topic of %s", typ, r.typ)
	}
	out.Emit(stage.Record{Topic: r.out, Key: key, Value: value, Headers: headers, Timestamp: in.Timestamp})
	return nil
}

func (p *Processor) headers(in []stage.Header) []stage.Header {
	if last := p.lastHeaders.Load(); last != nil && p.sameHeaders(*last, in) {
		return *last
	}
	hs := make([]stage.Header, 0, len(in)+1)
	for _, h := range in {
		if keptHeader(h.Key) {
			// The set outlives this record: its values are its own.
			hs = append(hs, stage.Header{Key: h.Key, Value: bytes.Clone(h.Value)})
		}
	}
	if p.Fingerprint != "" {
		hs = append(hs, stage.Header{Key: HeaderConfig, Value: []byte(p.Fingerprint)})
	}
	hs = hs[:len(hs):len(hs)]
	p.lastHeaders.Store(&hs)
	return hs
}

// sameHeaders reports whether headers would make of in what it made of the set hs.
func (p *Processor) sameHeaders(hs, in []stage.Header) bool {
	k := 0
	for _, h := range in {
		if !keptHeader(h.Key) {
			continue
		}
		if k >= len(hs) || hs[k].Key != h.Key || !bytes.Equal(hs[k].Value, h.Value) {
			return false
		}
		k++
	}
	if p.Fingerprint != "" {
		return k == len(hs)-1 && hs[k].Key == HeaderConfig && string(hs[k].Value) == p.Fingerprint
	}
	return k == len(hs)
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
		ConcurrentRecords:    true, // a resource's pseudonyms and date shift come from keys, not from earlier records
		NewProcessor: func() (stage.Processor, error) {
			e, err := New(cfg, keys, opts...)
			if err != nil {
				return nil, err
			}
			return &Processor{Topics: t, Engine: e, Fingerprint: ConfigFingerprint(cfg)}, nil
		},
	}
}
