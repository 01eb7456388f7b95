package main

import (
	"encoding/json"
	"fmt"

	"github.com/fhirstream/fhirstream/internal/status"
	"github.com/fhirstream/fhirstream/schemas"
	"github.com/spf13/cobra"
)

func newStatusCmd() *cobra.Command {
	var (
		output       string
		groups       []string
		deadLetters  bool
		transactions bool
		resolve      bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each stage's consumer group: members, lag per topic, dead letters",
		Long: `status reports, for each stage of the pipeline (validate, dedupe, omop, sink-omop,
sink-bronze), its consumer group's state and members (client id, host, partitions
assigned), its lag on every input topic (the sum over partitions and the largest
partition's), and the dead letters it has produced by error class, counted from
<prefix>.dlq.

Lag is in offsets: the log end offset minus the group's committed offset, or minus the
log start offset for a partition the group has never committed (a stage starts there).
On a topic written in transactions, such a partition's lag also counts commit markers.
A group that does not exist (the stage never ran, or was deleted) shows state "none".

It also lists the open transactions on the pipeline's topics and on the stage groups'
offsets partitions, and says which are hanging: open on the partition while the
transaction coordinator has no transaction that will end them (a lost commit marker).
A hanging transaction stops the stages reading that partition without an error;
--resolve-hanging ends them with a marker written to the partition, as
kafka-transactions.sh abort does: a commit marker when the coordinator recorded that
the transaction committed, otherwise an abort marker.`,
		Example: `  fhirstream status --brokers kafka:9092
  fhirstream status --stage-group validate=site-a-validate --output json
  fhirstream status --resolve-hanging`,
		Args: cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringSliceVar(&groups, "stage-group", nil, "STAGE=GROUP: the consumer group of a stage run with --group (repeatable)")
	f.BoolVar(&deadLetters, "dead-letters", true, "count dead letters (reads the whole dead-letter topic)")
	f.BoolVar(&transactions, "transactions", true, "list open transactions and say which are hanging")
	f.BoolVar(&resolve, "resolve-hanging", false, "end hanging transactions as their coordinator decided, or by abort when unknown (needs ClusterAction)")
	var topo schemas.TopologyOptions
	deidentifyFlag(f, &topo.Deidentify)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if output != "table" && output != "json" {
			return fmt.Errorf("--output %q: want table or json", output)
		}
		overrides, err := status.ParseGroupOverrides(groups)
		if err != nil {
			return err
		}
		rep, err := status.Collect(cmd.Context(), *kc, status.Options{Groups: overrides, DeadLetters: deadLetters,
			Transactions: transactions || resolve, ResolveHanging: resolve, Topology: topo})
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if output == "json" {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		rep.WriteTable(w)
		return nil
	}
	return cmd
}
