package sink

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/schemas"
)

// layer is what differs between the OMOP and bronze sinks: which topics they read, and how
// a record becomes a row of which dataset.
type layer interface {
	// pattern is the regular expression of the input topics.
	pattern() string
	// dataset returns the dataset the records of topic go to.
	dataset(topic string) (*dataset, error)
	// appendRow appends the Parquet row of rec to dst. It returns a *rejection for bad
	// input and errSkip for records that carry no row.
	appendRow(ctx context.Context, ds *dataset, rec *kgo.Record, dst parquet.Row) (parquet.Row, error)
}

// rejection is bad input: the record goes to the dead-letter topic with this reason.
type rejection struct {
	class string
	msg   string
}

func (r *rejection) Error() string { return r.class + ": " + r.msg }

func reject(class, format string, args ...any) error {
	return &rejection{class: class, msg: fmt.Sprintf(format, args...)}
}

// errSkip marks a record that yields no row and is not an error: a Kafka tombstone (null
// value) on an OMOP topic, which compaction uses; the OMOP layer carries retractions as
// rows with _fhir_deleted, not as tombstones.
var errSkip = errors.New("record carries no row")

// omopLayer writes omop.<table> topics into omop/<table>/.
type omopLayer struct {
	topics  schemas.Topics
	decoder schemas.Decoder

	mu       sync.Mutex
	datasets map[string]*omopDataset // by topic
}

type omopDataset struct {
	*dataset
	table *schemas.Table
}

func newOMOPLayer(topics schemas.Topics, dec schemas.Decoder) *omopLayer {
	return &omopLayer{topics: topics, decoder: dec, datasets: map[string]*omopDataset{}}
}

func (l *omopLayer) pattern() string { return InputPattern(l.topics, LayerOMOP) }

// omopDatasetOf builds the Parquet layout of a CDM table from its schema metadata. The
// Parquet types follow the CDM v5.4 DDL: integer concept ids and counts INT32, record ids
// INT64 (the stated deviation: ids are 63-bit hashes), float DOUBLE, varchar STRING,
// date DATE, datetime TIMESTAMP(micros, not adjusted to UTC: a wall-clock time); the
// envelope's _fhir_last_updated TIMESTAMP(micros, UTC).
func omopDatasetOf(table string) (*omopDataset, error) {
	t, err := schemas.OMOPTable(table)
	if err != nil {
		return nil, err
	}
	cols := make([]column, 0, len(t.Columns)+len(kafkaColumns))
	var bloom []string
	for _, c := range t.Columns {
		var n parquet.Node
		switch c.Type {
		case schemas.TypeInt:
			n = nodeInt32
		case schemas.TypeLong:
			n = nodeInt64
		case schemas.TypeDouble:
			n = nodeDouble
		case schemas.TypeString:
			n = nodeString
		case schemas.TypeBoolean:
			n = nodeBoolean
		case schemas.TypeDate:
			n = nodeDate
		case schemas.TypeTimestamp:
			n = nodeTimestamp
		case schemas.TypeLocalTimestamp:
			n = nodeLocalTimestamp
		default:
			return nil, fmt.Errorf("OMOP table %s column %s: no Parquet type for %s", table, c.Name, c.Type)
		}
		cols = append(cols, column{name: c.Name, node: n, optional: !c.Required})
		if c.Name == "person_id" {
			bloom = append(bloom, c.Name)
		}
	}
	cols = append(cols, kafkaColumns...)
	return &omopDataset{dataset: newDataset(table, path.Join("omop", table), cols, bloom), table: t}, nil
}

func (l *omopLayer) dataset(topic string) (*dataset, error) {
	ds, err := l.omopDataset(topic)
	if err != nil {
		return nil, err
	}
	return ds.dataset, nil
}

func (l *omopLayer) omopDataset(topic string) (*omopDataset, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ds, ok := l.datasets[topic]; ok {
		return ds, nil
	}
	table, ok := l.topics.ParseOMOPTopic(topic)
	if !ok {
		return nil, fmt.Errorf("topic %s is not an OMOP topic under prefix %q", topic, l.topics.Prefix)
	}
	ds, err := omopDatasetOf(table)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	l.datasets[topic] = ds
	return ds, nil
}

