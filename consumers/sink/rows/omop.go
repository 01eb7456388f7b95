package rows

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// omopLayer writes omop.<table> topics into omop.<table> tables.
type omopLayer struct {
	topics  schemas.Topics
	input   string
	decoder schemas.Decoder
	// fast reads single-object values of this build's schemas without goavro
	// (omopfast.go); nil when the decoder is not one of schemas' codecs.
	fast    *omopFast
	scratch sync.Pool // *decodeScratch

	mu     sync.Mutex
	tables map[string]*lakehouse.Layout // by topic
}

func newOMOP(t schemas.Topics, input string, dec schemas.Decoder) (*omopLayer, error) {
	codec, err := schemas.NewCodecs()
	if err != nil {
		return nil, fmt.Errorf("OMOP codecs: %w", err)
	}
	o := &omopLayer{topics: t, input: input, decoder: dec, tables: map[string]*lakehouse.Layout{}}
	o.scratch.New = func() any { return &decodeScratch{} }
	switch dec.(type) {
	case nil:
		o.decoder = codec
	case *schemas.Codec, *schemas.RegistryCodec:
		// Both read a single-object value of these schemas as the fast path does.
	default:
		return o, nil
	}
	if o.fast, err = newOMOPFast(codec); err != nil {
		return nil, fmt.Errorf("OMOP fast path: %w", err)
	}
	return o, nil
}

func (o *omopLayer) Name() string    { return LayerOMOP }
func (o *omopLayer) Pattern() string { return o.input }

func (o *omopLayer) Table(topic string) (*lakehouse.Layout, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if l, ok := o.tables[topic]; ok {
		return l, nil
	}
	name, ok := o.topics.ParseOMOPTopic(topic)
	if !ok {
		return nil, fmt.Errorf("topic %s is not an OMOP topic under prefix %q", topic, o.topics.Prefix)
	}
	l, err := lakehouse.OMOPLayout(name)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	o.tables[topic] = l
	return l, nil
}

// Change decodes an OMOP row. A Kafka tombstone (null value, which compaction uses) is no
// change: omop carries retractions as rows with _fhir_deleted.
func (o *omopLayer) Change(ctx context.Context, in *stage.Record, l *lakehouse.Layout, dst parquet.Row) (Change, error) {
	if in.Value == nil {
		return Change{}, nil
	}
	if o.fast != nil {
		sc := o.scratch.Get().(*decodeScratch)
		c, ok := o.fast.change(in, l, dst, sc)
		o.scratch.Put(sc)
		if ok {
			return c, nil
		}
	}
	return o.slowChange(ctx, in, l, dst)
}

// slowChange is Change through the decoder (goavro) and a map of the row's values.
func (o *omopLayer) slowChange(ctx context.Context, in *stage.Record, l *lakehouse.Layout, dst parquet.Row) (Change, error) {
	table, row, err := o.decoder.Decode(ctx, in.Value)
	if err != nil {
		switch {
		case errors.Is(err, schemas.ErrMalformed), errors.Is(err, schemas.ErrUnknownSchema),
			errors.Is(err, schemas.ErrNoRegistry), errors.Is(err, schemas.ErrInvalidRow),
			errors.Is(err, schemas.ErrUnknownTable):
			return Change{}, stage.Reject(schemas.ClassUndecodable, "", "%v", err)
		}
		return Change{}, fmt.Errorf("decode %s/%d@%d: %w", in.Topic, in.Partition, in.Offset, err)
	}
	if table != l.Name {
		return Change{}, stage.Reject(schemas.ClassWrongTable, "", "a row of table %s on the topic of table %s", table, l.Name)
	}
	key, _ := row[schemas.ColFHIRKey].(string)
	if key == "" {
		return Change{}, stage.Reject(schemas.ClassInvalidRow, schemas.ColFHIRKey, "%s row without a source key", l.Name)
	}
	_, known := in.Header(HeaderPreviousVersion)
	deleted, _ := row[schemas.ColFHIRDeleted].(bool)
	replaces, flagged := row[schemas.ColFHIRReplaces].(bool)
	if !flagged {
		// Rows written before the replacement flag existed: the first row of a version,
		// and every retraction, replace the key's earlier rows.
		comp, _ := row[schemas.ColFHIRComponent].(int32)
		replaces = comp == 0
	}
	c := Change{Key: key, Replaces: replaces || deleted, Known: known}
	if deleted {
		return c, nil
	}
	c.Row, err = omopRow(dst, l, row, in)
	return c, err
}

// omopRow builds the table row of a decoded OMOP record: the CDM and lineage columns
// from the record's values, the Kafka coordinates from the record.
func omopRow(dst parquet.Row, l *lakehouse.Layout, row map[string]any, in *stage.Record) (parquet.Row, error) {
	for i, c := range l.Columns {
		switch c.Name {
		case lakehouse.ColKafkaPartition:
			dst = put(dst, l, i, parquet.Int32Value(in.Partition))
			continue
		case lakehouse.ColKafkaOffset:
			dst = put(dst, l, i, parquet.Int64Value(in.Offset))
			continue
		}
		v := row[c.Name]
		if v == nil {
			if c.Required {
				return dst, stage.Reject(schemas.ClassInvalidRow, c.Name, "%s: required column %s is null", l.Name, c.Name)
			}
			dst = putNull(dst, i)
			continue
		}
		pv, ok := lakehouse.ParquetValue(c.Type, v)
		if !ok {
			return dst, stage.Reject(schemas.ClassInvalidRow, c.Name, "%s: column %s (%s) holds a %T", l.Name, c.Name, c.Type, v)
		}
		dst = put(dst, l, i, pv)
	}
	return dst, nil
}
