// Package passthrough is the identity stage: every input is forwarded unchanged (key,
// value, headers, timestamp) to a mapped topic. It runs on the same runtime as the real
// stages, so benchmarks can state a stage's cost as a ratio to it: what remains is the
// price of the runtime itself (transactions, consuming, producing).
package passthrough

import (
	"context"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

// Layer is the topic layer passthrough writes to: <prefix>.passthrough.<Type>.
const Layer = "passthrough"

// Processor forwards each input to To(input topic); inputs To maps to "" are dropped.
type Processor struct {
	To func(inputTopic string) string
}

// Process forwards in unchanged.
func (p Processor) Process(_ context.Context, in *stage.Record, _ stage.Store, out stage.Emitter) error {
	topic := p.To(in.Topic)
	if topic == "" {
		return nil
	}
	out.Emit(stage.Record{Topic: topic, Key: in.Key, Value: in.Value, Headers: in.Headers, Timestamp: in.Timestamp})
	return nil
}

// Definition reads every topic of layer from (e.g. schemas.LayerRaw) and writes each
// record to <prefix>.passthrough.<Type>, in consumer group "fhirstream-passthrough".
func Definition(t schemas.Topics, from string) stage.Definition {
	to := func(in string) string {
		_, rt, ok := t.ParseLayerTopic(in)
		if !ok {
			return ""
		}
		return t.Prefix + "." + Layer + "." + rt
	}
	return stage.Definition{
		// Not a node of the pipeline's topology: a benchmark's yardstick, declared here.
		Node: t.StageNode("passthrough", "forwards every record unchanged (benchmark baseline)",
			t.LayerTopics(from), t.LayerTopics(Layer)),
		Topics:               t,
		ConcurrentPartitions: true,
		ConcurrentRecords:    true,
		NewProcessor: func() (stage.Processor, error) {
			return Processor{To: to}, nil
		},
	}
}
