package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

func newRunCmd() *cobra.Command {
	var vocabDir string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run every stage (validate, dedupe, omop, the lake sinks) in one process against a Kafka cluster",
		Long: `run starts every processing stage in one process, for small sites: validate, dedupe,
omop, sink-bronze, sink-silver and sink-omop (writing the lake's Iceberg tables), each still
its own consumer group, so you can later move
any of them to its own process ('fhirstream consume <stage>') without losing their place.
Fetch exports into the same cluster with 'fhirstream fetch'. Stops on SIGTERM or Ctrl-C
after the sinks have flushed.`,
		Args: cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	o := metricsFlag(cmd, defaultMetricsAddr("run"))
	lake := lakeFlags(cmd)
	cmd.Flags().StringVar(&vocabDir, "vocab", "", "directory of an OHDSI Athena vocabulary release (optional) (env FHIRSTREAM_VOCAB)")
	var deidentify bool
	var d deidFlags
	deidentifyFlag(cmd.Flags(), &deidentify)
	bindDeidFlags(cmd.Flags(), &d, "safe-harbor")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		var dc *pipeline.DeidConfig
		if deidentify {
			rules, keys, err := d.load()
			if err != nil {
				return err
			}
			if _, err := deid.New(rules, keys); err != nil {
				return err
			}
			dc = &pipeline.DeidConfig{Rules: rules, Keys: keys}
		}
		var v *vocab.Vocabulary
		if vocabDir != "" {
			var err error
			if v, _, err = vocab.Load(vocabDir); err != nil {
				return fmt.Errorf("--vocab: %w", err)
			}
		}
		if _, err := o.start(ctx); err != nil {
			return err
		}
		p, err := pipeline.Start(ctx, pipeline.Config{Kafka: *kc, Lake: *lake, Vocab: v, Deid: dc, Logger: logger, Ready: o.ready})
		if err != nil {
			return err
		}
		logger.Info("all stages running", "groups", p.Groups(), "catalog", lake.Kind, "out", lake.Out)
		<-p.Done() // Ctrl-C, SIGTERM or a stage failing
		return p.Stop()
	}
	return cmd
}
