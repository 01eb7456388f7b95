// Package runtime runs a stage (a stage.Processor) as a Kafka consumer group with
// exactly-once semantics between topics. It holds everything a stage package leaves out:
// consuming by topic pattern, producing, transactions, dead-lettering, partition-local
// state restored from a compacted changelog, retries and metrics. A stage is declared
// once, as a stage.Definition; Run runs it until its context ends.
//
// # Exactly once
//
// Run uses franz-go's GroupTransactSession with read_committed fetches and stable offset
// fetches (KIP-447). For every poll batch it begins a transaction, processes the records,
// produces outputs, dead letters and changelog records, and ends the transaction with the
// batch's input offsets. A rebalance that revokes partitions mid-batch makes End abort:
// nothing of the batch becomes visible and the records are processed again by whoever
// owns them next. State changes of a batch are applied to the in-memory store as they are
// made, with an undo log: when its transaction aborts they are rolled back, so the store
// never keeps a change the changelog does not have.
//
// # State
//
// A stage with state gets one Store per input (topic, partition), restored before the
// partition's first record is processed, from partition p mod N of the compacted
// changelog topic Topics.State(name) (N its partition count), and dropped when the
// partition is revoked. Changelog keys are "<input topic>\x00<store key>", so one
// changelog partition can serve the same-numbered partition of every input topic and a
// restore keeps exactly the entries of its own input partition.
//
// # Errors
//
// A *stage.Rejection (bad data) dead-letters the input with its class, path and message;
// a panic in Process is recovered and dead-lettered with class "panic". Any other error is
// transient: the record is retried with backoff, and if it keeps failing the batch is
// aborted and re-polled later; it is never dead-lettered. Either way one bad record never
// blocks the records after it for good.
package runtime
