package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

func newVocabCmd() *cobra.Command {
	v := &cobra.Command{
		Use:   "vocab",
		Short: "The OMOP vocabulary tables of the lake: load an Athena download",
	}
	v.AddCommand(newVocabLoadCmd())
	return v
}

func newVocabLoadCmd() *cobra.Command {
	var dir, namespace string
	var catalog *lakehouse.Config
	cmd := &cobra.Command{
		Use:   "load --vocab DIR",
		Short: "Load the nine tables of an OHDSI Athena download into the gold namespace",
		Long: `load writes CONCEPT, VOCABULARY, DOMAIN, CONCEPT_CLASS, CONCEPT_RELATIONSHIP,
RELATIONSHIP, CONCEPT_SYNONYM, CONCEPT_ANCESTOR and DRUG_STRENGTH of the Athena download
in --vocab (tab-separated, as Athena ships them) as the Iceberg tables <namespace>.concept,
..., typed per the OHDSI CDM v5.4 DDL, beside the gold CDM, so ATLAS and HADES find them
in the same schema. Each file is streamed; each table is replaced in one snapshot that
records the release (fhirstream.vocabulary.version). It prints rows and timing per table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--vocab DIR is required: the directory of an Athena download")
			}
			ctx := cmd.Context()
			lk, closeLake, err := lakehouse.OpenExistingLake(ctx, *catalog)
			if err != nil {
				return err
			}
			defer closeLake()
			load, err := goldlake.LoadVocabulary(ctx, lk, dir, goldlake.VocabularyOptions{Namespace: namespace})
			if load != nil && len(load.Tables) > 0 {
				load.Write(cmd.OutOrStdout())
			}
			if err != nil {
				return fmt.Errorf("vocab load FAILED: %w", err)
			}
			return nil
		},
	}
	catalog = lakeFlags(cmd)
	// Required here, but described as every command's --vocab: one "vocab" key of the
	// config file serves the mapper, the demo, gold refresh and this load.
	cmd.Flags().StringVar(&dir, "vocab", "", "directory of an OHDSI Athena vocabulary release (optional) (env FHIRSTREAM_VOCAB)")
	cmd.Flags().StringVar(&namespace, "namespace", goldlake.DefaultNamespace, "namespace of the gold CDM, under --catalog-namespace")
	return cmd
}
