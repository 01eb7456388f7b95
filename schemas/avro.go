package schemas

// Avro encoding of OMOP rows on the omop.<table> topics. Two wire formats exist:
//
//	single-object (default)  C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the
//	                         schema's canonical form | Avro binary body
//	Confluent                00 | 4-byte big-endian Schema Registry id | Avro binary body
//
// Codec writes the first and needs nothing but the embedded schemas; RegistryCodec
// (avro_registry.go) writes the second when a Schema Registry is configured. Both read
// both, telling them apart by the first byte, and both take and return plain Go rows
// (avro_row.go), never goavro's union wrappers.
//
// Encoding is hand-written (appendWith, appendValue); decoding is goavro's. The encoder
// exists because it is the mapping stage's hot path: through goavro's generic, map-based
// encoder (plus the native map of union wrappers it needs per row) Avro encoding was about
// a third of the mapper's CPU, some 3.7 µs of 12 µs per record; written directly it takes
// a fifth of that or less (docs/performance.md). It can stay small because our schemas
// are: flat records of int, long, double, string, boolean, date, timestamp-micros and
// local-timestamp-micros,
// each required or in a ["null", T] union (parseFieldType refuses anything else). goavro
// remains the reference: TestEncoderMatchesGoavro checks every table byte for byte
// against goavro's output and decodes the result back with goavro.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/linkedin/goavro/v2"
)

// Encoder turns an OMOP row into a record value.
type Encoder interface {
	// Encode returns the encoded row, in a new slice the caller owns.
	Encode(ctx context.Context, table string, row map[string]any) ([]byte, error)
	// ContentType is the content-type header value for what Encode writes.
	ContentType() string
}

// Decoder turns a record value back into its table and row.
type Decoder interface {
	Decode(ctx context.Context, value []byte) (table string, row map[string]any, err error)
}

// Error classes. Every encode and decode error wraps one of these (or ErrUnknownTable),
// except registry failures, which are infrastructure trouble worth retrying rather than
// bad data worth dead-lettering.
var (
	// ErrInvalidRow: the row does not fit the table's schema (wrong type, missing
	// required column, unknown column, string too long).
	ErrInvalidRow = errors.New("invalid OMOP row")
	// ErrMalformed: the bytes are not a value in either wire format (empty, unknown
	// magic, truncated, trailing bytes).
	ErrMalformed = errors.New("malformed Avro value")
	// ErrUnknownSchema: the value names a schema (fingerprint or registry id) that is not
	// one of the OMOP tables.
	ErrUnknownSchema = errors.New("unknown Avro writer schema")
	// ErrNoRegistry: a Confluent-framed value reached a Codec without a registry.
	ErrNoRegistry = errors.New("the Confluent wire format needs a schema registry")
)

// Wire-format magic bytes.
const (
	singleObjectMagic0 = 0xC3
	singleObjectMagic1 = 0x01
	confluentMagic     = 0x00
	singleObjectHeader = 10 // magic + fingerprint
	confluentHeader    = 5  // magic + schema id
)

// Codec encodes and decodes the rows of every OMOP table with goavro codecs built once
// from the embedded schemas. It writes Avro single-object encoding. It is safe for
// concurrent use.
type Codec struct {
	tables        map[string]*tableCodec
	byFingerprint map[uint64]*tableCodec
}

var (
	_ Encoder = (*Codec)(nil)
	_ Decoder = (*Codec)(nil)
)

// tableCodec is the compiled form of one table's schema.
type tableCodec struct {
	table       *Table
	avro        *goavro.Codec
	fingerprint uint64
	soeHeader   []byte // C3 01 + fingerprint
	scratch     sync.Pool
}

// encodeScratch is a buffer reused across encodes of one table, so that Encode allocates
// only the exactly sized copy it returns.
type encodeScratch struct {
	buf []byte
}

// NewCodecs compiles the codecs of every OMOP table.
func NewCodecs() (*Codec, error) {
	c := &Codec{
		tables:        make(map[string]*tableCodec, len(omopTables)),
		byFingerprint: make(map[uint64]*tableCodec, len(omopTables)),
	}
	for _, name := range omopTables {
		t, err := OMOPTable(name)
		if err != nil {
			return nil, err
		}
		tc, err := newTableCodec(t)
		if err != nil {
			return nil, err
		}
		if other, dup := c.byFingerprint[tc.fingerprint]; dup {
			return nil, fmt.Errorf("OMOP tables %s and %s share fingerprint %#016x", other.table.Name, name, tc.fingerprint)
		}
		c.tables[name] = tc
		c.byFingerprint[tc.fingerprint] = tc
		// Also accept the fingerprint goavro and the Python avro library compute (see
		// canonicalForm), so values other tools wrote with them are read, not refused.
		if _, taken := c.byFingerprint[tc.avro.Rabin]; !taken {
			c.byFingerprint[tc.avro.Rabin] = tc
		}
	}
	return c, nil
}

