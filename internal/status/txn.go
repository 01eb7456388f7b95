package status

// The open-transaction check of 'fhirstream status': every partition of the pipeline that
// holds an open transaction, and which of those are hanging (see "Graceful shutdown and
// open transactions" in docs/architecture.md). A hanging transaction stops a stage
// without an error: its group's offset fetch answers UNSTABLE_OFFSET_COMMIT and its
// read_committed reads stop at the last stable offset, until a marker is written.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// OpenTxn is a partition's open transaction, as the partition's leader and the
// transaction coordinator see it.
type OpenTxn struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	ProducerID    int64  `json:"producer_id"`
	ProducerEpoch int16  `json:"producer_epoch"`
	// StartOffset is the transaction's first offset in the partition; read_committed
	// readers stop there until it ends.
	StartOffset int64     `json:"start_offset"`
	LastWrite   time.Time `json:"last_write"`
	// TransactionalID and CoordinatorState are the coordinator's view of the producer
	// ("" when no transactional id maps to it any more).
	TransactionalID  string `json:"transactional_id,omitempty"`
	CoordinatorState string `json:"coordinator_state,omitempty"`
	// CoordinatorProducerEpoch is the producer epoch of the coordinator's record: the
	// partition's epoch plus one when the record is of the partition's transaction ended.
	CoordinatorProducerEpoch int16 `json:"coordinator_producer_epoch,omitempty"`
	// Hanging is true when no transaction the coordinator knows of will end this one:
	// only a marker written by an operator does (Why says what was seen).
	Hanging bool   `json:"hanging"`
	Why     string `json:"why,omitempty"`
	// Resolution is the marker --resolve-hanging writes for a hanging transaction: the
	// coordinator's decision, as its record of this very transaction or a marker it wrote
	// on another partition of the transaction shows it (ResolutionFrom says which);
	// "abort" when neither does (what kafka-transactions.sh abort writes).
	Resolution     string `json:"resolution,omitempty"`
	ResolutionFrom string `json:"resolution_from,omitempty"`

	coordinatorEpoch int32
}

// hangingAfter is how long an open transaction of a producer id that no transactional id
// maps to any more may last before it counts as hanging: Kafka's default
// transaction.max.timeout.ms, the longest any transaction may legally stay open.
const hangingAfter = 15 * time.Minute

// judgeOpenTxn decides whether an open transaction on a partition is hanging, given the
// coordinator's description of the transactional id that owns the producer id (nil when
// none does).
func judgeOpenTxn(p kadm.DescribedProducer, txn *kadm.DescribedTransaction, now time.Time) (hanging bool, why string) {
	age := now.Sub(time.UnixMilli(p.LastTimestamp))
	if txn == nil {
		if age > hangingAfter {
			return true, fmt.Sprintf("no transactional id owns producer %d and its transaction has been open %s", p.ProducerID, age.Round(time.Second))
		}
		return false, "no transactional id owns the producer (yet); not old enough to call hanging"
	}
	if txn.ProducerID != p.ProducerID {
		return true, fmt.Sprintf("transactional id %s moved on to producer %d", txn.TxnID, txn.ProducerID)
	}
	switch txn.State {
	case "Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence":
		if p.ProducerEpoch < txn.ProducerEpoch && !txnHasPartition(txn, p.Topic, p.Partition) {
			return true, fmt.Sprintf("the coordinator's transaction (epoch %d) does not include this partition, whose transaction is from epoch %d",
				txn.ProducerEpoch, p.ProducerEpoch)
		}
		return false, "in progress"
	default: // Empty, CompleteCommit, CompleteAbort, Dead
		return true, fmt.Sprintf("the coordinator has no transaction open for %s (state %s) but the partition does (epoch %d): its marker was lost",
			txn.TxnID, txn.State, p.ProducerEpoch)
	}
}

func txnHasPartition(txn *kadm.DescribedTransaction, topic string, partition int32) bool {
	parts, ok := txn.Topics[topic]
	if !ok {
		return false
	}
	_, ok = parts[partition]
	return ok
}

