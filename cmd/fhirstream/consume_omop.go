package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

func newConsumeOMOPCmd() *cobra.Command {
	var vocabDir string
	cmd := &cobra.Command{
		Use:   "omop",
		Short: "Run the OMOP mapping stage: fhir.unique.* → omop.<table> (Avro)",
		Long: `omop maps every resource on <prefix>.unique.<Type> to OMOP CDM v5.4 rows and writes
them, Avro single-object encoded, to omop.<table>; resources that cannot map go to the
dead-letter topic with the reason. With --vocab it loads an OHDSI Athena release
(CONCEPT.csv, CONCEPT_RELATIONSHIP.csv, SOURCE_TO_CONCEPT_MAP.csv) and routes rows by the
standard concept's domain; without, it uses the built-in fixed concepts and writes
concept_id 0 for other codes, counting them (fhirstream_omop_unmapped_codes_total).
The mapping is documented in docs/omop-mapping.md. On exit it prints a summary and the
reconciliation of the records it read in committed batches, per resource type (read =
mapped + deleted + dropped by a rule + dead-lettered), and fails when a type does not
balance.`,
		Args: cobra.NoArgs,
	}
	f := bindStageFlags(cmd, defaultMetricsAddr(schemas.NodeOMOP))
	kc := f.kc
	cmd.Flags().StringVar(&vocabDir, "vocab", "", "directory of an OHDSI Athena vocabulary release (optional) (env FHIRSTREAM_VOCAB)")
	var deidentify bool
	deidentifyFlag(cmd.Flags(), &deidentify)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		topics, err := schemas.NewTopics(kc.TopicPrefix)
		if err != nil {
			return err
		}
		var v *vocab.Vocabulary
		if vocabDir != "" {
			var st vocab.LoadStats
			v, st, err = vocab.Load(vocabDir)
			if err != nil {
				return fmt.Errorf("--vocab: %w", err)
			}
			logger.Info("vocabulary loaded", "dir", vocabDir, "concepts", st.Concepts, "maps_to", st.MapsTo,
				"maps_to_value", st.MapsToValue, "source_to_concept", st.SourceToConcept,
				"duration", st.Duration.String(), "memory_mib", st.MemoryBytes>>20)
		}
		p, err := omop.New(omop.Config{Topics: topics, Vocab: v})
		if err != nil {
			return err
		}
		runErr := f.run(cmd, omop.Definition(p, topics.Topology(schemas.TopologyOptions{Deidentify: deidentify})))
		if err := omop.WriteStageReport(cmd.OutOrStdout(), p.Summary(), obs.Registry, topics); err != nil {
			return errors.Join(runErr, err)
		}
		return runErr
	}
	return cmd
}
