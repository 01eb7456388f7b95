package schemas

import (
	"fmt"
	"regexp"
	"strings"
)

// The pipeline's topology: every process kind (a node), what it reads, what it writes, the
// state it keeps and the consumer group and transactional ids it uses, declared once here
// (as goka's DefineGroup declares a processor). Everything that needs the graph reads this
// value: the stage runtime (which refuses to write to a topic its node does not declare),
// the in-process pipeline, `fhirstream status`, `fhirstream topology`, and the ACLs each
// command needs.

// Node names. A stage's name is also its "stage" label in metrics and dead letters.
const (
	NodeFetch      = "fetch"
	NodeValidate   = "validate"
	NodeDedupe     = "dedupe"
	NodeDeid       = "deid"
	NodeOMOP       = "omop"
	NodeSinkBronze = "sink-bronze"
	NodeSinkSilver = "sink-silver"
	NodeSinkOMOP   = "sink-omop"
	NodeDLQReplay  = "dlq-replay"
)

// LayerDeid holds de-identified resources, written by the deid stage when it runs:
// <prefix>.deid.<Type>, same keys pseudonymised.
const LayerDeid = "deid"

// Role says how a node runs.
type Role string

// Roles.
const (
	// RoleSource publishes into Kafka from outside it (the fetcher).
	RoleSource Role = "source"
	// RoleStage is a consumer group run by the stage runtime: it reads and writes Kafka
	// in transactions (consumers/runtime).
	RoleStage Role = "stage"
	// RoleSink is a consumer group that writes the lake; its progress lives in the lake.
	RoleSink Role = "sink"
	// RoleTool is an operator's command that reads and writes topics (dlq replay).
	RoleTool Role = "tool"
)

// TopicSet is a set of topics of one kind: one layer of per-type FHIR topics, the OMOP
// table topics, or a single topic.
type TopicSet struct {
	// Name shows the set as operators read it: "fhir.raw.<Type>", "omop.<table>", "fhir.dlq".
	Name string `json:"name"`
	// Prefix starts every topic of the set (for a single topic, the topic itself); with
	// Literal false, ACLs grant the set as a PREFIXED pattern of it.
	Prefix string `json:"prefix"`
	// Literal says the set is exactly one topic, Prefix.
	Literal bool `json:"literal"`
	// Pattern is the regular expression of the set's topics, as franz-go's ConsumeRegex
	// takes it.
	Pattern string `json:"pattern"`
	re      *regexp.Regexp
}

// Match reports whether topic belongs to the set.
func (s TopicSet) Match(topic string) bool {
	if s.Literal {
		return topic == s.Prefix
	}
	if s.re == nil {
		return regexp.MustCompile(s.Pattern).MatchString(topic)
	}
	return s.re.MatchString(topic)
}

// SingleTopic is the set of one topic.
func SingleTopic(topic string) TopicSet {
	return TopicSet{Name: topic, Prefix: topic, Literal: true, Pattern: "^" + regexp.QuoteMeta(topic) + "$"}
}

func prefixedTopics(name, prefix, pattern string) TopicSet {
	return TopicSet{Name: name, Prefix: prefix, Pattern: pattern, re: regexp.MustCompile(pattern)}
}

// LayerTopics is the set of a FHIR layer's per-type topics, <prefix>.<layer>.<Type>.
func (t Topics) LayerTopics(layer string) TopicSet {
	return prefixedTopics(t.layer(layer, "<Type>"), t.layer(layer, ""), t.LayerPattern(layer))
}

// OMOPTopics is the set of OMOP table topics.
func (t Topics) OMOPTopics() TopicSet {
	return prefixedTopics(t.OMOP("<table>"), t.OMOP(""), t.OMOPPattern())
}

// Node is one kind of process of the pipeline. Running more copies of a node with the
// same group scales it out (up to its inputs' partition count).
type Node struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Summary says in one line what the node does.
	Summary string `json:"summary"`
	// Group is the consumer group, "" for a node that joins none (the fetcher).
	Group string `json:"group,omitempty"`
	// GroupIsPrefix says Group is a prefix of the groups actually used (dlq replay names
	// a group per filter).
	GroupIsPrefix bool `json:"group_is_prefix,omitempty"`
	// Inputs are the topics the node reads, through its group.
	Inputs []TopicSet `json:"inputs,omitempty"`
	// Outputs are the topics the node writes; the dead-letter topic among them for every
	// node that dead-letters. The stage runtime refuses a record to any other topic.
	Outputs []TopicSet `json:"outputs,omitempty"`
	// State are compacted topics the node both reads (to restore) and writes.
	State []TopicSet `json:"state,omitempty"`
	// TransactionalIDPrefix starts the transactional ids of a node that writes Kafka in
	// transactions, "" for one that does not.
	TransactionalIDPrefix string `json:"transactional_id_prefix,omitempty"`
	// Optional nodes run only when enabled (deid).
	Optional bool `json:"optional,omitempty"`
}

// Reads reports whether the node reads topic (as input or state).
func (n Node) Reads(topic string) bool {
	return matchAny(n.Inputs, topic) || matchAny(n.State, topic)
}

// Writes reports whether the node may write topic (as output or state).
func (n Node) Writes(topic string) bool {
	return matchAny(n.Outputs, topic) || matchAny(n.State, topic)
}