// coordinatorResolution is the marker that ends a hanging transaction when the
// coordinator's record is still of this very transaction: its last transaction of this
// producer ended at the partition's epoch plus one (a transaction ends by bumping the
// epoch once) as CompleteCommit or CompleteAbort. "" when the record is of another
// transaction, and the markers on the transaction's other partitions must say.
func coordinatorResolution(p kadm.DescribedProducer, txn *kadm.DescribedTransaction) string {
	if txn == nil || txn.ProducerID != p.ProducerID || txn.ProducerEpoch != p.ProducerEpoch+1 {
		return ""
	}
	switch txn.State {
	case "CompleteCommit":
		return "commit"
	case "CompleteAbort":
		return "abort"
	}
	return ""
}

// groupOffsetsPartition is the __consumer_offsets partition that holds a group's
// offsets: Kafka's abs(String.hashCode(group)) mod the partition count.
func groupOffsetsPartition(group string, partitions int32) int32 {
	var h int32
	for _, c := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(c)
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % partitions
}

// collectOpenTxns describes the producers of the partitions of topics (as listed) and of
// the groups' __consumer_offsets partitions, and judges every open transaction. A
// transaction judged hanging is described a second time and kept only if it is still
// open from the same offset: one that was merely finishing between the two looks is not
// reported. A hanging transaction's resolution is the coordinator's decision when its
// record still shows it, else the marker found on another partition of topics its
// producer wrote to (findMarker), else abort.
func collectOpenTxns(ctx context.Context, kc kafkaclient.Config, adm *kadm.Client, topics kadm.TopicDetails, groups []string) ([]OpenTxn, error) {
	set := kadm.TopicsSet{}
	for _, t := range topics {
		for p := range t.Partitions {
			set.Add(t.Topic, p)
		}
	}
	if len(groups) > 0 {
		internal, err := adm.ListTopicsWithInternal(ctx, "__consumer_offsets")
		if err == nil {
			if d, ok := internal["__consumer_offsets"]; ok && d.Err == nil && len(d.Partitions) > 0 {
				for _, g := range groups {
					set.Add(d.Topic, groupOffsetsPartition(g, int32(len(d.Partitions))))
				}
			}
		}
	}
	if len(set) == 0 {
		return nil, nil
	}
	producers, err := describeProducers(ctx, adm, set)
	if err != nil {
		return nil, err
	}
	open := openOnly(producers)
	if len(open) == 0 {
		return nil, nil
	}
	var ids []int64
	for _, p := range open {
		if !slices.Contains(ids, p.ProducerID) {
			ids = append(ids, p.ProducerID)
		}
	}
	listed, err := adm.ListTransactions(ctx, ids, nil)
	if err != nil {
		return nil, fmt.Errorf("list transactions: %w", err)
	}
	var txnIDs []string
	byProducer := map[int64]string{}
	for id, l := range listed {
		txnIDs = append(txnIDs, id)
		byProducer[l.ProducerID] = id
	}
	described := kadm.DescribedTransactions{}
	if len(txnIDs) > 0 {
		if described, err = adm.DescribeTransactions(ctx, txnIDs...); err != nil {
			return nil, fmt.Errorf("describe transactions: %w", err)
		}
	}
	now := time.Now()
	var out []OpenTxn
	recheck := kadm.TopicsSet{}
	timeouts := map[int64]time.Duration{} // producer id → its transactional id's timeout
	for _, p := range open {
		o := OpenTxn{Topic: p.Topic, Partition: p.Partition, ProducerID: p.ProducerID, ProducerEpoch: p.ProducerEpoch,
			StartOffset: p.CurrentTxnStartOffset, LastWrite: time.UnixMilli(p.LastTimestamp), coordinatorEpoch: p.CoordinatorEpoch}
		var txn *kadm.DescribedTransaction
		if id, ok := byProducer[p.ProducerID]; ok {
			if d, ok := described[id]; ok && d.Err == nil {
				txn = &d
				o.TransactionalID, o.CoordinatorState, o.CoordinatorProducerEpoch = d.TxnID, d.State, d.ProducerEpoch
				timeouts[p.ProducerID] = time.Duration(d.TimeoutMillis) * time.Millisecond
			}
		}
		o.Hanging, o.Why = judgeOpenTxn(p, txn, now)
		if o.Hanging {
			if o.Resolution = coordinatorResolution(p, txn); o.Resolution != "" {
				o.ResolutionFrom = fmt.Sprintf("the coordinator's record of epoch %d", txn.ProducerEpoch)
			}
			recheck.Add(p.Topic, p.Partition)
		}
		out = append(out, o)
	}
	if len(recheck) > 0 {
		again, err := describeProducers(ctx, adm, recheck)
		if err != nil {
			return nil, err
		}
		again = openOnly(again)
		for i := range out {
			o := &out[i]
			if o.Hanging && !slices.ContainsFunc(again, func(p kadm.DescribedProducer) bool {
				return p.Topic == o.Topic && p.Partition == o.Partition && p.ProducerID == o.ProducerID &&
					p.CurrentTxnStartOffset == o.StartOffset
			}) {
				o.Hanging, o.Why, o.Resolution, o.ResolutionFrom = false, "ended while being checked", "", ""
			}
		}
	}
	if err := resolveFromMarkers(ctx, kc, adm, out, producers, timeouts); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b OpenTxn) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.ProducerID, b.ProducerID))
	})
	return out, nil
}

