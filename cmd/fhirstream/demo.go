package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/internal/demo"
	"github.com/fhirstream/fhirstream/internal/pipeline"
)

type demoOptions struct {
	patients int
	seed     uint64
	bad      int
	from     string
	vocab    string
	out      string
	timeout  time.Duration
	obs      *observability
	deid     bool
	deidCfg  deidFlags
}

func newDemoCmd() *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline in one process on an embedded Kafka and EHR, writing ./lake",
		Long: `demo runs everything in one process, with nothing to install beyond Go:

  - an embedded Kafka broker (franz-go's kfake, in memory),
  - the EHR simulator serving generated patients (or the NDJSON in --from) over the
    real Bulk Data protocol, with SMART Backend Services auth on,
  - the fetcher, authenticating with a freshly generated ES384 key,
  - every stage: validate, dedupe, omop, and the lake sinks, which commit Apache Iceberg
    tables (omop.<table>, fhir.<type>, bronze.<type>) to an embedded catalog under --out.

Generated data has --bad deliberately bad lines mixed in (malformed JSON, a resource in
the wrong file, an impossible date, a malformed reference, a Coding without system, a
patient OMOP cannot map, ...), so the dead-letter topic has something to show.

It runs one export end to end, waits until every stage has caught up, and prints a
summary: resources per type, dead letters by reason, the mapping stage's reconciliation
per type (records read = mapped + deleted + dropped by rule + dead letters), OMOP rows per
table, unmapped codes, the gold CDM its closing 'gold refresh' made (namespace cdm, what
OHDSI tools read), the Iceberg tables and snapshots written, and how to query the lake
with pyiceberg or DuckDB. With --vocab it maps codes through an Athena vocabulary release
and loads it into the gold namespace (drug_era needs it).
A lake from an earlier demo in --out is replaced (its catalog and warehouse only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	cmd.Flags().IntVar(&o.patients, "patients", 100, "patients to generate (ignored with --from)")
	cmd.Flags().Uint64Var(&o.seed, "seed", 1, "seed of the generated data")
	cmd.Flags().IntVar(&o.bad, "bad", 6, "deliberately bad lines to mix into the generated data (0: none; ignored with --from)")
	cmd.Flags().StringVar(&o.from, "from", "", "serve the NDJSON files in this directory instead of generated data")
	cmd.Flags().StringVar(&o.out, "out", "lake", "lake directory to write: <out>/catalog.db (the Iceberg catalog) and <out>/warehouse")
	cmd.Flags().StringVar(&o.vocab, "vocab", "", "directory of an OHDSI Athena vocabulary release (optional) (env FHIRSTREAM_VOCAB)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	cmd.Flags().BoolVar(&o.deid, "deid", false, "run the de-identification stage: omop and the silver lake read <prefix>.deid.<Type> (keys: --deid-keys or the environment, else fresh random ones for this run)")
	bindDeidFlags(cmd.Flags(), &o.deidCfg, "safe-harbor-dateshift")
	o.obs = metricsFlag(cmd, defaultMetricsAddr("run"))
	return cmd
}

// runDemo starts the metrics endpoint and runs the demo with the command's options.
func runDemo(ctx context.Context, w io.Writer, o *demoOptions) error {
	if _, err := o.obs.start(ctx); err != nil {
		return err
	}
	do := demo.Options{Patients: o.patients, Seed: o.seed, Bad: o.bad, From: o.from, Vocab: o.vocab, Out: o.out,
		Timeout: o.timeout, Logger: logger, Ready: o.obs.ready, Progress: os.Stderr}
	if o.deid {
		rules, keys, err := o.deidCfg.load()
		if err != nil {
			return err
		}
		if err := demo.RandomKeys(&keys); err != nil {
			return err
		}
		if _, err := deid.New(rules, keys); err != nil {
			return err
		}
		do.Deid = &pipeline.DeidConfig{Rules: rules, Keys: keys}
	}
	return demo.Run(ctx, w, do)
}
