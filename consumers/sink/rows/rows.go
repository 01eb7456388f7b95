// Package rows is the logic of the lake sinks: it turns a record of a sink's input topics
// (a stage.Record) into a change of its Iceberg table (rows to insert, keys whose earlier
// rows go), or a *stage.Rejection for a record that cannot become rows. It never imports
// the Kafka client: consuming, committing and dead-lettering are the sink's
// (consumers/sink), and these transforms are tested without a broker.
//
// Three layers, each a Layer:
//
//   - omop: omop.<table> Avro rows → omop.<table>, the current state of the CDM;
//   - silver: <prefix>.unique.<Type> (or .deid.) → fhir.<type>, the current version of each resource;
//   - bronze: <prefix>.unique.<Type> → bronze.<type>, every record, appended.
//
// A Batch applies the changes of one table in partition order: a change that replaces its
// key drops the batch's buffered rows of that key and, when the key may have rows in
// earlier commits, puts it in the batch's equality-delete set; rows are inserted. The
// sink commits a batch's data file and delete file in one snapshot, where Iceberg's
// sequence numbers make the deletes hit only the rows of earlier snapshots.
package rows

import (
	"context"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// Layer names.
const (
	LayerOMOP   = "omop"
	LayerSilver = "silver"
	LayerBronze = "bronze"
)

// HeaderPreviousVersion is set by dedupe on a record whose key it has passed before (an
// update or a deletion of a known resource), and copied by omop to its outputs: the key
// may have rows in the lake already.
const HeaderPreviousVersion = schemas.HeaderPreviousVersion

// Change is what one input record does to its table.
type Change struct {
	// Key is the value of the table's delete key (_fhir_key) the change is about; ""
	// for a record that changes nothing (a compaction tombstone on an OMOP topic).
	Key string
	// Replaces says the change supersedes every earlier row of Key in the table.
	Replaces bool
	// Known says Key may have rows in snapshots already committed, which a replacing
	// change must then delete (the record carried HeaderPreviousVersion).
	Known bool
	// Row is the row to insert, in the layout's column order; nil for a retraction or a
	// deletion.
	Row parquet.Row
}

// Layer turns the records of a sink's input topics into changes of its tables. Its
// methods are safe for concurrent use (the sink transforms partitions in parallel).
type Layer interface {
	// Name is LayerOMOP, LayerSilver or LayerBronze.
	Name() string
	// Pattern is the regular expression of the input topics.
	Pattern() string
	// Table returns the layout of the table a topic's records go to; an error for a
	// topic the layer has no table for.
	Table(topic string) (*lakehouse.Layout, error)
	// Change transforms in into a change of table l, appending the row to dst. Bad input
	// is a *stage.Rejection; any other error is transient (a schema registry that did
	// not answer) and worth retrying.
	Change(ctx context.Context, in *stage.Record, l *lakehouse.Layout, dst parquet.Row) (Change, error)
}

// New returns the layer called name reading the topics of input (a regular expression
// of topics under t, the sink's node in the topology). dec decodes OMOP values (nil:
// schemas.NewCodecs, single-object encoding).
func New(name string, t schemas.Topics, input string, dec schemas.Decoder) (Layer, error) {
	switch name {
	case LayerOMOP:
		return newOMOP(t, input, dec)
	case LayerSilver:
		return newFHIR(t, input), nil
	case LayerBronze:
		return newBronze(t, input), nil
	}
	return nil, &unknownLayerError{name}
}

type unknownLayerError struct{ name string }

func (e *unknownLayerError) Error() string {
	return "unknown lake layer " + e.name + " (want omop, silver or bronze)"
}

// Batch holds the changes of one table in one sink batch.
type Batch struct {
	Layout *lakehouse.Layout
	// AlwaysDelete makes every replacing change delete its key from earlier snapshots,
	// whether or not the record says the key is known (for lakes whose dedupe state was
	// reset: the lake and dedupe's state go together).
	AlwaysDelete bool

	rows    []parquet.Row
	live    int
	byKey   map[string][]int32 // buffered rows of each key, by index in rows
	deletes map[string]struct{}
}

// NewBatch returns an empty batch of table l.
func NewBatch(l *lakehouse.Layout, alwaysDelete bool) *Batch {
	return &Batch{Layout: l, AlwaysDelete: alwaysDelete, byKey: map[string][]int32{}, deletes: map[string]struct{}{}}
}

// Apply applies c, in partition order. The batch keeps c.Row.
func (b *Batch) Apply(c Change) {
	if c.Key == "" {
		return
	}
	tracked := b.Layout.DeleteKey != ""
	if tracked && c.Replaces {
		had := b.byKey[c.Key]
		for _, i := range had {
			b.rows[i] = nil
			b.live--
		}
		if c.Known || len(had) > 0 || b.AlwaysDelete {
			b.deletes[c.Key] = struct{}{}
		}
		b.byKey[c.Key] = had[:0]
	}
	if c.Row == nil {
		return
	}
	if tracked {
		b.byKey[c.Key] = append(b.byKey[c.Key], int32(len(b.rows)))
	}
	b.rows = append(b.rows, c.Row)
	b.live++
}

// Empty reports whether the batch has nothing to commit.
func (b *Batch) Empty() bool { return b.live == 0 && len(b.deletes) == 0 }

// Rows returns the rows to insert, in the order applied.
func (b *Batch) Rows() []parquet.Row {
	out := make([]parquet.Row, 0, b.live)
	for _, r := range b.rows {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// Deletes returns the keys to delete from earlier snapshots, sorted.
func (b *Batch) Deletes() []string {
	out := make([]string, 0, len(b.deletes))
	for k := range b.deletes {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Value helpers: a row is built column by column in the layout's order, each value at
// its column index with the definition level its presence implies.

func put(row parquet.Row, l *lakehouse.Layout, i int, v parquet.Value) parquet.Row {
	def := 0
	if !l.Columns[i].Required {
		def = 1
	}
	return append(row, v.Level(0, def, i))
}

func putNull(row parquet.Row, i int) parquet.Row {
	return append(row, parquet.NullValue().Level(0, 0, i))
}

func putString(row parquet.Row, l *lakehouse.Layout, i int, s string) parquet.Row {
	if s == "" && !l.Columns[i].Required {
		return putNull(row, i)
	}
	return put(row, l, i, parquet.ByteArrayValue([]byte(s)))
}
