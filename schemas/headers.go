package schemas

// Header names carried on records. They are the contract between stages and with any
// outside subscriber; change them only with a migration note.

// ContentTypeHeader and its values say how a record's value is encoded.
const (
	ContentTypeHeader = "content-type"
	ContentTypeFHIR   = "application/fhir+json"
	// ContentTypeAvro marks Avro single-object encoding (the default for omop.* topics).
	ContentTypeAvro = "application/vnd.apache.avro+binary"
	// ContentTypeAvroConfluent marks the Confluent wire format (schema registry id prefix).
	ContentTypeAvroConfluent = "application/vnd.confluent.avro"
)

// Provenance headers, set by the fetcher on every raw record and carried unchanged by
// every later stage, so any row in the lake can be traced to the export file and line it
// came from.
const (
	HeaderExportID        = "fhir.export.id"               // the export's status URL or a local run id
	HeaderTransactionTime = "fhir.export.transaction-time" // manifest transactionTime, RFC 3339
	HeaderSourceURL       = "fhir.source.url"              // the NDJSON file URL (or local path)
	HeaderSourceLine      = "fhir.source.line"             // 1-based line number within that file
	HeaderResourceType    = "fhir.resource-type"           // the resource type of the value
	HeaderDeleted         = "fhir.deleted"                 // "true" on tombstones of deleted resources
	// HeaderPreviousVersion is set by dedupe on a record whose key it has forwarded before
	// (an update, or the tombstone of a known resource), and carried by every later stage
	// (omop's rows too): its value is the versionId of the version forwarded last, "" when
	// that version had none, and "?" when it had one that is not a number up to 2^32-3
	// (dedupe keeps numeric versionIds only). Records of keys dedupe has not forwarded
	// before carry no such header, so a sink can tell an initial load (no deletes to
	// write) from a replacement.
	HeaderPreviousVersion = "fhir.previous-version"
	// HeaderSourceSize is the byte length of a source line dead-lettered by reference
	// (too large for a record, or over the line limit), whose value is left out.
	HeaderSourceSize = "fhir.source.size"
)

// Dead-letter context headers, in the spirit of Kafka Connect's __connect.errors.*. The
// original key, value, headers and timestamp of a dead letter are kept unchanged; these
// are added beside them and stripped again by replay. For a line the fetcher could not
// publish, the source topic is the raw topic it was meant for, and partition and offset are -1.
const (
	DLQHeaderPrefix    = "fhirstream.errors."
	DLQStage           = DLQHeaderPrefix + "stage"     // stage that rejected the record
	DLQSourceTopic     = DLQHeaderPrefix + "topic"     // topic the record was read from
	DLQSourcePartition = DLQHeaderPrefix + "partition" // its partition, decimal
	DLQSourceOffset    = DLQHeaderPrefix + "offset"    // its offset, decimal
	DLQErrorClass      = DLQHeaderPrefix + "class"     // short machine-readable reason
	DLQErrorMessage    = DLQHeaderPrefix + "message"   // human-readable reason, no PHI
	DLQErrorPath       = DLQHeaderPrefix + "path"      // FHIRPath-like element path, when known
	DLQAttempts        = DLQHeaderPrefix + "attempts"  // processing attempts before giving up
	DLQTime            = DLQHeaderPrefix + "time"      // when it was dead-lettered, RFC 3339
	// DLQReplayCount counts how often replay has re-sent a record; it survives replay so
	// that a record failing again and again is parked instead of looping.
	DLQReplayCount = "fhirstream.replay.count"
)
