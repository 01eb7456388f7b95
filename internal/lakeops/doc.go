// Package lakeops maintains the lake's Apache Iceberg tables: compaction of
// small data files with their delete files folded in, expiry of old snapshots
// and removal of orphan files, and a table's history with the Kafka offsets
// each sink commit recorded. `fhirstream lake compact|expire|history` are thin
// wrappers around it.
//
// The work itself is iceberg-go's (table/compaction, RewriteDataFiles,
// ExpireSnapshots, DeleteOrphanFiles); this package chooses what to rewrite
// and what to keep so that the result stays readable by every engine the docs
// list and the sinks can always resume:
//
//   - Compact rewrites every data file that has delete files, whatever its size,
//     and bin-packs small files, then drops the delete files no live data file
//     needs any more. A compacted table holds no equality deletes, which
//     pyiceberg cannot read.
//   - Expire never removes, from the current snapshot's ancestry, the newest
//     snapshot carrying a consumer group's Kafka offsets (summary keys
//     OffsetsSummaryPrefix+<group>) nor any snapshot after it: a sink resumes
//     from that snapshot's offsets.
package lakeops
