package main

import (
	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

func newTopicsCmd() *cobra.Command {
	topics := &cobra.Command{
		Use:   "topics",
		Short: "Create or list the Kafka topics of the fhirstream contract",
	}
	topics.AddCommand(newTopicsCreateCmd(), newTopicsListCmd())
	return topics
}

func newTopicsCreateCmd() *cobra.Command {
	var (
		opts  kafkaclient.TopicOptions
		types []string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create the contract's topics (idempotent: existing topics are kept, managed configs aligned)",
		Long: `Create every topic of the contract: <prefix>.raw|valid|unique.<Type> for each resource
type, omop.<table> for each OMOP CDM table, <prefix>.dlq, and the compacted state topics.
Existing topics keep their partitions (changing them would move keys between partitions);
the configs fhirstream manages (cleanup.policy, max.message.bytes, DLQ retention) are set
where they differ. Running it twice changes nothing the second time.`,
		Args: cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	cmd.Flags().Int32Var(&opts.Partitions, "partitions", 6, "partitions per topic; the most instances a stage can use")
	cmd.Flags().Int16Var(&opts.ReplicationFactor, "replication-factor", -1, "replication factor; -1 takes the broker default")
	deidentifyFlag(cmd.Flags(), &opts.Deidentify)
	cmd.Flags().StringSliceVar(&types, "types", schemas.BulkResourceTypes, "FHIR resource types to create topics for")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		res, contract, err := kafkaclient.CreateContractTopics(cmd.Context(), *kc, types, opts)
		if err != nil {
			return err
		}
		for _, w := range res.Warnings {
			logger.Warn(w)
		}
		res.WriteSummary(cmd.OutOrStdout(), contract)
		return nil
	}
	return cmd
}

func newTopicsListCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the contract's topics with partitions and record counts",
		Args:  cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "list every topic of the cluster, not only fhirstream's")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		topics, err := kafkaclient.ListContractTopics(cmd.Context(), *kc, all)
		if err != nil {
			return err
		}
		return kafkaclient.WriteTopicRecords(cmd.OutOrStdout(), topics)
	}
	return cmd
}
