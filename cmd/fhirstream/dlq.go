package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fhirstream/fhirstream/consumers/dlq"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

func newDLQCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay the dead-letter topic",
		Long: `Every stage sends records it cannot process to <prefix>.dlq, unchanged, with headers
saying which stage rejected them, from which topic, partition and offset, the error
class, element path and message. 'dlq stats' and 'dlq list' count and list them (no
payloads), 'dlq show' prints their context (the payload only with --show-payload: it
is PHI), and 'dlq replay' sends them back to the topic each came from once the cause
is fixed.`,
	}
	c.AddCommand(newDLQStatsCmd(), newDLQListCmd(), newDLQShowCmd(), newDLQReplayCmd())
	return c
}

// dlqFilterFlags binds the record filter shared by the dlq subcommands.
func dlqFilterFlags(fs *pflag.FlagSet) func() (dlq.Filter, error) {
	var f dlq.Filter
	var since, until string
	fs.StringSliceVar(&f.Stages, "stage", nil, "only dead letters of these stages (validate, dedupe, omop, fetch, …)")
	fs.StringSliceVar(&f.Classes, "class", nil, "only these error classes (e.g. bad-coding, missing-required)")
	fs.StringSliceVar(&f.SourceTopics, "source-topic", nil, "only records that came from these topics")
	fs.StringSliceVar(&f.Keys, "key", nil, "only these record keys; shell patterns allowed (Observation/*)")
	fs.StringVar(&since, "since", "", "only records dead-lettered at or after this time (RFC 3339, or a duration ago like 24h)")
	fs.StringVar(&until, "until", "", "only records dead-lettered before this time (RFC 3339, or a duration ago)")
	return func() (dlq.Filter, error) {
		var err error
		if f.Since, err = dlq.ParseWhen(since); err != nil {
			return f, fmt.Errorf("--since: %w", err)
		}
		if f.Until, err = dlq.ParseWhen(until); err != nil {
			return f, fmt.Errorf("--until: %w", err)
		}
		return f, nil
	}
}

func dlqSetup(kc *kafkaclient.Config, filter func() (dlq.Filter, error)) (schemas.Topics, dlq.Filter, error) {
	t, err := schemas.NewTopics(kc.TopicPrefix)
	if err != nil {
		return t, dlq.Filter{}, err
	}
	f, err := filter()
	return t, f, err
}

func newDLQStatsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "stats", Short: "Count dead letters by stage, error class and source topic", Args: cobra.NoArgs}
	kc := kafkaFlags(cmd)
	filter := dlqFilterFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, f, err := dlqSetup(kc, filter)
		if err != nil {
			return err
		}
		c, err := dlq.Stats(cmd.Context(), *kc, t.DLQ(), f)
		if err != nil {
			return err
		}
		c.WriteTable(cmd.OutOrStdout(), t.DLQ())
		return nil
	}
	return cmd
}

func newDLQListCmd() *cobra.Command {
	var max int
	cmd := &cobra.Command{Use: "list", Short: "List dead letters, one line each (no payloads), then their counts", Args: cobra.NoArgs}
	kc := kafkaFlags(cmd)
	filter := dlqFilterFlags(cmd.Flags())
	cmd.Flags().IntVar(&max, "max", 100, "list at most this many (0: all); the counts cover every match")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, f, err := dlqSetup(kc, filter)
		if err != nil {
			return err
		}
		return dlq.List(cmd.Context(), *kc, t.DLQ(), f, max, cmd.OutOrStdout())
	}
	return cmd
}

func newDLQShowCmd() *cobra.Command {
	var o dlq.ShowOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show dead letters with their full context; the payload only with --show-payload",
		Args:  cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	filter := dlqFilterFlags(cmd.Flags())
	cmd.Flags().IntVar(&o.Max, "max", 20, "show at most this many (0: all)")
	cmd.Flags().BoolVar(&o.Payload, "show-payload", false, "also print each record's value: FHIR resources are PHI, so only where that is allowed")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, f, err := dlqSetup(kc, filter)
		if err != nil {
			return err
		}
		return dlq.Show(cmd.Context(), *kc, t.DLQ(), f, o, cmd.OutOrStdout())
	}
	return cmd
}

func newDLQReplayCmd() *cobra.Command {
	var o dlq.ReplayOptions
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Send dead letters back to the topic each came from (or --to)",
		Long: `Republish matching dead letters to their source topic (or --to) with their original key,
value, timestamp and headers, the dead-letter context stripped and the replay count
header (fhirstream.replay.count) incremented. A record replayed --max-replays times
already is parked in <prefix>.dlq.parked instead, so a record that keeps failing does
not loop. The replay is exactly once: republished records and the replay's progress (a
consumer group, by default one per filter and destination) commit together in Kafka
transactions, so an interrupted or crashed replay resumes where its last transaction
ended, without duplicates. Run one replay per group at a time (a second one fences the
first). Use --dry-run first: it prints what would be replayed and parked.`,
		Args: cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	filter := dlqFilterFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.To, "to", "", "send every record to this topic instead of its source topic")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "only count what would be replayed or parked, by source topic and class")
	cmd.Flags().Float64Var(&o.Rate, "rate", 0, "at most this many records per second (0: unlimited)")
	cmd.Flags().IntVar(&o.Max, "max", 0, "stop after this many records (0: all)")
	cmd.Flags().IntVar(&o.MaxReplays, "max-replays", dlq.DefaultMaxReplays, "park records already replayed this many times")
	cmd.Flags().StringVar(&o.Group, "group", "", "consumer group holding the replay's progress (default: derived from the filter and --to)")
	deidentifyFlag(cmd.Flags(), &o.Deidentify)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, f, err := dlqSetup(kc, filter)
		if err != nil {
			return err
		}
		o.Filter, o.Logger = f, logger
		res, err := dlq.Replay(cmd.Context(), *kc, t, o)
		res.WriteSummary(cmd.OutOrStdout(), o.DryRun)
		return err
	}
	return cmd
}
