package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// newSinkCmds are the sink commands: consume sink-omop, sink-silver and sink-bronze.
func newSinkCmds() []*cobra.Command {
	return []*cobra.Command{
		newSinkCmd(sink.LayerOMOP, "omop.<table> (Avro rows)", "omop.<table>: the current state of each OMOP CDM table (upserts and retractions applied)"),
		newSinkCmd(sink.LayerSilver, "<prefix>.unique.<Type> (FHIR JSON)", "fhir.<type>: the current version of each resource (upserts and deletions applied)"),
		newSinkCmd(sink.LayerBronze, "<prefix>.unique.<Type> (FHIR JSON)", "bronze.<type>: every record fetched, appended"),
	}
}

// lakeFlags binds the flags that name the lake's Iceberg catalog.
func lakeFlags(cmd *cobra.Command) *lakehouse.Config {
	c := &lakehouse.Config{}
	c.BindFlags(cmd.Flags())
	return c
}

func newSinkCmd(layer, input, output string) *cobra.Command {
	cfg := sink.Config{Layer: layer}
	cmd := &cobra.Command{
		Use:   sink.StageName(layer),
		Short: fmt.Sprintf("Consume %s into the Iceberg tables %s", input, output),
		Long: fmt.Sprintf(`Consume %s as a consumer group and commit it to the lake's Iceberg tables
%s.

Exactly once: each batch becomes one snapshot per table, whose summary records the Kafka
offsets the table has absorbed; a sink (re)starting a partition reads that offset from the
table, not from the group. A commit is refused unless the table's offset of every
partition in the batch is still the one this member started from, so two members can never
both commit the same records. The group's offsets are committed after each batch for lag
monitoring. Kill it at any point and restart: every input record is in the lake once.
Run more copies with the same --group to scale out by partitions.

The embedded catalog (default) keeps its SQLite database and warehouse under --out and
needs no server; several sink processes may share it. --catalog rest --catalog-uri URL
uses an Iceberg REST catalog; its OAuth2 client credential or token come from a file or
the environment (%s, %s), never from a flag value.`, input, output, lakehouse.EnvCredential, lakehouse.EnvToken),
		Args: cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	o := metricsFlag(cmd, defaultMetricsAddr(sink.StageName(layer)))
	lake := lakeFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&cfg.Group, "group", "", `consumer group (default "fhirstream-sink-`+layer+`", under a --topic-prefix other than fhir "<prefix>-fhirstream-sink-`+layer+`"); the tables record their offsets under it`)
	f.StringVar(&cfg.InstanceID, "instance-id", "", "static group membership id of this copy: a restart takes its partitions back at once")
	f.IntVar(&cfg.FlushRows, "flush-rows", sink.DefaultFlushRows, "end a batch after this many rows")
	f.Int64Var(&cfg.FlushBytes, "flush-bytes", sink.DefaultFlushBytes, "end a batch once it holds this many bytes of record values and row values (rows wait in memory until the commit)")
	f.DurationVar(&cfg.FlushInterval, "flush-interval", sink.DefaultFlushInterval, "end a batch this long after its first record: one snapshot per table and interval at most (at most 30s)")
	f.DurationVar(&cfg.FlushIdle, "flush-idle", sink.DefaultFlushIdle, "end a batch once no record has arrived for this long: an export's last rows reach the lake this soon after it, not at the interval")
	f.IntVar(&cfg.CommitParallelism, "commit-parallelism", sink.DefaultCommitParallelism, "tables committed at once")
	f.DurationVar(&cfg.SessionTimeout, "session-timeout", 0, "how long the group waits for a silent member before handing its partitions to others (0: 45s)")
	if layer == sink.LayerSilver {
		deidentifyFlag(f, &cfg.Deidentify)
	}
	if layer != sink.LayerBronze {
		f.StringVar(&cfg.UpsertDeletes, "upsert-deletes", sink.DeletesKnown, "when a replacing record deletes its key's earlier rows: known (the record says dedupe saw the key before; initial loads write no delete files) or always (a lake whose dedupe state was reset)")
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		cfg.Logger = logger
		cfg.Catalog = *lake
		s, err := sink.New(ctx, *kc, cfg)
		if err != nil {
			return err
		}
		if _, err := o.start(ctx); err != nil {
			return err
		}
		err = s.Run(ctx)
		st := s.Stats()
		logger.Info("sink stopped", "layer", layer, "batches", st.Batches, "commits", st.Commits, "files", st.FilesWritten,
			"rows", st.TotalRows(), "dead_letters", st.DeadLetters, "restarts", st.Restarts)
		return err
	}
	return cmd
}
