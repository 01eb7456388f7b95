// Package dedupe is the stage between validate and the mappers: it forwards each
// resource version once. It reads <prefix>.valid.<Type> and writes <prefix>.unique.<Type>.
//
// Per key <Type>/<id> it remembers the last version it forwarded: a content hash, the
// meta.lastUpdated time and a numeric meta.versionId. A record is forwarded when it is
// new, newer (versionId, then lastUpdated) or different in content from the last one
// forwarded; exact repeats (same bytes) and stale versions (older than the last one
// forwarded) are dropped and counted by reason. Tombstones are forwarded and clear the
// key's state.
//
// A forwarded record whose key was forwarded before (an update, or the tombstone of a
// known resource) carries the header fhir.previous-version (schemas.HeaderPreviousVersion)
// with the versionId of the version it follows; a record of a key not forwarded before
// carries none. Sinks rely on it: without it, a record's rows are the first of its key
// and need no delete of earlier ones.
//
// Content is hashed as the exact bytes (xxhash64), without canonicalisation: the bytes
// are what the fetcher received, and an export re-serialised differently counts as
// changed content and is forwarded, which errs on the side of never losing a version.
//
// State lives in the runtime's partition stores, restored from the compacted changelog
// <prefix>.state.dedupe. Keys are stored as a 96-bit hash of the record key and values
// as 20 bytes, in a flat open-addressing table of 32-byte slots kept 64-80% full: 40-50
// bytes per key whatever the length of the resource ids (TestStoreBytesPerKey measures
// it; 1 million keys ≈ 45 MB).
package dedupe

import (
	"context"
	"encoding/binary"
	"math"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/schemas"
)

// Name is the dedupe stage's name, its node's in schemas.Topology.
const Name = schemas.NodeDedupe

// Decisions, the reason label of the decisions metric.
const (
	New       = "new"       // first version seen: forwarded
	Newer     = "newer"     // a later versionId or lastUpdated: forwarded
	Changed   = "changed"   // same or unknown version, different bytes: forwarded
	Deleted   = "deleted"   // a tombstone: forwarded, state cleared
	Duplicate = "duplicate" // same bytes as the last forwarded: dropped
	Stale     = "stale"     // older than the last forwarded: dropped
)

var mDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "fhirstream_dedupe_decisions_total",
	Help: "Dedupe decisions in committed batches, per input topic and reason (new, newer, changed, deleted forwarded; duplicate, stale dropped).",
}, []string{"topic", "reason"})

func init() { obs.Registry.MustRegister(mDecisions) }

// State is what dedupe remembers of the last version forwarded for a key.
type State struct {
	Hash        uint64 // xxhash64 of the value bytes
	LastUpdated int64  // meta.lastUpdated in Unix microseconds; math.MinInt64 when absent
	Version     int64  // meta.versionId when an integer in [0, MaxVersion]; -1 otherwise
	// OtherVersion is true when meta.versionId is present but not such an integer: the
	// state has no room for an arbitrary string, so only the fact is kept.
	OtherVersion bool
}

// StateSize is the encoded size of a State: hash, lastUpdated, and the version as 32 bits.
const StateSize = 20

// MaxVersion is the largest versionId kept; larger ones count as not numeric. The two
// 32-bit values above it encode "another versionId" and "no versionId".
const MaxVersion = math.MaxUint32 - 2

const (
	encodedNoVersion    = math.MaxUint32
	encodedOtherVersion = math.MaxUint32 - 1
)

// Encode appends the 20-byte encoding of s.
func (s State) Encode(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, s.Hash)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.LastUpdated))
	v := uint32(encodedNoVersion)
	switch {
	case s.Version >= 0 && s.Version <= MaxVersion:
		v = uint32(s.Version)
	case s.OtherVersion:
		v = encodedOtherVersion
	}
	return binary.BigEndian.AppendUint32(dst, v)
}

// DecodeState reads an encoded State; ok is false for anything else (a corrupt entry
// then counts as no state: the next version is forwarded, never lost).
func DecodeState(b []byte) (State, bool) {
	if len(b) != StateSize {
		return State{}, false
	}
	s := State{Hash: binary.BigEndian.Uint64(b), LastUpdated: int64(binary.BigEndian.Uint64(b[8:])), Version: -1}
	switch v := binary.BigEndian.Uint32(b[16:]); v {
	case encodedNoVersion:
	case encodedOtherVersion:
		s.OtherVersion = true
	default:
		s.Version = int64(v)
	}
	return s, true
}

// UnknownPreviousVersion is the value of schemas.HeaderPreviousVersion when the previous
// version had a versionId that is not a number dedupe keeps (see State.OtherVersion). It
// is not a valid FHIR id, so it cannot be mistaken for one.
const UnknownPreviousVersion = "?"

// PreviousVersion is the value of schemas.HeaderPreviousVersion for a record whose key
// was last forwarded with state s: its versionId, "" when it had none, or
// UnknownPreviousVersion.
func (s State) PreviousVersion() string {
	switch {
	case s.Version >= 0:
		return strconv.FormatInt(s.Version, 10)
	case s.OtherVersion:
		return UnknownPreviousVersion
	}
	return ""
}

