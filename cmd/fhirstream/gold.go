package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

func newGoldCmd() *cobra.Command {
	g := &cobra.Command{
		Use:   "gold",
		Short: "The OHDSI-ready CDM of the lake (the gold namespace): refresh it",
		Long: `The gold namespace (default cdm) is the OMOP CDM v5.4 that OHDSI's tools read as one
schema: every clinical table of omop.* with its links resolved, observation_period,
cdm_source, condition_era, drug_era and, once loaded, the vocabulary tables. It is a
consistent snapshot as of its last refresh; omop.* stays the streaming current state.
docs/omop-mapping.md says how each table is derived, docs/lakehouse.md how Achilles,
the Data Quality Dashboard and ATLAS point at it.`,
	}
	g.AddCommand(newGoldRefreshCmd())
	return g
}

type goldRefreshOptions struct {
	catalog   *lakehouse.Config
	opts      goldlake.Options
	release   string
	namespace string
}

func newGoldRefreshCmd() *cobra.Command {
	o := &goldRefreshOptions{}
	cmd := &cobra.Command{
		Use:   "refresh",
		Short: "Recompute the gold CDM from the omop tables of the lake",
		Long: `refresh reads the current state of omop.* (each table at its current snapshot, the
sinks' deletes applied), resolves links (NPI references to providers, devices dated by
their procedures), derives observation_period, condition_era, drug_era (needs a
vocabulary) and cdm_source, and replaces every table of the gold namespace, each in one
Iceberg snapshot whose summary names the refresh and the omop snapshots it read
(fhirstream.gold.source-snapshots): time travel to them reproduces its input.

All data files are written before the first table is committed, and cdm_source is
committed last. Nothing changed since the last refresh (same omop snapshots, same
vocabulary): nothing is written (--force refreshes anyway).

--vocab DIR names the Athena download the mapper used: drug_era's ingredients and
cdm_source's vocabulary_version come from it, and it is loaded into the namespace
(as 'fhirstream vocab load' does) unless that release is there already. Without --vocab
the namespace's vocabulary tables are used when present; without any vocabulary,
drug_era is written empty and the report says so.

A table that cannot be built is reported (NOT BUILT, with the reason); the command
fails only when the refresh itself fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGoldRefresh(cmd, o) },
	}
	o.catalog = lakeFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.opts.VocabularyDir, "vocab", "", "directory of an OHDSI Athena vocabulary release (optional) (env FHIRSTREAM_VOCAB)")
	f.StringVar(&o.namespace, "namespace", goldlake.DefaultNamespace, "namespace of the gold CDM, under --catalog-namespace")
	f.StringVar(&o.opts.Source.Name, "source-name", "", "cdm_source.cdm_source_name: the source's name (default \"FHIR Bulk Data export\")")
	f.StringVar(&o.opts.Source.Abbreviation, "source-abbreviation", "", "cdm_source.cdm_source_abbreviation, at most 25 characters (default \"FHIR\")")
	f.StringVar(&o.opts.Source.Holder, "cdm-holder", "", "cdm_source.cdm_holder: who holds the CDM (default \"fhirstream\")")
	f.StringVar(&o.opts.Source.Description, "source-description", "", "cdm_source.source_description")
	f.StringVar(&o.opts.Source.DocumentationReference, "source-documentation-reference", "", "cdm_source.source_documentation_reference, e.g. the FHIR server's URL")
	f.StringVar(&o.release, "source-release-date", "", "cdm_source.source_release_date: the export's transactionTime, RFC 3339 or YYYY-MM-DD (default: when the newest omop snapshot read was committed)")
	f.BoolVar(&o.opts.Force, "force", false, "refresh even when nothing changed since the last refresh")
	return cmd
}

func runGoldRefresh(cmd *cobra.Command, o *goldRefreshOptions) error {
	ctx := cmd.Context()
	if o.release != "" {
		t, err := parseReleaseDate(o.release)
		if err != nil {
			return err
		}
		o.opts.Source.ReleaseDate = t
	}
	o.opts.Namespace = o.namespace
	o.opts.Source.ETLVersion = version
	lk, closeLake, err := lakehouse.OpenExistingLake(ctx, *o.catalog)
	if err != nil {
		return err
	}
	defer closeLake()
	rep, err := goldlake.Refresh(ctx, lk, o.opts)
	if err != nil {
		return fmt.Errorf("gold refresh FAILED: %w", err)
	}
	rep.Write(cmd.OutOrStdout())
	return nil
}

// parseReleaseDate reads an RFC 3339 instant or a date.
func parseReleaseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--source-release-date %q: want RFC 3339 (2024-05-01T12:00:00Z) or YYYY-MM-DD", s)
	}
	return t, nil
}
