package producer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/schemas"
)

// deadLetter produces rec to the dead-letter topic with the fetcher's context: it was
// never in a topic, so partition and offset are -1; sourceTopic is the topic it was
// meant for, "" when there was none; class is one of the contract's (schemas.Class*).
func (rn *runner) deadLetter(ctx context.Context, rec *kgo.Record, sourceTopic, class, msg string) {
	metricErrors.WithLabelValues(class).Inc()
	rn.pub.produce(ctx, deadletter.Record(rn.topics.DLQ(), rec, deadletter.Context{
		Stage: schemas.NodeFetch, SourceTopic: sourceTopic, Partition: -1, Offset: -1, Class: class, Message: msg}))
}