// Decide says what to do with cur given the last forwarded state (nil: none).
func Decide(prev *State, cur State) (forward bool, reason string) {
	if prev == nil {
		return true, New
	}
	if cur.Hash == prev.Hash {
		return false, Duplicate
	}
	cmp := 0
	if cur.Version >= 0 && prev.Version >= 0 {
		cmp = compare(cur.Version, prev.Version)
	}
	if cmp == 0 && cur.LastUpdated != math.MinInt64 && prev.LastUpdated != math.MinInt64 {
		cmp = compare(cur.LastUpdated, prev.LastUpdated)
	}
	switch {
	case cmp < 0:
		return false, Stale
	case cmp > 0:
		return true, Newer
	}
	return true, Changed
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// StateOf computes the State of a resource's bytes.
func StateOf(value []byte) (State, error) {
	vid, lu, luOK, err := Meta(value)
	if err != nil {
		return State{}, err
	}
	s := State{Hash: xxhash.Sum64(value), LastUpdated: math.MinInt64, Version: -1}
	if luOK {
		s.LastUpdated = lu.UnixMicro()
	}
	if n, err := strconv.ParseInt(vid, 10, 64); err == nil && n >= 0 && n <= MaxVersion {
		s.Version = n
	} else if vid != "" {
		s.OtherVersion = true
	}
	return s, nil
}

// KeySize is the size of a store key.
const KeySize = 12

// StoreKey appends the 12-byte store key of a record key: 96 bits from two independent
// 64-bit hashes. A collision would compare two resources with each other; within one
// partition's store (the scope of a lookup) its odds are about 1 in 10^10 even for a
// billion keys.
func StoreKey(dst []byte, key []byte) []byte {
	d := digests.Get().(*xxhash.Digest)
	d.ResetWithSeed(0x9e3779b97f4a7c15)
	_, _ = d.Write(key)
	h2 := d.Sum64()
	digests.Put(d)
	dst = binary.BigEndian.AppendUint64(dst, xxhash.Sum64(key))
	return binary.BigEndian.AppendUint32(dst, uint32(h2))
}

var digests = sync.Pool{New: func() any { return xxhash.New() }}

// Processor is the dedupe stage's logic.
type Processor struct {
	Topics schemas.Topics

	outputs sync.Map // input topic → output topic, so a record costs no string building
}

// output returns the output topic of records from input topic in.
func (p *Processor) output(in string) (string, bool) {
	if out, ok := p.outputs.Load(in); ok {
		return out.(string), true
	}
	_, rt, ok := p.Topics.ParseLayerTopic(in)
	if !ok {
		return "", false
	}
	out := p.Topics.Unique(rt)
	p.outputs.Store(in, out)
	return out, true
}

// Process forwards or drops in according to Decide and records the new state.
func (p *Processor) Process(ctx context.Context, in *stage.Record, st stage.Store, out stage.Emitter) error {
	outTopic, ok := p.output(in.Topic)
	if !ok {
		return stage.Reject(schemas.ClassTypeMismatch, "", "topic %s is not a <prefix>.<layer>.<Type> topic", in.Topic)
	}
	var kb [KeySize]byte
	sk := StoreKey(kb[:0], in.Key)
	var prev State
	known := false
	if b, ok := st.Get(sk); ok {
		prev, known = DecodeState(b)
	}
	var reason string
	if in.IsTombstone() {
		st.Delete(sk)
		reason = Deleted
	} else {
		cur, err := StateOf(in.Value)
		if err != nil {
			return stage.Reject(schemas.ClassInvalidJSON, "", "value is not a JSON object")
		}
		var fwd bool
		if known {
			fwd, reason = Decide(&prev, cur)
		} else {
			fwd, reason = Decide(nil, cur)
		}
		if !fwd {
			stage.CountCommitted(ctx, mDecisions, in.Topic, reason)
			return nil
		}
		var vb [StateSize]byte
		st.Put(sk, cur.Encode(vb[:0]))
	}
	stage.CountCommitted(ctx, mDecisions, in.Topic, reason)
	out.Emit(stage.Record{Topic: outTopic, Key: in.Key, Value: in.Value, Headers: previousVersionHeader(in.Headers, prev, known), Timestamp: in.Timestamp})
	return nil
}

// previousVersionHeader returns the headers of a forwarded record: the input's, with
// schemas.HeaderPreviousVersion set when the key was forwarded before (known, last with
// state prev) and absent otherwise, whatever the input carried (a record replayed from
// the dead-letter topic may carry one from an earlier pass).
func previousVersionHeader(in []stage.Header, prev State, known bool) []stage.Header {
	has := false
	for i := range in {
		if in[i].Key == schemas.HeaderPreviousVersion {
			has = true
			break
		}
	}
	if !known && !has {
		return in // the common case of an initial load: no copy
	}
	// A new slice: the runtime reuses the input's header array for the next record.
	hs := make([]stage.Header, 0, len(in)+1)
	for _, h := range in {
		if h.Key != schemas.HeaderPreviousVersion {
			hs = append(hs, h)
		}
	}
	if known {
		hs = append(hs, stage.Header{Key: schemas.HeaderPreviousVersion, Value: []byte(prev.PreviousVersion())})
	}
	return hs
}

// Definition declares the dedupe stage: fhir.valid.* → fhir.unique.*, with its state in
// the changelog <prefix>.state.dedupe.
func Definition(topo schemas.Topology) stage.Definition {
	t := topo.Topics
	return stage.Definition{
		Node:                 topo.MustNode(schemas.NodeDedupe),
		Topics:               t,
		NewStore:             NewStore,
		ConcurrentPartitions: true,
		NewProcessor: func() (stage.Processor, error) {
			return &Processor{Topics: t}, nil
		},
	}
}
