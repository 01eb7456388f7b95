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
// compares them with the committed offset C and the batch named in the commit metadata.
// C is taken from the group client's own OffsetFetch answer (kgo.OnOffsetsFetched), the
// answer it then starts consuming from, never from a second fetch: the rules below are
// exact only for the offset consumption really resumes at, and a second fetch can
// disagree with it (a partition it fails to name reads as "no commit", which removes
// committed files, and an older commit removes the newer committed batch's pending files;
// both lose rows without a trace). A partition whose offset fetch a rebalance cancels is
// recovered when the client fetches it again.
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
// stalled member's own rename finds the pending file gone and the final file there. A
// pending file of a committed batch gone with no final file would be committed rows
// missing from the lake: publication reports it as an error naming the offsets to rewind
// to, and restarts the session, rather than skip it. Recovery of a partition runs after
// the client fetched its committed offset and before it fetches records, and
// BlockRebalanceOnPoll keeps rebalances out of an open batch, so one member never holds a
// batch across a change of ownership, and recovery never touches a partition the open
// batch holds (a partition whose offsets are being fetched is not being consumed).
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
// A directory path is a LocalStorage: pending files are fsynced, published by rename(2)
// within their directory, and the directory is fsynced. A URL is a BlobStorage over
// gocloud.dev/blob: s3:// (and S3-compatible stores through ?endpoint=), azblob://,
// gs:// (binaries built with -tags gcs), file:// (a directory through the object-store
// code path, used by the tests; no fsync) and mem:// (tests). The protocol is the same
// code for both, because it never needs an atomic rename, only these properties, which
// TestStorageContract checks for every storage:
//
//   - a file is invisible under its name until its writer completes. On an object store
//     the pending object is one upload: it appears when the writer's Close succeeds and
//     never if the upload is cancelled or the process dies, so step 1 leaves whole
//     pending objects or none;
//   - publication is idempotent. On an object store it is a server-side copy from the
//     pending key to the final key followed by a delete of the pending key. The final key
//     is written only by that copy, only after the commit of step 2 succeeded, and always
//     with the bytes of the committed batch's pending object, so a second copy (by
//     recovery after a crash between copy and delete, or by a stalled owner after the new
//     owner's recovery) writes the same bytes under the same key, and a copy whose source
//     is already gone does nothing. Readers never see an uncommitted object under a final
//     key, and a final key never changes content;
//   - List is strongly consistent (S3 since 2020, GCS and Azure always), so recovery sees
//     every pending object a crashed member completed.
//
// A zombie cannot overwrite the new owner's objects on an object store for the same
// reasons as on disk: its pending keys carry its own random batch id, so they never
// collide with the new owner's; it cannot publish, because publishing follows a commit
// the coordinator refuses from a member of an old generation; and recovery of the next
// assignment deletes its pending objects. The cost of having no rename is one server-side
// copy per file and batch, bounded by the flush size (far below S3's 5 GiB copy limit),
// and no client-side bytes.
//
// fileblob writes an object to "<key>.<hex>.tmp" beside it and renames it on Close; the
// sink sets no_tmp_dir (so the rename stays on one filesystem) and metadata=skip (no
// ".attrs" sidecar files for Spark or Hive to trip on). Temporary files a crash abandons
// are recognised by their name and removed by recovery like uncommitted pending files.
//
// # Memory
//
// A batch holds at most MaxOpenFiles files, each with at most one row group of
// RowGroupRows rows in memory, and ends after FlushBytes bytes of record values. Fetches
// are one at a time and at most 4 MiB, because franz-go keeps a fetched response buffered,
// decompressed, while the sink works through the previous one: at 16 MiB that buffer was
// the largest part of the heap. An object-store upload holds one 5 MiB part buffer while
// it has bytes to send. Measured at the default settings on a 1,000-patient export
// (380,768 OMOP rows, 350,900 resources): peak RSS about 230-280 MB.
package sink
