package schemas

// Dead-letter error classes: the value of the fhirstream.errors.class header of a record in
// the dead-letter topic, and the "class" label of the dead-letter metrics. Operators filter
// and alert on them and `fhirstream dlq` groups by them, so they are part of the contract:
// a class keeps its name and meaning once published; new ones may be added.
//
// A class says which rule the input broke, never which value broke it: messages beside
// it name elements and rules, not PHI.
const (
	// Input that is not a resource at all.

	ClassInvalidJSON         = "invalid-json"          // not JSON
	ClassNotObject           = "not-object"            // JSON, but not an object
	ClassTooLarge            = "too-large"             // larger than the record limit (--max-record-bytes)
	ClassLineTooLong         = "line-too-long"         // an NDJSON line longer than the fetcher's line limit
	ClassMissingResourceType = "missing-resource-type" // no resourceType
	ClassBadResourceType     = "bad-resource-type"     // resourceType is not a FHIR R4 resource type
	ClassMissingID           = "missing-id"            // no id
	ClassBadID               = "bad-id"                // id is not a FHIR id (1-64 of A-Z a-z 0-9 - .)

	// A resource that breaks a FHIR R4 rule (validate) or a rule a mapping needs.

	ClassMissingRequired   = "missing-required"   // a required element is absent
	ClassBadFormat         = "bad-format"         // wrong JSON type or primitive format
	ClassBadCode           = "bad-code"           // a code outside its required value set
	ClassBadCoding         = "bad-coding"         // a Coding without system or code
	ClassBadReference      = "bad-reference"      // a malformed reference
	ClassTypeMismatch      = "type-mismatch"      // resourceType differs from the topic's or file's type
	ClassKeyMismatch       = "key-mismatch"       // the record key is not <Type>/<id> of its resource
	ClassBadKey            = "bad-key"            // a record key (of a tombstone, say) that is not <Type>/<id>
	ClassUnmappedReference = "unmapped-reference" // the subject the OMOP mapping needs is not a resolvable Patient
	ClassInvalidRow        = "invalid-row"        // an OMOP row its schema refuses (a mapping defect)

	// Records a sink cannot turn into table rows.

	ClassUndecodable  = "undecodable"   // a value the topic's encoding cannot decode (Avro)
	ClassWrongTable   = "wrong-table"   // a row of another table than its topic's
	ClassUnknownTopic = "unknown-topic" // a topic the sink has no table for

	// Export-level failures of the fetcher (no single resource to blame).

	ClassExportError = "export-error" // the server reported an error for the export (OperationOutcome)
	ClassBadDeleted  = "bad-deleted"  // an entry of a deleted-resources file that is not a usable delete

	// Defects: the stage, not the data, is at fault; the input is kept for a replay after
	// the fix.

	ClassPanic    = "panic"     // the stage panicked on this input
	ClassStageBug = "stage-bug" // the stage broke the runtime's contract (undeclared state or topic)
)
