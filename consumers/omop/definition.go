package omop

import (
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

// StageName is the stage's name in dead-letter headers, metrics and logs.
const StageName = schemas.NodeOMOP

// Definition declares the mapping stage for the runtime: it reads every
// <prefix>.unique.<Type> topic (types it does not map are counted and skipped), writes
// omop.<table>, keeps no state, and runs p. The caller keeps p to read its Summary.
func Definition(p *Processor, topo schemas.Topology) stage.Definition {
	return stage.Definition{
		Node:   topo.MustNode(schemas.NodeOMOP),
		Topics: topo.Topics,
		NewProcessor: func() (stage.Processor, error) {
			return p, nil
		},
		// Process is safe for concurrent use: each record gets its own pooled mapper
		// (parser, rows, scratch), the tallies and the collision table are locked, and
		// the Avro encoders are concurrency-safe. Records of one partition too: only
		// which of two keys hashing to one id is refused (a 64-bit collision) depends on
		// the order they are processed in, as it already does across partitions.
		ConcurrentPartitions: true,
		ConcurrentRecords:    true,
	}
}
