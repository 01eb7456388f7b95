package main

import (
	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/passthrough"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// newConsumeCmd is the parent of every stage and sink command, one per node of the
// topology that runs as a consumer group.
func newConsumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consume <stage>",
		Short: "Run one processing stage as a Kafka consumer group",
		Long: `Run one stage of the pipeline as a member of its consumer group. Start more processes
with the same group to scale out (up to the number of input partitions); partitions
rebalance cooperatively. Each stage reads and writes Kafka exactly once (transactions,
read_committed), dead-letters bad records to <prefix>.dlq and serves /metrics,
/healthz and /readyz on --metrics-addr. SIGTERM finishes or aborts the current batch
and leaves the group.`,
	}
	cmd.AddCommand(newConsumeValidateCmd(), newConsumeDedupeCmd(), newConsumeDeidCmd(), newConsumeOMOPCmd(),
		newConsumePassthroughCmd())
	cmd.AddCommand(newSinkCmds()...)
	return cmd
}

// stageFlags are the flags every stage command shares.
type stageFlags struct {
	kc       *kafkaclient.Config
	obs      *observability
	group    string
	maxPoll  int
	instance string
}

func bindStageFlags(cmd *cobra.Command, metricsAddr string) *stageFlags {
	f := &stageFlags{kc: kafkaFlags(cmd), obs: metricsFlag(cmd, metricsAddr)}
	cmd.Flags().StringVar(&f.group, "group", "", "consumer group (default: the stage's own, e.g. fhirstream-validate; <prefix>-fhirstream-validate under a --topic-prefix other than fhir) (env FHIRSTREAM_GROUP)")
	cmd.Flags().IntVar(&f.maxPoll, "max-poll-records", runtime.DefaultMaxPollRecords, "records per batch, i.e. per transaction (env FHIRSTREAM_MAX_POLL_RECORDS)")
	cmd.Flags().StringVar(&f.instance, "instance-id", "", "this instance's part of the transactional id (default: host name and a random suffix) (env FHIRSTREAM_INSTANCE_ID)")
	return f
}

// run serves the observability endpoints and runs def until the command's context ends.
func (f *stageFlags) run(cmd *cobra.Command, def stage.Definition) error {
	if f.group != "" {
		def = def.WithGroup(f.group)
	}
	ctx := cmd.Context()
	if _, err := f.obs.start(ctx); err != nil {
		return err
	}
	return runtime.Run(ctx, *f.kc, def, runtime.Options{Logger: logger, Ready: f.obs.ready,
		MaxPollRecords: f.maxPoll, InstanceID: f.instance})
}

func newConsumeValidateCmd() *cobra.Command {
	var relax []string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Validate FHIR R4 structure: <prefix>.raw.* → <prefix>.valid.*",
		Long: `Validate every resource on <prefix>.raw.<Type> with FHIR R4 structural rules that need no
terminology server (required elements, primitive formats, references, codings; the rule
tables are in consumers/validate/rules.go) and forward those that pass, byte for byte,
to <prefix>.valid.<Type>. Failures go to <prefix>.dlq with the element path and rule.`,
		Args: cobra.NoArgs,
	}
	f := bindStageFlags(cmd, defaultMetricsAddr(schemas.NodeValidate))
	cmd.Flags().StringSliceVar(&relax, "relax", nil, "rule classes not to enforce, e.g. bad-coding,bad-reference (env FHIRSTREAM_RELAX)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, err := schemas.NewTopics(f.kc.TopicPrefix)
		if err != nil {
			return err
		}
		return f.run(cmd, validate.Definition(t.Topology(schemas.TopologyOptions{}), validate.Options{Relax: relax}))
	}
	return cmd
}

func newConsumeDedupeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dedupe",
		Short: "Forward each resource version once: <prefix>.valid.* → <prefix>.unique.*",
		Long: `Forward a resource when it is new, newer (meta.versionId, meta.lastUpdated) or different
in content from the last version forwarded for its key; drop exact repeats and stale
versions (counted in fhirstream_dedupe_decisions_total). State is kept per partition
and restored from the compacted changelog <prefix>.state.dedupe.`,
		Args: cobra.NoArgs,
	}
	f := bindStageFlags(cmd, defaultMetricsAddr(schemas.NodeDedupe))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, err := schemas.NewTopics(f.kc.TopicPrefix)
		if err != nil {
			return err
		}
		return f.run(cmd, dedupe.Definition(t.Topology(schemas.TopologyOptions{})))
	}
	return cmd
}

func newConsumePassthroughCmd() *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "passthrough",
		Short: "Identity stage for benchmarks: <prefix>.<layer>.* → <prefix>.passthrough.*",
		Args:  cobra.NoArgs,
	}
	f := bindStageFlags(cmd, defaultMetricsAddr("passthrough"))
	cmd.Flags().StringVar(&from, "from", schemas.LayerRaw, "layer to read: raw, valid or unique")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, err := schemas.NewTopics(f.kc.TopicPrefix)
		if err != nil {
			return err
		}
		return f.run(cmd, passthrough.Definition(t, from))
	}
	return cmd
}
