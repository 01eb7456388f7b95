package stage

import (
	"errors"
	"fmt"

	"github.com/fhirstream/fhirstream/schemas"
)

// Definition declares a stage for the runtime: its node of the declared topology (name,
// consumer group, the topics it reads and may write, its state) and its logic. What a
// stage reads and writes is therefore read off schemas.Topology, the one place the graph
// is written; the runtime refuses a record to a topic the node does not declare.
type Definition struct {
	// Node is the stage's node of the topology, e.g.
	// topics.Topology(opts).MustNode(schemas.NodeValidate). Its Name is the stage name in
	// dead-letter headers, metrics and logs; its Group the consumer group and the base of
	// the transactional ids; its State, when set, the one compacted changelog topic of
	// the stage's partition stores.
	Node schemas.Node
	// Topics are the contract's topic names; the dead-letter topic is Topics.DLQ().
	Topics schemas.Topics
	// NewProcessor returns the stage logic. It is called once per run.
	NewProcessor func() (Processor, error)
	// NewStore returns an empty partition store; nil means a general map store. A stage
	// with a compact value layout supplies its own to keep memory per key small.
	NewStore func() Store
	// ConcurrentPartitions says the processor may be called for different input
	// partitions at once (see Processor), so a batch's partitions are processed by
	// several goroutines. Records of one partition are processed in order, by one
	// goroutine, unless ConcurrentRecords.
	ConcurrentPartitions bool
	// ConcurrentRecords says, for a stateless stage with ConcurrentPartitions, that the
	// processor may also be called for records of one partition at once: it keeps
	// nothing that depends on the order of a partition's records. The runtime then
	// splits a batch's partitions into runs of records that several goroutines process,
	// and still produces each partition's outputs in its records' order.
	ConcurrentRecords bool
}

// Name is the stage's name, its node's.
func (d *Definition) Name() string { return d.Node.Name }

// Changelog is the stage's changelog topic, "" for a stateless stage.
func (d *Definition) Changelog() string {
	if len(d.Node.State) == 0 {
		return ""
	}
	return d.Node.State[0].Prefix
}

// Validate reports what is missing or inconsistent in d.
func (d *Definition) Validate() error {
	n := &d.Node
	switch {
	case n.Name == "":
		return errors.New("stage definition: no node name")
	case n.Group == "":
		return fmt.Errorf("stage %s: no consumer group", n.Name)
	case len(n.Inputs) == 0:
		return fmt.Errorf("stage %s: no input topics", n.Name)
	case len(n.State) > 1:
		return fmt.Errorf("stage %s: one changelog topic at most, not %d", n.Name, len(n.State))
	case len(n.State) == 1 && !n.State[0].Literal:
		return fmt.Errorf("stage %s: the changelog must be one topic, not the set %s", n.Name, n.State[0].Name)
	case d.NewProcessor == nil:
		return fmt.Errorf("stage %s: no NewProcessor", n.Name)
	case d.Topics.Prefix == "":
		return fmt.Errorf("stage %s: no topics (use schemas.NewTopics)", n.Name)
	case !n.Writes(d.Topics.DLQ()):
		return fmt.Errorf("stage %s: its node does not declare the dead-letter topic %s as an output", n.Name, d.Topics.DLQ())
	}
	return nil
}

// WithGroup returns d running in consumer group group, with transactional ids
// "<group>-<instance>": for tests and benchmarks that run a stage under a group of their
// own beside other runs of it.
func (d Definition) WithGroup(group string) Definition {
	d.Node.Group = group
	d.Node.TransactionalIDPrefix = group + "-"
	return d
}
