package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/synth"
)

func newSynthCmd() *cobra.Command {
	var (
		cfg synth.Config
		out string
	)
	cmd := &cobra.Command{
		Use:   "synth --patients N --out DIR",
		Short: "Generate a synthetic FHIR R4 Bulk Data export (one NDJSON file per type)",
		Long: `synth writes a realistic, deterministic FHIR R4 Bulk Data export: Patient,
Encounter, Condition, Observation, DiagnosticReport, MedicationRequest, Procedure,
Immunization, AllergyIntolerance and the Practitioner, Organization and Location they
reference, one Type.ndjson (or Type.ndjson.gz) file per type. The same --seed and
--patients always produce the same bytes; every reference resolves within the output.

With --bad N it mixes N deliberately bad lines into the files, spread between patients:
lines the pipeline must dead-letter (malformed JSON, a resource in the wrong file, a
missing or malformed id, an impossible dateTime, a malformed reference, a Coding without
system, a missing required element, a code outside its value set, resources OMOP cannot
map, and with --long-line-bytes an over-long line). They are listed with the stage and
class that must reject each, and are not counted as resources.

It prints the resources per type and a one-line summary with the throughput.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Checked here rather than with MarkFlagRequired, which runs before
			// FHIRSTREAM_OUT is applied.
			if out == "" {
				return fmt.Errorf("synth: --out is required")
			}
			if cfg.Patients < 0 || cfg.Bad < 0 || cfg.LongLineBytes < 0 {
				return fmt.Errorf("synth: --patients, --bad and --long-line-bytes must not be negative")
			}
			start := time.Now()
			counts, err := synth.WriteDir(cmd.Context(), cfg, out)
			if err != nil {
				return err
			}
			synth.WriteReport(cmd.OutOrStdout(), cfg, out, counts, time.Since(start))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Patients, "patients", 100, "number of patients (env FHIRSTREAM_PATIENTS)")
	f.StringVar(&out, "out", "", "output directory, created if missing; earlier files of the same types are replaced (required; env FHIRSTREAM_OUT)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "random seed: the same seed and --patients give byte-identical output (env FHIRSTREAM_SEED)")
	f.BoolVar(&cfg.Gzip, "gzip", false, "write gzip-compressed Type.ndjson.gz files (env FHIRSTREAM_GZIP)")
	f.IntVar(&cfg.Bad, "bad", 0, "mix this many deliberately bad lines into the files (env FHIRSTREAM_BAD)")
	f.IntVar(&cfg.LongLineBytes, "long-line-bytes", 0, "with --bad, one class of bad line is a line this long, for a fetcher whose --max-line-bytes is lower (env FHIRSTREAM_LONG_LINE_BYTES)")
	return cmd
}
