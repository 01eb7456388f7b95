// Package sink commits the lake: it consumes one layer's topics as a consumer group and
// commits them to the lake's Apache Iceberg tables, exactly once.
//
//	sink-omop    omop.<table> (Avro rows)          → omop.<table>   current state of the CDM
//	sink-silver  <prefix>.unique.<Type> (or .deid.) → fhir.<type>    current version of each resource
//	sink-bronze  <prefix>.unique.<Type>            → bronze.<type>  every record, appended
//
// Topics map one to one to tables. The logic (a record to a table change, or a rejection)
// is package rows, which has no Kafka in it; this package is the commit loop.
//
// # Batches and snapshots
//
// A batch is what the sink consumed since its last flush; it ends on row count, bytes,
// age (FlushInterval), a quiet input (FlushIdle: the end of a burst such as an export
// reaches the lake a second after its last record, not at the interval), when a
// rebalance waits, and at shutdown. The rows stay in memory (FlushBytes
// bounds them) and are applied in partition order per table (rows.Batch): a replacing
// record drops the batch's earlier rows of its key and, when the key may have rows in
// earlier snapshots, puts the key in the batch's equality-delete set. A flush then:
//
//  1. produces the batch's dead letters and waits for them (at least once: a crash
//     before step 2 sends them again);
//  2. per table the batch changed, writes one Parquet data file and one equality-delete
//     file (on _fhir_key) under a name of the batch's own, and commits both in one
//     snapshot (a RowDelta: data and deletes get one sequence number, so the deletes hit
//     only earlier snapshots' rows). The snapshot summary carries the table's Kafka
//     offsets for the group, every partition's, merged with the batch's, and the batch's
//     commit id (lakehouse package doc);
//  3. commits the same offsets to the consumer group, as a report for lag monitoring and
//     autoscaling. The sink never reads them back. A report that failed (a broker
//     restarting), or that lags the table when a partition is assigned (a sink stopped
//     between steps 2 and 3), is owed and sent again while the sink is idle: a caught-up
//     partition gets no new records to carry it.
//
// An initial load writes no delete file at all: dedupe marks records of keys it has seen
// before (fhir.previous-version) and only those delete (Config.UpsertDeletes).
//
// # Exactly once
//
// The table remembers what it has absorbed. When the group assigns a partition, the sink
// replaces the group's committed offset with the table's (kgo.AdjustFetchOffsetsFn; the
// log start when the table has none) and keeps that offset as the partition's fence. A
// commit is then conditional twice:
//
//   - the fence: for every partition of the batch, the table's offset, read from the
//     freshly loaded table, must still equal the fence. Otherwise another member owns or
//     owned the partition (a rebalance this member missed, or it is a zombie thawed after
//     its session ended): the batch's files for the table are removed and the group
//     session restarts, which starts every partition again from its table;
//   - the snapshot the fence was checked on: the commit asserts the table's current
//     snapshot (AssertRefSnapshotID), so no other commit can slip in between the check
//     and the commit. iceberg-go's own retry, which would replay the snapshot with a
//     summary computed before the conflict, therefore never succeeds.
//
// Another member committing another partition of the same table makes the assertion
// fail (ErrCommitFailed): the sink reloads, checks the fence again, merges the offsets
// again and retries with the same files. A commit whose outcome is unknown (a timeout, a
// server error, a catalog restart) is looked up in the table's history by its commit id
// before anything is tried again: an attempt that landed is found there, and an attempt
// still in flight can only land on the snapshot it asserted, so of all the attempts of
// one batch at most one ever lands.
// After a successful commit the fence of the batch's partitions moves to the offsets
// committed.
//
// So a crash at any point leaves each record in the lake once: before the commit the
// batch is invisible and is consumed again from the table's offsets; after it, the table
// says the records are absorbed and consumption resumes after them. Rebalances wait for
// the open batch (BlockRebalanceOnPoll), so a batch never spans a change of ownership.
//
// Files of attempts that crashed or were refused are never referenced by any snapshot
// (a snapshot only ever adds the files of the batch it commits); `lake expire` removes
// them as orphans. A snapshot that commits without changes to its files (a compaction)
// carries no offsets: the sink reads its offsets from the newest snapshot in the current
// snapshot's ancestry that carries the group's key, and expiry keeps that snapshot.
//
// Residual cases, stated: two groups writing one table each keep their own offsets and
// both write every record (one lake, one group per layer); resetting a group's offsets
// does nothing (the tables hold the truth: to rebuild a table, drop it); a lake whose
// dedupe state was reset must run with UpsertDeletes "always", or updates of keys dedupe
// no longer knows add rows beside the old ones.
//
// # Catalogs and concurrency
//
// Several sink processes commit to the same tables concurrently (one member per set of
// partitions); the embedded catalog (SQLite under the lake directory, WAL and a busy
// timeout) and a REST catalog both serialise commits by their compare-and-swap. Tables
// are unpartitioned (iceberg-go v0.7.0 writes equality deletes for unpartitioned tables
// only) and Iceberg format v2.
//
// # Memory
//
// A batch holds its rows until the commit: at most FlushRows rows, and record values of
// at most FlushBytes. Fetches are at most 2 MiB, because franz-go keeps a fetched
// response buffered while the sink works through the previous one.
package sink
