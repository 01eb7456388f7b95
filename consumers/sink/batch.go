package sink

import (
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/sink/rows"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// batch is what the sink consumed since its last flush.
type batch struct {
	id      string    // names the batch's files and, with the table, its commits
	started time.Time // when its first record was taken (FlushInterval)
	last    time.Time // when its last record was taken (FlushIdle)
	endedBy string    // what made it due for its commit (batchEnd)
	parts   map[topicPartition]*partRange
	tables  map[string]*tableBatch // by topic
	dead    []*kgo.Record

	records, skipped int64            // data records taken; records that changed nothing
	in               map[string]int64 // data records taken, by topic
	rows             int              // rows applied (some may have been replaced within the batch)
	bytes            int64            // memory held: record values and row values (FlushBytes)

	slab []parquet.Value // where rowBuffer carves the batch's rows from
}

// slabValues is the size of one block of row values: about 1.5 MB, a few thousand rows.
const slabValues = 64 << 10

// valueSize is the memory of one parquet.Value of a row. An OMOP row of twenty columns
// holds 480 bytes of values for an Avro record of about 80 bytes: a batch bounded by
// record bytes alone held six times FlushBytes in rows.
const valueSize = int64(unsafe.Sizeof(parquet.Value{}))

// rowBuffer returns an empty row with room for exactly n values, carved from a block
// the batch's rows share. Rows grown by append from nil cost about six allocations each
// and up to twice their size; the rows live until the batch's commit anyway.
func (b *batch) rowBuffer(n int) parquet.Row {
	if cap(b.slab)-len(b.slab) < n {
		b.slab = make([]parquet.Value, 0, max(n, slabValues))
	}
	start := len(b.slab)
	b.slab = b.slab[:start+n]
	return b.slab[start : start : start+n]
}

// partRange is the batch's span of one partition.
type partRange struct {
	first, next int64 // offset of the first record taken, and after the last
}

// tableBatch is the batch's share of one table.
type tableBatch struct {
	topic   string
	layout  *lakehouse.Layout
	changes *rows.Batch
	records int64          // data records of the topic in the batch
	dead    map[string]int // dead letters by class
}

func (b *batch) empty() bool { return len(b.parts) == 0 }

// take notes rec's offset in its partition's range.
func (b *batch) take(rec *kgo.Record, now time.Time) {
	if len(b.parts) == 0 {
		b.started = now
	}
	b.last = now
	tp := topicPartition{rec.Topic, rec.Partition}
	pr := b.parts[tp]
	if pr == nil {
		pr = &partRange{first: rec.Offset}
		b.parts[tp] = pr
	}
	pr.next = rec.Offset + 1
	if !rec.Attrs.IsControl() {
		b.records++
		b.in[rec.Topic]++
	}
}

// table returns the batch's share of topic's table, started on first use.
func (b *batch) table(l *lakehouse.Layout, alwaysDelete bool, topic string) *tableBatch {
	tb := b.tables[topic]
	if tb == nil {
		tb = &tableBatch{topic: topic, dead: map[string]int{}}
		b.tables[topic] = tb
	}
	if tb.changes == nil {
		tb.layout, tb.changes = l, rows.NewBatch(l, alwaysDelete)
	}
	tb.records++
	return tb
}

// deadLetter queues the dead letter of rec; it is produced before the commit that
// absorbs rec's offset.
func (b *batch) deadLetter(dlq, stageName string, rec *kgo.Record, rej *stage.Rejection) {
	b.dead = append(b.dead, deadletter.Record(dlq, rec, deadletter.Context{
		Stage: stageName, SourceTopic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		Class: rej.Class, Path: rej.Path, Message: rej.Message,
	}))
	tb := b.tables[rec.Topic]
	if tb == nil {
		tb = &tableBatch{topic: rec.Topic, dead: map[string]int{}}
		b.tables[rec.Topic] = tb
	}
	tb.dead[rej.Class]++
}

// partitions returns the batch's ranges of topic's partitions.
func (b *batch) partitions(topic string) map[int32]partRange {
	out := map[int32]partRange{}
	for tp, pr := range b.parts {
		if tp.topic == topic {
			out[tp.partition] = *pr
		}
	}
	return out
}

// offsets is, per partition of the batch, the offset consumption goes on from.
func (b *batch) offsets() map[topicPartition]int64 {
	out := make(map[topicPartition]int64, len(b.parts))
	for tp, pr := range b.parts {
		out[tp] = pr.next
	}
	return out
}
