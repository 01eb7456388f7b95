package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/synth"
)

func init() {
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

It prints the resources per type and a one-line summary with the throughput.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Checked here rather than with MarkFlagRequired, which runs before
			// FHIRSTREAM_OUT is applied.
			if out == "" {
				return fmt.Errorf("synth: --out is required")
			}
			if cfg.Patients < 0 {
				return fmt.Errorf("synth: --patients must not be negative")
			}
			start := time.Now()
			counts, err := synth.WriteDir(cmd.Context(), cfg, out)
			if err != nil {
				return err
			}
			secs := time.Since(start).Seconds()
			w := cmd.OutOrStdout()
			fmt.Fprint(w, counts)
			fmt.Fprintf(w, "synth: %d patients, %d resources, %.1f MB NDJSON (%.1f MB on disk), %.2f s, %.0f resources/s, into %s\n",
				cfg.Patients, counts.Total(), float64(counts.TotalBytes())/1e6, float64(diskBytes(out, counts, cfg.Gzip))/1e6,
				secs, float64(counts.Total())/secs, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Patients, "patients", 100, "number of patients (env FHIRSTREAM_PATIENTS)")
	f.StringVar(&out, "out", "", "output directory, created if missing; earlier files of the same types are replaced (required; env FHIRSTREAM_OUT)")
	f.Uint64Var(&cfg.Seed, "seed", 1, "random seed: the same seed and --patients give byte-identical output (env FHIRSTREAM_SEED)")
	f.BoolVar(&cfg.Gzip, "gzip", false, "write gzip-compressed Type.ndjson.gz files (env FHIRSTREAM_GZIP)")
	addCommand(cmd)
}

// diskBytes is the size of the files WriteDir wrote; with --gzip, the compressed size.
func diskBytes(dir string, counts synth.Counts, gz bool) int64 {
	var n int64
	for _, t := range counts.Types() {
		if fi, err := os.Stat(filepath.Join(dir, synth.FileName(t, gz))); err == nil {
			n += fi.Size()
		}
	}
	return n
}
