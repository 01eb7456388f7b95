package producer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
)

// StageFetch is the stage name on the fetcher's dead letters.
const StageFetch = "fetch"

// Error classes of the fetcher's dead letters (the error class context header, see
// internal/deadletter). They are part of the dead-letter contract: operators filter and
// replay by them, so a class is never renamed.
const (
	ClassInvalidJSON         = "invalid-json"          // the line is not JSON
	ClassNotObject           = "not-object"            // the line is JSON, but not an object
	ClassMissingResourceType = "missing-resource-type" // no resourceType
	ClassBadResourceType     = "bad-resource-type"     // resourceType is no FHIR type name (organized output)
	ClassTypeMismatch        = "type-mismatch"         // resourceType differs from the file's type
	ClassMissingID           = "missing-id"            // no id
	ClassBadID               = "bad-id"                // id is not a FHIR id
	ClassTooLarge            = "too-large"             // larger than a Kafka record may be; dead-lettered by reference
	ClassLineTooLong         = "line-too-long"         // longer than --max-line-bytes; dead-lettered by reference
	ClassExportError         = "export-error"          // a line of the manifest's error files (an OperationOutcome)
	ClassBadDeleted          = "bad-deleted"           // a line of a deleted file that is no Bundle of DELETEs
)

// deadLetter produces rec to the dead-letter topic with the fetcher's context: it was
// never in a topic, so partition and offset are -1; sourceTopic is the topic it was
// meant for, "" when there was none.
func (rn *runner) deadLetter(ctx context.Context, rec *kgo.Record, sourceTopic, class, msg string) {
	metricErrors.WithLabelValues(class).Inc()
	rn.pub.produce(ctx, deadletter.Record(rn.topics.DLQ(), rec, deadletter.Context{
		Stage: StageFetch, SourceTopic: sourceTopic, Partition: -1, Offset: -1, Class: class, Message: msg}))
}