func newTableCodec(t *Table) (*tableCodec, error) {
	ac, err := goavro.NewCodec(t.Schema)
	if err != nil {
		return nil, fmt.Errorf("compile Avro schema of %s: %w", t.Name, err)
	}
	tc := &tableCodec{
		table:       t,
		avro:        ac,
		fingerprint: crc64Avro([]byte(canonicalForm(t))),
	}
	tc.soeHeader = binary.LittleEndian.AppendUint64([]byte{singleObjectMagic0, singleObjectMagic1}, tc.fingerprint)
	tc.scratch.New = func() any { return &encodeScratch{buf: make([]byte, 0, 512)} }
	return tc, nil
}

func (c *Codec) table(name string) (*tableCodec, error) {
	tc, ok := c.tables[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownTable, name)
	}
	return tc, nil
}

// Fingerprint returns the CRC-64-AVRO (Rabin) fingerprint of a table's schema in Parsing
// Canonical Form, as written in single-object headers. Docs, defaults and the custom
// attributes (cdmType, maxLength) are not part of the canonical form, so editing them
// keeps the fingerprint.
func (c *Codec) Fingerprint(table string) (uint64, error) {
	tc, err := c.table(table)
	if err != nil {
		return 0, err
	}
	return tc.fingerprint, nil
}

// canonicalForm is the Avro Parsing Canonical Form of a table's schema, built from its
// metadata. We build it rather than take goavro's because goavro keeps a logical type's
// base as {"type":"int"} where the specification's reference implementation (Java's
// SchemaNormalization, which Java's single-object BinaryMessageEncoder uses) reduces it
// to "int" (linkedin/goavro#174). Every table has a timestamp, so with goavro's form no
// Java consumer would recognise our fingerprints. (The Python avro library, 1.12,
// computes goavro's form; decoding accepts both.)
func canonicalForm(t *Table) string {
	var b strings.Builder
	b.WriteString(`{"name":"` + OMOPNamespace + "." + t.Name + `","type":"record","fields":[`)
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteByte(',')
		}
		prim := c.Type.String()
		switch c.Type {
		case TypeDate:
			prim = "int"
		case TypeTimestamp, TypeLocalTimestamp:
			prim = "long"
		}
		if c.Required {
			b.WriteString(`{"name":"` + c.Name + `","type":"` + prim + `"}`)
		} else {
			b.WriteString(`{"name":"` + c.Name + `","type":["null","` + prim + `"]}`)
		}
	}
	b.WriteString("]}")
	return b.String()
}

// crc64AvroTable drives crc64Avro, the fingerprint function of the Avro specification.
var crc64AvroTable = func() (table [256]uint64) {
	for i := range table {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (crc64AvroEmpty & -(fp & 1))
		}
		table[i] = fp
	}
	return table
}()

const crc64AvroEmpty = 0xc15d213aa4d7a795

func crc64Avro(data []byte) uint64 {
	fp := uint64(crc64AvroEmpty)
	for _, b := range data {
		fp = (fp >> 8) ^ crc64AvroTable[byte(fp)^b]
	}
	return fp
}

// ContentType is ContentTypeAvro: single-object encoding.
func (c *Codec) ContentType() string { return ContentTypeAvro }

// Encode returns row in single-object encoding; see avro_row.go for the value rules.
func (c *Codec) Encode(_ context.Context, table string, row map[string]any) ([]byte, error) {
	tc, err := c.table(table)
	if err != nil {
		return nil, err
	}
	return tc.encode(nil, row)
}

// AppendEncode appends row in single-object encoding to dst. On error dst is returned
// unchanged.
func (c *Codec) AppendEncode(_ context.Context, dst []byte, table string, row map[string]any) ([]byte, error) {
	tc, err := c.table(table)
	if err != nil {
		return dst, err
	}
	return tc.appendEncode(dst, nil, row)
}

// Decode reads a single-object encoded value. A Confluent-framed value gives
// ErrNoRegistry; use a RegistryCodec to read those.
func (c *Codec) Decode(_ context.Context, value []byte) (string, map[string]any, error) {
	if len(value) > 0 && value[0] == confluentMagic {
		return "", nil, fmt.Errorf("%w (value starts with 0x00)", ErrNoRegistry)
	}
	return c.DecodeSingle(value)
}