// InputPattern is one regular expression matching every input topic.
func (n Node) InputPattern() string {
	if len(n.Inputs) == 1 {
		return n.Inputs[0].Pattern
	}
	parts := make([]string, len(n.Inputs))
	for i, s := range n.Inputs {
		parts[i] = "(?:" + s.Pattern + ")"
	}
	return strings.Join(parts, "|")
}

func matchAny(sets []TopicSet, topic string) bool {
	for _, s := range sets {
		if s.Match(topic) {
			return true
		}
	}
	return false
}

// TopologyOptions choose between the pipeline's variants.
type TopologyOptions struct {
	// Deidentify runs the deid stage between dedupe and everything downstream of the
	// PHI boundary: omop and the silver sink then read <prefix>.deid.<Type> instead of
	// <prefix>.unique.<Type>. The bronze sink keeps what was fetched.
	Deidentify bool
}

// Topology is the declared graph: its nodes in data-flow order.
type Topology struct {
	Topics  Topics          `json:"-"`
	Prefix  string          `json:"topic_prefix"`
	Options TopologyOptions `json:"options"`
	Nodes   []Node          `json:"nodes"`
}

// Topology declares the pipeline under these topic names.
func (t Topics) Topology(o TopologyOptions) Topology {
	dlq := SingleTopic(t.DLQ())
	raw, valid, unique := t.LayerTopics(LayerRaw), t.LayerTopics(LayerValid), t.LayerTopics(LayerUnique)
	clean := unique // what flows past the PHI boundary
	if o.Deidentify {
		clean = t.LayerTopics(LayerDeid)
	}
	stage := t.StageNode
	sink := func(name, summary string, in TopicSet) Node {
		return Node{Name: name, Role: RoleSink, Summary: summary, Group: t.Group("fhirstream-" + name),
			Inputs: []TopicSet{in}, Outputs: []TopicSet{dlq}}
	}
	// A dead letter goes back to the input topic of the node that refused it.
	replayOutputs := []TopicSet{raw, valid, unique}
	if o.Deidentify {
		replayOutputs = append(replayOutputs, clean)
	}
	// Like every node it may dead-letter (a letter that makes it panic).
	replayOutputs = append(replayOutputs, t.OMOPTopics(), SingleTopic(t.DLQ()+".parked"), dlq)
	nodes := []Node{
		{Name: NodeFetch, Role: RoleSource, Summary: "SMART Backend Services + Bulk Data $export; one record per resource",
			Outputs: []TopicSet{raw, dlq}, State: []TopicSet{SingleTopic(t.State("fetcher"))},
			TransactionalIDPrefix: t.Group("fhirstream-fetch-")},
		stage(NodeValidate, "FHIR R4 structural rules", raw, valid),
		stage(NodeDedupe, "drops repeats and stale versions; state in a compacted changelog", valid, unique,
			SingleTopic(t.State("dedupe"))),
	}
	if o.Deidentify {
		d := stage(NodeDeid, "HIPAA Safe Harbor or limited data set: pseudonymised ids, shifted dates", unique, clean)
		d.Optional = true
		nodes = append(nodes, d)
	}
	nodes = append(nodes,
		stage(NodeOMOP, "FHIR R4 -> OMOP CDM v5.4 rows (Avro)", clean, t.OMOPTopics()),
		sink(NodeSinkBronze, "bronze: every resource as fetched, appended", unique),
		sink(NodeSinkSilver, "silver: current version of each resource", clean),
		sink(NodeSinkOMOP, "the OMOP CDM: current state of each table", t.OMOPTopics()),
		Node{Name: NodeDLQReplay, Role: RoleTool, Summary: "sends dead letters back to the topic they came from",
			Group: t.Group("fhirstream-dlq-replay-"), GroupIsPrefix: true,
			Inputs:                []TopicSet{dlq},
			Outputs:               replayOutputs,
			TransactionalIDPrefix: t.Group("fhirstream-dlq-replay-")},
	)
	return Topology{Topics: t, Prefix: t.Prefix, Options: o, Nodes: nodes}
}

// StageNode is the node of a stage run by the stage runtime: group "fhirstream-<name>"
// (under the prefix), reading in, writing out and the dead-letter topic, keeping state
// (at most one changelog topic), transactional ids "<group>-<instance>".
func (t Topics) StageNode(name, summary string, in, out TopicSet, state ...TopicSet) Node {
	g := t.Group("fhirstream-" + name)
	return Node{Name: name, Role: RoleStage, Summary: summary, Group: g,
		Inputs: []TopicSet{in}, Outputs: []TopicSet{out, SingleTopic(t.DLQ())}, State: state,
		TransactionalIDPrefix: g + "-"}
}

// Node returns the node called name.
func (tp Topology) Node(name string) (Node, error) {
	for _, n := range tp.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	names := make([]string, len(tp.Nodes))
	for i, n := range tp.Nodes {
		names[i] = n.Name
	}
	return Node{}, fmt.Errorf("no node %q in the topology (nodes: %s)", name, strings.Join(names, ", "))
}

// MustNode is Node for names known to exist (the Node* constants of nodes the options
// enable).
func (tp Topology) MustNode(name string) Node {
	n, err := tp.Node(name)
	if err != nil {
		panic(err)
	}
	return n
}

// Consumers are the nodes that read through a consumer group of their own, in data-flow
// order: the stages and the sinks (what `fhirstream status` reports on).
func (tp Topology) Consumers() []Node {
	var out []Node
	for _, n := range tp.Nodes {
		if n.Role == RoleStage || n.Role == RoleSink {
			out = append(out, n)
		}
	}
	return out
}