// resolveFromMarkers sets the resolution of every hanging transaction in txns that the
// coordinator's record left open, from the marker findMarker finds on the other
// partitions its producer is active on (producers describes them all); abort when none
// is found. Transactions of one producer and epoch hanging on several partitions are
// looked up once.
func resolveFromMarkers(ctx context.Context, kc kafkaclient.Config, adm *kadm.Client, txns []OpenTxn,
	producers []kadm.DescribedProducer, timeouts map[int64]time.Duration) error {
	decided := map[producerTxn]*markerFound{}
	for i := range txns {
		o := &txns[i]
		if !o.Hanging || o.Resolution != "" {
			continue
		}
		key := producerTxn{o.ProducerID, o.ProducerEpoch}
		m, looked := decided[key]
		if !looked {
			candidates := kadm.TopicsSet{}
			for _, p := range producers {
				if p.ProducerID == o.ProducerID && p.Topic != "__consumer_offsets" &&
					!slices.ContainsFunc(txns, func(h OpenTxn) bool {
						return h.Hanging && h.ProducerID == o.ProducerID && h.Topic == p.Topic && h.Partition == p.Partition
					}) {
					candidates.Add(p.Topic, p.Partition)
				}
			}
			timeout, ok := timeouts[o.ProducerID]
			if !ok {
				timeout = hangingAfter // the longest a transaction may legally last
			}
			var err error
			if m, err = findMarker(ctx, kc, adm, candidates, key, o.LastWrite, timeout); err != nil {
				return fmt.Errorf("looking for the marker of producer %d epoch %d: %w", o.ProducerID, o.ProducerEpoch, err)
			}
			decided[key] = m
		}
		switch {
		case m == nil:
			o.Resolution, o.ResolutionFrom = "abort", "outcome unknown: no other partition holds a marker of this transaction"
		case m.commit:
			o.Resolution, o.ResolutionFrom = "commit", m.String()
		default:
			o.Resolution, o.ResolutionFrom = "abort", m.String()
		}
	}
	return nil
}