func (l *omopLayer) appendRow(ctx context.Context, _ *dataset, rec *kgo.Record, dst parquet.Row) (parquet.Row, error) {
	if rec.Value == nil {
		return dst, errSkip
	}
	ds, err := l.omopDataset(rec.Topic)
	if err != nil {
		return dst, err
	}
	table, row, err := l.decoder.Decode(ctx, rec.Value)
	if err != nil {
		switch {
		case errors.Is(err, schemas.ErrMalformed), errors.Is(err, schemas.ErrUnknownSchema),
			errors.Is(err, schemas.ErrNoRegistry), errors.Is(err, schemas.ErrInvalidRow),
			errors.Is(err, schemas.ErrUnknownTable):
			return dst, reject("avro-decode", "%v", err)
		}
		// Anything else (a schema registry that did not answer) is worth retrying.
		return dst, fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	if table != ds.table.Name {
		return dst, reject("wrong-table", "record of table %s on the topic of table %s", table, ds.table.Name)
	}
	return appendOMOPRow(dst, ds, row, rec)
}

// appendOMOPRow converts a decoded row (schemas' Go values) to Parquet values in column
// order.
func appendOMOPRow(dst parquet.Row, ds *omopDataset, row map[string]any, rec *kgo.Record) (parquet.Row, error) {
	cols := ds.table.Columns
	for i := range cols {
		c := &cols[i]
		v := row[c.Name]
		if v == nil {
			if c.Required {
				return dst, reject("missing-column", "%s: required column %s is null", ds.table.Name, c.Name)
			}
			dst = appendNull(dst, i)
			continue
		}
		pv, ok := omopValue(c.Type, v)
		if !ok {
			return dst, reject("column-type", "%s: column %s (%s) holds a %T", ds.table.Name, c.Name, c.Type, v)
		}
		dst = appendValue(dst, i, !c.Required, pv)
	}
	n := len(cols)
	dst = append(dst, parquet.Int32Value(rec.Partition).Level(0, 0, n))
	dst = append(dst, parquet.Int64Value(rec.Offset).Level(0, 0, n+1))
	return dst, nil
}

// omopValue converts one decoded value; the Go types are those schemas' decoder returns.
func omopValue(t schemas.ColumnType, v any) (parquet.Value, bool) {
	switch t {
	case schemas.TypeInt:
		switch x := v.(type) {
		case int32:
			return parquet.Int32Value(x), true
		case int:
			return parquet.Int32Value(int32(x)), true
		}
	case schemas.TypeLong:
		switch x := v.(type) {
		case int64:
			return parquet.Int64Value(x), true
		case int:
			return parquet.Int64Value(int64(x)), true
		case int32:
			return parquet.Int64Value(int64(x)), true
		}
	case schemas.TypeDouble:
		switch x := v.(type) {
		case float64:
			return parquet.DoubleValue(x), true
		case float32:
			return parquet.DoubleValue(float64(x)), true
		}
	case schemas.TypeString:
		if s, ok := v.(string); ok {
			return parquet.ByteArrayValue([]byte(s)), true
		}
	case schemas.TypeBoolean:
		if b, ok := v.(bool); ok {
			return parquet.BooleanValue(b), true
		}
	case schemas.TypeDate:
		if d, ok := v.(time.Time); ok {
			y, m, day := d.Date()
			days := time.Date(y, m, day, 0, 0, 0, 0, time.UTC).Unix() / 86400
			return parquet.Int32Value(int32(days)), true
		}
	case schemas.TypeTimestamp, schemas.TypeLocalTimestamp:
		// A decoded local timestamp is its wall clock in UTC, so both are UnixMicro.
		if ts, ok := v.(time.Time); ok {
			return parquet.Int64Value(ts.UnixMicro()), true
		}
	}
	return parquet.Value{}, false
}
