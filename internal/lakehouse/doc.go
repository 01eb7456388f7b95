// Package lakehouse opens the Apache Iceberg catalog of the lake and holds what every
// writer and reader of it shares: the table layouts (one column list gives both the
// Iceberg schema and the Parquet schema with field ids), table names, the Parquet data
// and equality-delete file writer that turns parquet-go output into Iceberg DataFiles,
// and the Kafka offsets that sink commits record in snapshot summaries.
//
// The catalog is iceberg-go's: by default an embedded SQL catalog on SQLite (pure Go, no
// cgo) at <out>/catalog.db with the warehouse at <out>/warehouse, which several processes
// may share; or a REST catalog (--catalog rest --catalog-uri URL) with the REST spec's
// OAuth2 client credentials or bearer token, read from the environment or a file, never
// from a flag value.
//
// # Offsets in snapshot summaries
//
// A sink commit writes, in the snapshot summary, the Kafka offsets the table has absorbed
// from its input topic for the sink's consumer group:
//
//	fhirstream.kafka.offsets.<group> = {"topic":"omop.person","offsets":{"0":1234,"1":987}}
//	fhirstream.kafka.commit-id       = <uuid of the sink batch>
//
// An offset is the next offset to consume, as Kafka commits it. Every commit carries the
// offsets of all partitions the table has absorbed (its own, merged over the previous
// ones), so the newest snapshot carrying the key has them all. Snapshots that do not
// carry the key (compaction, expiry, other writers) are skipped: Offsets reads the newest
// snapshot in the current snapshot's ancestry that carries it. Snapshot expiry must
// therefore keep that snapshot (OffsetSnapshots lists them).
package lakehouse