// describeProducers returns the active producers of every partition in set.
func describeProducers(ctx context.Context, adm *kadm.Client, set kadm.TopicsSet) ([]kadm.DescribedProducer, error) {
	described, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		return nil, fmt.Errorf("describe producers: %w", err)
	}
	var all []kadm.DescribedProducer
	var errs []string
	described.EachPartition(func(p kadm.DescribedProducersPartition) {
		if p.Err != nil {
			errs = append(errs, fmt.Sprintf("%s/%d: %v", p.Topic, p.Partition, p.Err))
			return
		}
		for _, pr := range p.ActiveProducers {
			all = append(all, pr)
		}
	})
	if len(errs) > 0 {
		slices.Sort(errs)
		return nil, fmt.Errorf("describe producers: %s", strings.Join(errs, "; "))
	}
	return all, nil
}

// openOnly keeps the producers with a transaction open on their partition.
func openOnly(producers []kadm.DescribedProducer) []kadm.DescribedProducer {
	var open []kadm.DescribedProducer
	for _, p := range producers {
		if p.CurrentTxnStartOffset >= 0 {
			open = append(open, p)
		}
	}
	return open
}

// resolveHanging ends each hanging transaction with the marker its Resolution names,
// written straight to the partition as kafka-transactions.sh abort does (it needs
// ClusterAction on the cluster). A commit marker makes the records and pending group
// offsets of the transaction visible, as the coordinator had decided; an abort marker
// hides them, and a stage whose pending offsets are dropped processes that batch again.
func resolveHanging(ctx context.Context, adm *kadm.Client, txns []OpenTxn) (int, error) {
	n := 0
	for _, o := range txns {
		if !o.Hanging {
			continue
		}
		set := kadm.TopicsSet{}
		set.Add(o.Topic, o.Partition)
		resp, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{ProducerID: o.ProducerID, ProducerEpoch: o.ProducerEpoch,
			Commit: o.Resolution == "commit", CoordinatorEpoch: o.coordinatorEpoch, Topics: set})
		if err != nil {
			return n, fmt.Errorf("%s transaction of producer %d on %s/%d: %w", o.Resolution, o.ProducerID, o.Topic, o.Partition, err)
		}
		for _, m := range resp {
			for _, t := range m.Topics {
				for _, p := range t.Partitions {
					if p.Err != nil {
						return n, fmt.Errorf("%s transaction of producer %d on %s/%d: %w", o.Resolution, o.ProducerID, p.Topic, p.Partition, p.Err)
					}
				}
			}
		}
		n++
	}
	return n, nil
}

// writeOpenTxns prints the open transactions and, for hanging ones, what to do.
func writeOpenTxns(w io.Writer, txns []OpenTxn, checkErr string, resolved int) {
	if checkErr != "" {
		fmt.Fprintf(w, "\nopen transactions: not checked: %s\n", checkErr)
		return
	}
	if len(txns) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPEN TRANSACTION ON\tSINCE OFFSET\tPRODUCER\tTRANSACTIONAL ID\tCOORDINATOR\tHANGING")
	hanging := 0
	for _, o := range txns {
		verdict := "no"
		if o.Hanging {
			verdict = "YES (resolve by " + o.Resolution + ", from " + o.ResolutionFrom + "): " + o.Why
			hanging++
		}
		coordinator := "-"
		if o.CoordinatorState != "" {
			coordinator = fmt.Sprintf("%s (epoch %d)", o.CoordinatorState, o.CoordinatorProducerEpoch)
		}
		fmt.Fprintf(tw, "%s/%d\t%d\t%d (epoch %d)\t%s\t%s\t%s\n", o.Topic, o.Partition, o.StartOffset, o.ProducerID, o.ProducerEpoch,
			cmp.Or(o.TransactionalID, "-"), coordinator, verdict)
	}
	_ = tw.Flush()
	switch {
	case resolved > 0:
		fmt.Fprintf(w, "\nresolved %d hanging transaction(s); the stages reading them go on.\n", resolved)
	case hanging > 0:
		fmt.Fprintf(w, "\n%d hanging transaction(s): the stages reading these partitions wait until a marker ends them.\n"+
			"End them with 'fhirstream status --resolve-hanging' (needs ClusterAction): as the coordinator decided\n"+
			"when it is known, otherwise by abort (the stage processes that batch again). See Operations in README.md.\n", hanging)
	}
}
