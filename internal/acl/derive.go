package acl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// Operator commands that are no node of the topology but still need grants.
const (
	// CommandStatus is 'fhirstream status' with its defaults: lag, dead-letter counts and
	// the open-transaction check.
	CommandStatus = "status"
	// CommandStatusResolve is 'fhirstream status --resolve-hanging': status, and ending
	// hanging transactions by writing their markers.
	CommandStatusResolve = "status-resolve-hanging"
	// CommandTopicsCreate is 'fhirstream topics create'.
	CommandTopicsCreate = "topics-create"
)

// Options change what is derived.
type Options struct {
	// CreateTopics also grants Create on the topics a command writes, for sites that let
	// the fetcher and the stages create the topics of resource types that appear later
	// instead of running 'fhirstream topics create --types ...' for them first.
	CreateTopics bool
	// ResourceTypes are the types 'topics create' makes topics for (default
	// schemas.BulkResourceTypes); they only decide which topic sets it needs.
	ResourceTypes []string
}

// Commands lists the commands that need grants, in data-flow order: every node of the
// topology, then the operator commands.
func Commands(topo schemas.Topology) []string {
	var out []string
	for _, n := range topo.Nodes {
		out = append(out, n.Name)
	}
	return append(out, CommandTopicsCreate, CommandStatus, CommandStatusResolve)
}

// CommandLine is how the command is run, for printouts.
func CommandLine(topo schemas.Topology, command string) string {
	switch command {
	case CommandStatus:
		return "fhirstream status"
	case CommandStatusResolve:
		return "fhirstream status --resolve-hanging"
	case CommandTopicsCreate:
		return "fhirstream topics create"
	case schemas.NodeFetch:
		return "fhirstream fetch"
	case schemas.NodeDLQReplay:
		return "fhirstream dlq replay"
	}
	return "fhirstream consume " + command
}

// Derive returns the grants command needs under topo, read off the topology's nodes:
// a node reads its inputs (Read, which implies Describe), writes its outputs (Write,
// which implies Describe and, since Kafka 3.0 (KIP-679), idempotent produce), reads and
// writes its state, reads its consumer group (join, fetch and commit offsets) and writes
// its transactional ids (begin, commit, abort). Nothing is granted on the cluster but
// to status --resolve-hanging.
func Derive(topo schemas.Topology, command string, o Options) ([]Grant, error) {
	switch command {
	case CommandStatus:
		return status(topo, false), nil
	case CommandStatusResolve:
		return status(topo, true), nil
	case CommandTopicsCreate:
		return topicsCreate(topo, o), nil
	}
	n, err := topo.Node(command)
	if err != nil {
		return nil, fmt.Errorf("no ACLs for %q: it is no command of the pipeline (commands: %s)", command, strings.Join(Commands(topo), ", "))
	}
	return node(topo, n, o), nil
}

func node(topo schemas.Topology, n schemas.Node, o Options) []Grant {
	var gs []Grant
	for _, s := range n.Inputs {
		gs = append(gs, topicGrant(s, Read, "consume its input"))
	}
	for _, s := range n.State {
		gs = append(gs, topicGrant(s, Read, "restore its state"), topicGrant(s, Write, "write its state"))
	}
	for _, s := range n.Outputs {
		why := "produce its output"
		if s.Literal && s.Prefix == topo.Topics.DLQ() {
			why = "produce dead letters"
		}
		gs = append(gs, topicGrant(s, Write, why))
		// The parked topic of dlq replay is made on its first use: it is no topic of
		// the contract, so 'topics create' does not make it.
		if o.CreateTopics || (n.Role == schemas.RoleTool && s.Literal && s.Prefix != topo.Topics.DLQ()) {
			gs = append(gs, topicGrant(s, Create, "create it when missing"))
		}
	}
	if n.Group != "" {
		p := Literal
		if n.GroupIsPrefix {
			p = Prefixed
		}
		gs = append(gs, Grant{Resource: Group, Pattern: p, Name: n.Group, Operation: Read, Why: "join its consumer group and commit offsets"})
	}
	if n.TransactionalIDPrefix != "" {
		gs = append(gs, Grant{Resource: TransactionalID, Pattern: Prefixed, Name: n.TransactionalIDPrefix, Operation: Write,
			Why: "produce and commit in transactions"})
	}
	return uniqueSorted(gs)
}

func topicGrant(s schemas.TopicSet, op Operation, why string) Grant {
	p := Prefixed
	if s.Literal {
		p = Literal
	}
	return Grant{Resource: Topic, Pattern: p, Name: s.Prefix, Operation: op, Why: why}
}

// status needs to describe every consumer group and read every topic of the pipeline:
// listing a partition's open transactions (DescribeProducers) takes Read, as does
// counting the dead letters; a group's transaction on its offsets sits in
// __consumer_offsets, read the same way. Describe on the transactional ids names the
// transactions. Resolving a hanging one writes its markers as a broker does, which only
// ClusterAction allows (as for kafka-transactions.sh abort).
func status(topo schemas.Topology, resolve bool) []Grant {
	var gs []Grant
	for _, n := range topo.Nodes {
		for _, sets := range [][]schemas.TopicSet{n.Inputs, n.Outputs, n.State} {
			for _, s := range sets {
				gs = append(gs, topicGrant(s, Read, "offsets, lag, open transactions, dead-letter counts"))
			}
		}
	}
	gs = append(gs, Grant{Resource: Topic, Pattern: Literal, Name: "__consumer_offsets", Operation: Read,
		Why: "open transactions on the groups' offsets"})
	for _, n := range topo.Consumers() {
		gs = append(gs, Grant{Resource: Group, Pattern: Literal, Name: n.Group, Operation: Describe, Why: "members and committed offsets"})
	}
	for _, n := range topo.Nodes {
		if n.TransactionalIDPrefix != "" {
			gs = append(gs, Grant{Resource: TransactionalID, Pattern: Prefixed, Name: n.TransactionalIDPrefix, Operation: Describe,
				Why: "name and state of open transactions"})
		}
	}
	if resolve {
		gs = append(gs, Grant{Resource: Cluster, Pattern: Literal, Name: ClusterName, Operation: ClusterAction,
			Why: "write the markers that end a hanging transaction"})
	}
	return uniqueSorted(gs)
}

// topicsCreate needs, on every topic set the contract's topics fall in: Create, Describe
// (to see which exist) and AlterConfigs (to correct the managed configs of existing
// ones; it implies DescribeConfigs).
func topicsCreate(topo schemas.Topology, o Options) []Grant {
	types := o.ResourceTypes
	if len(types) == 0 {
		types = schemas.BulkResourceTypes
	}
	var sets []schemas.TopicSet
	for _, n := range topo.Nodes {
		sets = append(append(append(sets, n.Inputs...), n.Outputs...), n.State...)
	}
	var gs []Grant
	for _, spec := range kafkaclient.ContractTopics(topo.Topics, types, schemas.OMOPTables(), kafkaclient.TopicOptions{}) {
		i := slices.IndexFunc(sets, func(s schemas.TopicSet) bool { return s.Match(spec.Name) })
		if i < 0 {
			continue // every contract topic is in the topology; TestDeriveCoversContractTopics holds it
		}
		for _, op := range []Operation{Create, Describe, AlterConfigs} {
			gs = append(gs, topicGrant(sets[i], op, "create missing topics, correct managed configs"))
		}
	}
	return uniqueSorted(gs)
}
