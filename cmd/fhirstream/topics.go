package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

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
		t, err := schemas.NewTopics(kc.TopicPrefix)
		if err != nil {
			return err
		}
		opts.MaxMessageBytes = kc.MaxRecordBytes
		cl, err := kc.NewClient()
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
		defer cancel()
		specs := kafkaclient.ContractTopics(t, types, schemas.OMOPTables(), opts)
		res, err := kafkaclient.EnsureTopics(ctx, kadm.NewClient(cl), specs)
		if err != nil {
			return err
		}
		for _, w := range res.Warnings {
			logger.Warn(w)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "topics: %d created, %d configs aligned, %d already as wanted (of %d in the contract)\n",
			len(res.Created), len(res.Altered), len(res.Existing), len(specs))
		for _, n := range res.Created {
			fmt.Fprintf(cmd.OutOrStdout(), "  created %s\n", n)
		}
		for _, n := range res.Altered {
			fmt.Fprintf(cmd.OutOrStdout(), "  aligned %s\n", n)
		}
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
		t, err := schemas.NewTopics(kc.TopicPrefix)
		if err != nil {
			return err
		}
		cl, err := kc.NewClient()
		if err != nil {
			return err
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		defer cancel()
		details, err := adm.ListTopics(ctx)
		if err != nil {
			return fmt.Errorf("list topics: %w", err)
		}
		var names []string
		for name := range details {
			if all || strings.HasPrefix(name, t.Prefix+".") || strings.HasPrefix(name, t.OMOP("")) {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		starts, err := adm.ListStartOffsets(ctx, names...)
		if err != nil {
			return fmt.Errorf("list start offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, names...)
		if err != nil {
			return fmt.Errorf("list end offsets: %w", err)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tOFFSETS (records incl. transaction markers)\t")
		for _, name := range names {
			var n int64
			ends.Each(func(o kadm.ListedOffset) {
				if o.Topic == name && o.Err == nil {
					if s, ok := starts.Lookup(name, o.Partition); ok && s.Err == nil {
						n += o.Offset - s.Offset
					}
				}
			})
			fmt.Fprintf(tw, "%s\t%d\t%d\t\n", name, len(details[name].Partitions), n)
		}
		return tw.Flush()
	}
	return cmd
}