// DecodeSingle reads a single-object encoded value, finding the table by the schema
// fingerprint.
func (c *Codec) DecodeSingle(value []byte) (string, map[string]any, error) {
	if len(value) == 0 {
		return "", nil, fmt.Errorf("%w: empty value", ErrMalformed)
	}
	if value[0] != singleObjectMagic0 {
		return "", nil, fmt.Errorf("%w: first byte %#02x is neither single-object (0xc3) nor Confluent (0x00)", ErrMalformed, value[0])
	}
	fp, body, err := goavro.FingerprintFromSOE(value)
	if err != nil {
		return "", nil, fmt.Errorf("%w: single-object header: %v", ErrMalformed, err)
	}
	tc, ok := c.byFingerprint[fp]
	if !ok {
		return "", nil, fmt.Errorf("%w: single-object fingerprint %#016x is not an OMOP table schema", ErrUnknownSchema, fp)
	}
	row, err := decodeBody(tc.avro, tc.table.Name, tc.table, body)
	return tc.table.Name, row, err
}

// encode returns row encoded in a slice of exactly its size: in single-object encoding
// when header is nil, else as header followed by the binary body.
func (tc *tableCodec) encode(header []byte, row map[string]any) ([]byte, error) {
	s := tc.scratch.Get().(*encodeScratch)
	defer tc.scratch.Put(s)
	buf, err := tc.appendWith(s.buf[:0], header, row)
	if err != nil {
		return nil, err
	}
	s.buf = buf // keep the grown buffer for the next row
	return append([]byte(nil), buf...), nil
}

// appendEncode is encode appending to dst; on error it returns dst unchanged.
func (tc *tableCodec) appendEncode(dst, header []byte, row map[string]any) ([]byte, error) {
	return tc.appendWith(dst, header, row)
}

// appendWith validates row and appends header (the single-object header when nil) and
// the record's Avro binary body to dst: the columns in schema order, each nullable one as
// its union branch index (0 null, 1 the value) followed by the value. On error it returns
// dst with its length unchanged.
func (tc *tableCodec) appendWith(dst, header []byte, row map[string]any) ([]byte, error) {
	if header == nil {
		// Not goavro's SingleFromNative: it would write goavro's own fingerprint.
		header = tc.soeHeader
	}
	out := append(dst, header...)
	present := 0
	var err error
	for i := range tc.table.Columns {
		col := &tc.table.Columns[i]
		v, ok := row[col.Name]
		if ok {
			present++
		}
		if v == nil {
			switch {
			case !col.Required:
				out = append(out, 0) // union branch 0: null
				continue
			case col.def != nil:
				v = col.def
			default:
				return dst, fmt.Errorf("%w: %s: required column %s is missing or nil", ErrInvalidRow, tc.table.Name, col.Name)
			}
		} else if !col.Required {
			out = append(out, 2) // union branch 1 (zig-zag): the value
		}
		if out, err = appendValue(out, col, v); err != nil {
			return dst, fmt.Errorf("%w: %s: %w", ErrInvalidRow, tc.table.Name, err)
		}
	}
	if present != len(row) {
		for name := range row {
			if _, ok := tc.table.index[name]; !ok {
				return dst, fmt.Errorf("%w: %s has no column %q", ErrInvalidRow, tc.table.Name, name)
			}
		}
	}
	return out, nil
}

// decodeBody decodes a binary record body with codec and unwraps its unions into plain
// values. The whole body must be one record: leftovers mean a wrong schema or corruption.
//
// goavro (v2.15) does not know local-timestamp-micros and, as the specification asks of
// an unknown logical type, reads it as its long; those columns are turned into
// time.Time here (the wall clock, in UTC), so a reader of the map form sees a time
// whichever timestamp type the writer's schema gave a column. The writer's schema is
// the one the value names, so values written before a column changed type decode too.
// columns is the writer schema's metadata (nil: convert no column).
func decodeBody(codec *goavro.Codec, table string, columns *Table, body []byte) (map[string]any, error) {
	native, rest, err := codec.NativeFromBinary(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s body (%d bytes): %v", ErrMalformed, table, len(body), err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %s body has %d trailing bytes", ErrMalformed, table, len(rest))
	}
	row, ok := native.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s schema decodes to %T, not a record", ErrUnknownSchema, table, native)
	}
	// Our records are flat, so any map value is a union wrapper {"branch": value}.
	for name, v := range row {
		if w, ok := v.(map[string]any); ok {
			for _, inner := range w {
				row[name] = inner
				v = inner
			}
		}
		if n, ok := v.(int64); ok && columns != nil {
			if i, known := columns.index[name]; known && columns.Columns[i].Type == TypeLocalTimestamp {
				row[name] = time.UnixMicro(n).UTC()
			}
		}
	}
	return row, nil
}
