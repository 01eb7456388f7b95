package rows

import (
	"encoding/binary"
	"math"

	"github.com/apache/iceberg-go"
	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// The OMOP layer's fast path reads a single-object encoded row of one of this build's
// own schemas straight into the table's Parquet values, in one pass over the Avro body,
// with no map and no boxed values; the row's strings are copied into one allocation of
// their own, so that the row, which waits in the batch until its commit, does not keep
// the decompressed fetch buffer its record came in alive (that doubled sink-omop's live
// heap). Decoding through goavro into a map and converting that was about 60 % of
// sink-omop's CPU and most of its garbage.
//
// It only ever accepts: anything it does not recognise as a well-formed row of a known
// schema whose columns all convert (another fingerprint, a Confluent-framed value, a
// malformed body, a null in a required column, a rejected row) goes to the goavro path,
// which decides as before, with its own error. So the fast path never changes what is
// rejected or why, and TestOMOPFastPathMatchesGoavro holds its rows equal to the goavro
// path's on every row the mapping stage emits for the generated and shared data sets.

// omopFast is the fast path's per-schema plan, by single-object fingerprint.
type omopFast struct {
	byFingerprint map[uint64]*omopPlan
}

// omopPlan reads one table's Avro body: its columns in schema order, and where each
// lands in the layout.
type omopPlan struct {
	table   *schemas.Table
	layout  *lakehouse.Layout
	columns []schemas.Column
	// dest[i] is the layout column of Avro column i, -1 for envelope columns that are
	// instructions, not table columns.
	dest []int
	// source[j] is the Avro column of layout column j, -1 for the Kafka coordinates.
	source []int
	// key, deleted, replaces and component are the envelope columns' Avro positions
	// (-1 when the schema has none).
	key, deleted, replaces, component int
	partition, offset                 int // layout positions of the Kafka coordinates
}

// newOMOPFast builds the plans of every OMOP table from codec's fingerprints.
func newOMOPFast(codec *schemas.Codec) (*omopFast, error) {
	f := &omopFast{byFingerprint: map[uint64]*omopPlan{}}
	for _, name := range schemas.OMOPTables() {
		t, err := schemas.OMOPTable(name)
		if err != nil {
			return nil, err
		}
		l, err := lakehouse.OMOPLayout(name)
		if err != nil {
			return nil, err
		}
		fp, err := codec.Fingerprint(name)
		if err != nil {
			return nil, err
		}
		p := &omopPlan{table: t, layout: l, columns: t.Columns, dest: make([]int, len(t.Columns)), source: make([]int, len(l.Columns)),
			key: -1, deleted: -1, replaces: -1, component: -1, partition: -1, offset: -1}
		avroIndex := map[string]int{}
		for i, c := range t.Columns {
			avroIndex[c.Name] = i
			p.dest[i] = -1
			switch c.Name {
			case schemas.ColFHIRKey:
				p.key = i
			case schemas.ColFHIRDeleted:
				p.deleted = i
			case schemas.ColFHIRReplaces:
				p.replaces = i
			case schemas.ColFHIRComponent:
				p.component = i
			}
		}
		for j, c := range l.Columns {
			p.source[j] = -1
			switch c.Name {
			case lakehouse.ColKafkaPartition:
				p.partition = j
				continue
			case lakehouse.ColKafkaOffset:
				p.offset = j
				continue
			}
			i, ok := avroIndex[c.Name]
			if !ok {
				continue // no such Avro column: the plan is not used (convertible says so)
			}
			p.source[j], p.dest[i] = i, j
		}
		f.byFingerprint[fp] = p
	}
	return f, nil
}

// avroValue is one decoded Avro column: null, a number (int, long, date, timestamps,
// boolean as 0/1, double as its bits) or a string (a view of the record's value).
type avroValue struct {
	null bool
	n    int64
	s    []byte
}

// decodeScratch holds one row's decoded columns; reused across the rows of a worker.
type decodeScratch struct {
	vals []avroValue
}

// change is Change for a value the fast path reads; ok false sends it down the goavro
// path, which then decides.
func (f *omopFast) change(in *stage.Record, l *lakehouse.Layout, dst parquet.Row, sc *decodeScratch) (Change, bool) {
	v := in.Value
	if len(v) < 10 || v[0] != 0xC3 || v[1] != 0x01 {
		return Change{}, false
	}
	p := f.byFingerprint[binary.LittleEndian.Uint64(v[2:10])]
	if p == nil || p.layout.Name != l.Name || p.key < 0 {
		return Change{}, false
	}
	if cap(sc.vals) < len(p.columns) {
		sc.vals = make([]avroValue, len(p.columns))
	}
	vals := sc.vals[:len(p.columns)]
	if !p.decode(v[10:], vals) {
		return Change{}, false
	}
	key := vals[p.key]
	if key.null || len(key.s) == 0 {
		return Change{}, false
	}
	_, known := in.Header(HeaderPreviousVersion)
	deleted := p.deleted >= 0 && !vals[p.deleted].null && vals[p.deleted].n == 1
	var replaces bool
	if p.replaces >= 0 && !vals[p.replaces].null {
		replaces = vals[p.replaces].n == 1
	} else {
		// As the goavro path: without the flag, the first row of a version replaces.
		replaces = p.component < 0 || vals[p.component].null || vals[p.component].n == 0
	}
	c := Change{Key: string(key.s), Replaces: replaces || deleted, Known: known}
	if deleted {
		return c, true
	}
	p.ownStrings(vals)
	row, ok := p.row(dst, vals, in)
	if !ok {
		return Change{}, false
	}
	c.Row = row
	return c, true
}

// decode reads the Avro body into vals, reporting false for anything but a well-formed
// body of exactly the plan's columns.
func (p *omopPlan) decode(b []byte, vals []avroValue) bool {
	for i := range p.columns {
		col := &p.columns[i]
		vals[i] = avroValue{}
		if !col.Required {
			branch, n := binary.Varint(b) // the union's branch index, a zig-zag long
			if n <= 0 || (branch != 0 && branch != 1) {
				return false
			}
			b = b[n:]
			if branch == 0 {
				vals[i].null = true
				continue
			}
		}
		switch col.Type {
		case schemas.TypeInt, schemas.TypeDate:
			x, n := binary.Varint(b)
			if n <= 0 || x < math.MinInt32 || x > math.MaxInt32 {
				return false
			}
			vals[i].n, b = x, b[n:]
		case schemas.TypeLong, schemas.TypeTimestamp, schemas.TypeLocalTimestamp:
			x, n := binary.Varint(b)
			if n <= 0 {
				return false
			}
			vals[i].n, b = x, b[n:]
		case schemas.TypeDouble:
			if len(b) < 8 {
				return false
			}
			vals[i].n, b = int64(binary.LittleEndian.Uint64(b)), b[8:]
		case schemas.TypeBoolean:
			if len(b) < 1 || b[0] > 1 {
				return false
			}
			vals[i].n, b = int64(b[0]), b[1:]
		case schemas.TypeString:
			size, n := binary.Varint(b)
			if n <= 0 || size < 0 || size > int64(len(b)-n) {
				return false
			}
			b = b[n:]
			vals[i].s, b = b[:size:size], b[size:]
		default:
			return false
		}
	}
	return len(b) == 0
}

// ownStrings moves the strings of the columns that become table values out of the
// record's bytes into one new allocation.
func (p *omopPlan) ownStrings(vals []avroValue) {
	size := 0
	for i := range vals {
		if p.dest[i] >= 0 {
			size += len(vals[i].s)
		}
	}
	if size == 0 {
		return
	}
	buf := make([]byte, 0, size)
	for i := range vals {
		if s := vals[i].s; p.dest[i] >= 0 && len(s) > 0 {
			start := len(buf)
			buf = append(buf, s...)
			vals[i].s = buf[start:len(buf):len(buf)]
		}
	}
}

// row appends the layout's values for vals, reporting false where the goavro path
// would reject the row or convert differently.
func (p *omopPlan) row(dst parquet.Row, vals []avroValue, in *stage.Record) (parquet.Row, bool) {
	l := p.layout
	for j, c := range l.Columns {
		switch j {
		case p.partition:
			dst = put(dst, l, j, parquet.Int32Value(in.Partition))
			continue
		case p.offset:
			dst = put(dst, l, j, parquet.Int64Value(in.Offset))
			continue
		}
		i := p.source[j]
		if i < 0 {
			return dst, false
		}
		v := &vals[i]
		if v.null {
			if c.Required {
				return dst, false
			}
			dst = putNull(dst, j)
			continue
		}
		pv, ok := parquetValue(c.Type, p.columns[i].Type, v)
		if !ok {
			return dst, false
		}
		dst = put(dst, l, j, pv)
	}
	return dst, true
}

// parquetValue converts a decoded Avro value to the Parquet value of an Iceberg column,
// as icebergValue does for the goavro path's Go values; false for pairs it does not
// convert, which the goavro path then handles.
func parquetValue(t iceberg.PrimitiveType, a schemas.ColumnType, v *avroValue) (parquet.Value, bool) {
	switch {
	case t == iceberg.PrimitiveTypes.Int32 && a == schemas.TypeInt:
		return parquet.Int32Value(int32(v.n)), true
	case t == iceberg.PrimitiveTypes.Int64 && (a == schemas.TypeLong || a == schemas.TypeInt):
		return parquet.Int64Value(v.n), true
	case t == iceberg.PrimitiveTypes.Float64 && a == schemas.TypeDouble:
		return parquet.DoubleValue(math.Float64frombits(uint64(v.n))), true
	case t == iceberg.PrimitiveTypes.String && a == schemas.TypeString:
		return parquet.ByteArrayValue(v.s), true
	case t == iceberg.PrimitiveTypes.Bool && a == schemas.TypeBoolean:
		return parquet.BooleanValue(v.n == 1), true
	case t == iceberg.PrimitiveTypes.Date && a == schemas.TypeDate:
		return parquet.Int32Value(int32(v.n)), true
	case t == iceberg.PrimitiveTypes.Timestamp && (a == schemas.TypeTimestamp || a == schemas.TypeLocalTimestamp):
		// The wall clock of the instant read in UTC, or the local timestamp itself: the
		// number as written, both ways.
		return parquet.Int64Value(v.n), true
	case t == iceberg.PrimitiveTypes.TimestampTz && a == schemas.TypeTimestamp:
		return parquet.Int64Value(v.n), true
	}
	return parquet.Value{}, false
}
