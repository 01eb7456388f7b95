// Package sink writes the lake: it consumes the omop.<table> topics (Avro rows) or the
// <prefix>.unique.<Type> topics (FHIR JSON) and writes Parquet, exactly once.
//
//	<out>/omop/<table>/date=YYYY-MM-DD/<topic>+<partition>+<startOffset>.parquet
//	<out>/fhir/<Type>/date=YYYY-MM-DD/<topic>+<partition>+<startOffset>.parquet
//
// The date is the UTC day of the Kafka record timestamp, so a replay lands in the same
// directory. OMOP columns are named and typed as the CDM v5.4 DDL (record ids INT64, the
// stated deviation), followed by the _fhir_* envelope and _kafka_partition/_kafka_offset,
// which the views in deploy/sql use to keep the latest version of each source resource.
//
// The sink is not a transactional stage: its output is files, not Kafka. It runs its own
// consumer-group loop (read_committed, cooperative-sticky, manual commits, rebalances
// blocked while a batch is open) and relies on the file protocol below.
//
// # The file protocol
//
// A batch is what the sink consumed since its last commit. For each (dataset, day,
// partition) it holds one file, named after the offset of its first row. A batch ends on
// row count, bytes, open files or age, when a rebalance waits, and at shutdown; then:
//
//  1. every file is finished and fsynced under a pending name, ".<name>+<batch>.pending",
//     in its final directory, and the directories are fsynced;
//  2. the offsets after each partition's last record are committed, with the group
//     generation, and with "batch=<id>" as the commit metadata of every partition;
//  3. only then are the pending files renamed to their final names, and the directories
//     fsynced.
//
// When a partition is assigned, before its first fetch, recovery lists its files and
// compares them with the committed offset C and the batch named in the commit metadata:
//
//   - a file whose first offset is >= C holds rows the group never committed. They will be
//     consumed again from C and written again, so the file is removed. (A file spanning
//     offsets across C is impossible: a batch's files start at or after the offset its
//     predecessor committed, and end before the offset it commits. So the test on the
//     first offset alone is exact: start >= C means the whole file is uncommitted.)
//   - a pending file of the batch named by the commit metadata was covered by the commit
//     of step 2 but not yet renamed in step 3 (a crash between them): it is published.
//   - every other pending file belongs to a batch whose commit failed or never happened:
//     it is removed.
//   - a published file starting before C is committed data and stays.
//
// A crash at any point therefore leaves each input row exactly once: before step 2 the
// batch is invisible and is replayed; after step 2 it is published either by the sink or
// by recovery, and never replayed. With no committed offset at all (a new group) every
// file of the partition is removed, because consumption restarts at the log start; point
// a new group at a new root if the old lake must be kept.
//
// # Zombies
//
// Files become visible only after a commit, and the coordinator accepts a commit only
// from a member of the current generation. A member that lost its partitions (expelled
// after a long pause, or a network partition) cannot commit, so it never publishes: its
// pending files are removed by the new owner's recovery, or, if it wrote them after that
// recovery ran, by the next one, and meanwhile they are invisible to readers. A member
// whose commit succeeded was the owner when it committed; if it then stalls, the new
// owner's recovery publishes the same pending files under the same names, and the
// stalled member's own rename finds nothing to do. Recovery of a partition runs in the
// assignment callback, which franz-go calls before fetching that partition, and
// BlockRebalanceOnPoll keeps rebalances out of an open batch, so one member never holds a
// batch across a change of ownership.
//
// The residual risks, stated honestly: an operator who points two groups at one root, or
// who resets a group's offsets backwards, gets what the rules say (files at or after the
// new offset are removed and rewritten); a pending file left by a zombie after the last
// recovery stays on disk, invisible, until the partition's next assignment.
//
// When a commit's outcome is unknown (a timeout, a refused generation), the sink keeps
// the pending files, leaves the group and rejoins, so that recovery decides from what the
// coordinator actually stored.
//
// # Storage
//
// A directory by default; object stores through the Storage interface, where "publish"
// is a copy under the final name followed by a delete of the pending object. Publication
// is idempotent, so the rules above hold unchanged.
//
// # Memory
//
// A batch holds at most MaxOpenFiles files, each with at most one row group of
// RowGroupRows rows in memory, and ends after FlushBytes bytes of record values; the
// fetch size is bounded by FlushBytes too.
package sink
