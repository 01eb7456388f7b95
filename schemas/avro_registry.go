package schemas

// The Confluent wire format: each table's schema is registered under the subject
// "<topic>-value" (TopicNameStrategy), and every value carries the registry's id for it.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/linkedin/goavro/v2"
)

// SchemaRegistry is what RegistryCodec needs of a Confluent-compatible Schema Registry.
// schemas/srclient implements it over franz-go's client; the contract package itself
// imports no network client, so the stages that read the contract need none either.
type SchemaRegistry interface {
	// Register registers an Avro schema under subject (idempotently: registering a
	// registered schema returns its id) and returns its id.
	Register(ctx context.Context, subject, schema string) (int, error)
	// Lookup returns the schema registered under id; found is false when the registry
	// has no such id.
	Lookup(ctx context.Context, id int) (s RegisteredSchema, found bool, err error)
}

// RegisteredSchema is a schema as a registry holds it.
type RegisteredSchema struct {
	Schema string
	// Type is the registry's schema type: "AVRO" (or "", which the registry API means
	// as Avro), "PROTOBUF", "JSON".
	Type string
}

// RegistryCodec writes the Confluent wire format, registering each table's schema with a
// Schema Registry the first time a row of that table is encoded, and reads both wire
// formats. Ids are cached both ways for the life of the RegistryCodec, so the registry is
// asked once per table and once per unseen id. It is safe for concurrent use.
type RegistryCodec struct {
	codec    *Codec
	registry SchemaRegistry
	topics   Topics

	mu   sync.RWMutex
	ids  map[string]int          // table → id its schema is registered under
	byID map[int]*registryWriter // id → how to read values written with it
}

var (
	_ Encoder = (*RegistryCodec)(nil)
	_ Decoder = (*RegistryCodec)(nil)
)

// registryWriter is what a registry id resolves to: one of our tables, read with our
// codec when the registered schema is ours, or with a codec built from the registered
// (writer's) schema when it is another version of an OMOP table's schema.
type registryWriter struct {
	table   string
	avro    *goavro.Codec
	columns *Table // the writer schema's columns, for decodeBody's timestamp conversion
}

// NewRegistryCodec returns a RegistryCodec over codec's schemas that registers and looks
// up schemas in registry. topics gives the topic names the subjects derive from; a zero
// Topics means the default prefix.
func NewRegistryCodec(codec *Codec, registry SchemaRegistry, topics Topics) *RegistryCodec {
	if topics.Prefix == "" {
		topics.Prefix = DefaultPrefix
	}
	return &RegistryCodec{
		codec:    codec,
		registry: registry,
		topics:   topics,
		ids:      make(map[string]int),
		byID:     make(map[int]*registryWriter),
	}
}

// Subject is the registry subject of a table's value schema: "<topic>-value".
func (r *RegistryCodec) Subject(table string) string {
	return r.topics.OMOP(table) + "-value"
}

// ContentType is ContentTypeAvroConfluent.
func (r *RegistryCodec) ContentType() string { return ContentTypeAvroConfluent }

// SchemaID returns the registry id of a table's schema, registering the schema under
// Subject(table) on first use. Registering an already registered schema is idempotent in
// the registry, so several processes may race to do it.
func (r *RegistryCodec) SchemaID(ctx context.Context, table string) (int, error) {
	r.mu.RLock()
	id, ok := r.ids[table]
	r.mu.RUnlock()
	if ok {
		return id, nil
	}
	tc, err := r.codec.table(table)
	if err != nil {
		return 0, err
	}
	subject := r.Subject(table)
	// RegisterSchema rather than CreateSchema: the id is all we need, and CreateSchema
	// spends a second request fetching details.
	id, err = r.registry.Register(ctx, subject, tc.table.Schema)
	if err != nil {
		return 0, fmt.Errorf("register %s schema under subject %s: %w", table, subject, err)
	}
	r.mu.Lock()
	r.ids[table] = id
	r.byID[id] = &registryWriter{table: table, avro: tc.avro}
	r.mu.Unlock()
	return id, nil
}

