package status

// How --resolve-hanging learns what the coordinator decided for a hanging transaction
// when the coordinator no longer says: from the markers it did write. A transaction's
// coordinator decides once and writes the same marker to every partition of the
// transaction; when one partition's marker is lost (the Kafka 4.4 defect in
// docs/architecture.md), the others carry the decision. The coordinator's own record
// cannot be relied on: by the time a stage is seen stuck, the same transactional id has
// usually ended later transactions (an abort on the rebalance that followed the broker
// restart), and its state describes the last of them.

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// producerTxn names one transaction of a producer: its id and the epoch its records carry.
type producerTxn struct {
	id    int64
	epoch int16
}

// markerFound is a marker that ended a producer's transaction on one partition.
type markerFound struct {
	commit    bool
	topic     string
	partition int32
	offset    int64
}

func (m markerFound) String() string {
	kind := "abort"
	if m.commit {
		kind = "commit"
	}
	return fmt.Sprintf("%s marker on %s/%d at offset %d", kind, m.topic, m.partition, m.offset)
}

// markerLookback is how far before a hanging transaction's last write its records on
// other partitions are looked for, beyond its transaction timeout: a transaction cannot
// have written earlier than its timeout before it ended, and the margin covers clocks.
const markerLookback = time.Minute

// markerSearchTimeout bounds findMarker's read.
const markerSearchTimeout = 2 * time.Minute

// findMarker looks for the marker that ended txn on any of the partitions in candidates
// (whose writes, by its producer, may include it): it reads them with read_uncommitted
// and control records kept, from the first offset written since txn could have begun
// (lastWrite less timeout and markerLookback) up to the end offsets they have when it
// starts, and returns the first control record of txn's producer that follows one of
// txn's data records on the same partition. nil when none does (the transaction wrote
// only to the hanging partitions, or its records are past retention).
func findMarker(ctx context.Context, kc kafkaclient.Config, adm *kadm.Client, candidates kadm.TopicsSet, txn producerTxn,
	lastWrite time.Time, timeout time.Duration) (*markerFound, error) {
	if len(candidates) == 0 {
		return nil, nil
	}
	topics := candidates.Topics()
	since := lastWrite.Add(-timeout - markerLookback).UnixMilli()
	starts, err := adm.ListOffsetsAfterMilli(ctx, since, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("offsets since %s: %w", time.UnixMilli(since).UTC().Format(time.RFC3339), err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	from, until := map[string]map[int32]int64{}, map[string]map[int32]int64{}
	for topic, parts := range candidates {
		for p := range parts {
			start, ok1 := starts.Lookup(topic, p)
			end, ok2 := ends.Lookup(topic, p)
			if !ok1 || !ok2 || start.Offset < 0 {
				continue
			}
			if from[topic] == nil {
				from[topic], until[topic] = map[int32]int64{}, map[int32]int64{}
			}
			from[topic][p], until[topic][p] = start.Offset, end.Offset
		}
	}
	// A partition whose last offsets were compacted away is never seen to reach its end:
	// the search then ends in an error (no marker written) rather than waiting for ever.
	ctx, cancel := context.WithTimeout(ctx, markerSearchTimeout)
	defer cancel()
	type tp struct {
		topic     string
		partition int32
	}
	wrote := map[tp]bool{} // partitions holding a data record of txn
	var found *markerFound
	err = kafkaclient.ReadPartitions(ctx, kc, from, until, func(r *kgo.Record) (bool, error) {
		if r.ProducerID != txn.id {
			return true, nil
		}
		k := tp{r.Topic, r.Partition}
		switch {
		case !r.Attrs.IsControl() && r.ProducerEpoch == txn.epoch:
			wrote[k] = true
		case r.Attrs.IsControl() && wrote[k]:
			// The first marker after the transaction's records ends it, whatever its
			// epoch: a coordinator on transaction version 2 writes it with the epoch
			// the transaction's end bumped to.
			var key kmsg.ControlRecordKey
			if err := key.ReadFrom(r.Key); err != nil {
				return false, fmt.Errorf("control record at %s/%d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			found = &markerFound{commit: key.Type == kmsg.ControlRecordKeyTypeCommit, topic: r.Topic, partition: r.Partition, offset: r.Offset}
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}
