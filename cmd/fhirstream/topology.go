package main

import (
	"fmt"

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
			return topo.WriteText(w)
		case "json":
			return writeJSON(w, topo)
		case "mermaid":
			return topo.WriteMermaid(w)
		}
		return fmt.Errorf("--output %q: want text, json or mermaid", output)
	}
	return cmd
}