// Encode returns row in the Confluent wire format.
func (r *RegistryCodec) Encode(ctx context.Context, table string, row map[string]any) ([]byte, error) {
	tc, header, err := r.header(ctx, table)
	if err != nil {
		return nil, err
	}
	return tc.encode(header[:], row)
}

// AppendEncode appends row in the Confluent wire format to dst. On error dst is returned
// unchanged.
func (r *RegistryCodec) AppendEncode(ctx context.Context, dst []byte, table string, row map[string]any) ([]byte, error) {
	tc, header, err := r.header(ctx, table)
	if err != nil {
		return dst, err
	}
	return tc.appendEncode(dst, header[:], row)
}

func (r *RegistryCodec) header(ctx context.Context, table string) (*tableCodec, [confluentHeader]byte, error) {
	var h [confluentHeader]byte
	tc, err := r.codec.table(table)
	if err != nil {
		return nil, h, err
	}
	id, err := r.SchemaID(ctx, table)
	if err != nil {
		return nil, h, err
	}
	h[0] = confluentMagic
	binary.BigEndian.PutUint32(h[1:], uint32(id))
	return tc, h, nil
}

// Decode reads a value in either wire format: 0x00 starts a Confluent-framed value,
// 0xC3 0x01 a single-object one.
func (r *RegistryCodec) Decode(ctx context.Context, value []byte) (string, map[string]any, error) {
	if len(value) == 0 || value[0] != confluentMagic {
		return r.codec.DecodeSingle(value)
	}
	if len(value) < confluentHeader {
		return "", nil, fmt.Errorf("%w: Confluent header needs %d bytes, value has %d", ErrMalformed, confluentHeader, len(value))
	}
	id := int(binary.BigEndian.Uint32(value[1:confluentHeader]))
	w, err := r.writer(ctx, id)
	if err != nil {
		return "", nil, err
	}
	row, err := decodeBody(w.avro, w.table, w.columns, value[confluentHeader:])
	return w.table, row, err
}

// writer resolves a registry id, asking the registry on a cache miss.
func (r *RegistryCodec) writer(ctx context.Context, id int) (*registryWriter, error) {
	r.mu.RLock()
	w, ok := r.byID[id]
	r.mu.RUnlock()
	if ok {
		return w, nil
	}
	s, found, err := r.registry.Lookup(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("look up schema id %d: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: schema id %d is not in the registry", ErrUnknownSchema, id)
	}
	if s.Type != "" && s.Type != "AVRO" {
		return nil, fmt.Errorf("%w: schema id %d is %s, not Avro", ErrUnknownSchema, id, s.Type)
	}
	ac, err := goavro.NewCodec(s.Schema)
	if err != nil {
		return nil, fmt.Errorf("%w: schema id %d does not compile: %v", ErrUnknownSchema, id, err)
	}
	table, err := omopRecordTable(s.Schema)
	if err != nil {
		return nil, fmt.Errorf("%w: schema id %d: %v", ErrUnknownSchema, id, err)
	}
	// Usually the id is our own schema; otherwise it is another release's version of the
	// table's schema, and the value is read with the schema it was written with, so the
	// row has that version's columns.
	tc := r.codec.tables[table]
	w = &registryWriter{table: table, avro: ac, columns: tc.table}
	if ac.CanonicalSchema() == tc.avro.CanonicalSchema() {
		w.avro = tc.avro
	} else if cols, err := parseTable([]byte(s.Schema)); err == nil {
		w.columns = cols
	} // else a schema beyond the types we write: its columns are converted by our types

	r.mu.Lock()
	r.byID[id] = w
	r.mu.Unlock()
	return w, nil
}

// omopRecordTable returns the table a record schema is for, judged by its full name.
func omopRecordTable(schema string) (string, error) {
	var rec struct {
		Type      string `json:"type"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal([]byte(schema), &rec); err != nil || rec.Type != "record" {
		return "", errors.New("not an Avro record schema")
	}
	ns, name := rec.Namespace, rec.Name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		ns, name = name[:i], name[i+1:]
	}
	if ns != OMOPNamespace {
		return "", fmt.Errorf("record %s.%s is not in namespace %s", ns, name, OMOPNamespace)
	}
	if _, err := OMOPTable(name); err != nil {
		return "", err
	}
	return name, nil
}
