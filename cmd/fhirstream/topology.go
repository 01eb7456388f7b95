package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/schemas"
)

func newTopologyCmd() *cobra.Command {
	var (
		prefix string
		opts   schemas.TopologyOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Print the pipeline's graph: each node's topics read and written, state, group and transactional ids",
		Long: `topology prints the graph the pipeline runs, as the code declares it (schemas.Topology):
for every node (the fetcher, each stage, each sink, dlq replay) the topics it reads and
writes, the compacted state topics it keeps, its consumer group and the prefix of its
transactional ids. The stage runtime refuses records to topics a node does not declare,
and 'fhirstream status' and the ACLs each command needs are read off the same value.

Output formats: text (default), json, and mermaid (a flowchart for documentation).`,
		Example: `  fhirstream topology
  fhirstream topology --topic-prefix site-a --deidentify -o json
  fhirstream topology -o mermaid > docs/topology.mmd`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&prefix, "topic-prefix", schemas.DefaultPrefix, "prefix of every topic (env FHIRSTREAM_TOPIC_PREFIX)")
	deidentifyFlag(cmd.Flags(), &opts.Deidentify)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or mermaid")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, err := schemas.NewTopics(prefix)
		if err != nil {
			return err
		}
		topo := t.Topology(opts)
		w := cmd.OutOrStdout()
		switch output {
		case "text":
			return printTopology(w, topo)
		case "json":
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(topo)
		case "mermaid":
			return printTopologyMermaid(w, topo)
		}
		return fmt.Errorf("--output %q: want text, json or mermaid", output)
	}
	return cmd
}

// printTopology writes one block per node, in data-flow order.
func printTopology(w io.Writer, topo schemas.Topology) error {
	names := func(sets []schemas.TopicSet) string {
		out := make([]string, len(sets))
		for i, s := range sets {
			out[i] = s.Name
		}
		return strings.Join(out, ", ")
	}
	var b strings.Builder
	for i, n := range topo.Nodes {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s (%s)", n.Name, n.Role)
		if n.Optional {
			b.WriteString(", optional")
		}
		fmt.Fprintf(&b, ": %s\n", n.Summary)
		row := func(label, value string) {
			if value != "" {
				fmt.Fprintf(&b, "  %-16s %s\n", label, value)
			}
		}
		group := n.Group
		if n.GroupIsPrefix && group != "" {
			group += "*"
		}
		row("consumer group", group)
		row("reads", names(n.Inputs))
		row("writes", names(n.Outputs))
		row("state", names(n.State))
		if n.TransactionalIDPrefix != "" {
			row("transactional id", n.TransactionalIDPrefix+"*")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printTopologyMermaid writes a flowchart: nodes as boxes, topic sets as stadiums, an
// edge per read and write (state topics both ways).
func printTopologyMermaid(w io.Writer, topo schemas.Topology) error {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	ids := map[string]string{}
	topicID := func(s schemas.TopicSet) string {
		id, ok := ids[s.Name]
		if !ok {
			id = fmt.Sprintf("t%d", len(ids))
			ids[s.Name] = id
			fmt.Fprintf(&b, "  %s([\"%s\"])\n", id, mermaidText(s.Name))
		}
		return id
	}
	for i, n := range topo.Nodes {
		node := fmt.Sprintf("n%d", i)
		fmt.Fprintf(&b, "  %s[\"%s\"]\n", node, n.Name)
		for _, s := range n.Inputs {
			fmt.Fprintf(&b, "  %s --> %s\n", topicID(s), node)
		}
		for _, s := range n.Outputs {
			fmt.Fprintf(&b, "  %s --> %s\n", node, topicID(s))
		}
		for _, s := range n.State {
			fmt.Fprintf(&b, "  %s <--> %s\n", node, topicID(s))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText escapes what Mermaid would read as markup in a label ("<Type>").
func mermaidText(s string) string {
	return strings.NewReplacer("<", "#lt;", ">", "#gt;").Replace(s)
}
