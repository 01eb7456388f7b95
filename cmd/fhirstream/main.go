// Command fhirstream is the single binary of the project: it fetches FHIR Bulk Data
// exports into Kafka, runs the processing stages, inspects the dead-letter topic and
// runs the embedded demo. Each subcommand lives in its own file and registers itself
// with addCommand from an init function, so the list of files is the list of commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:   "fhirstream",
	Short: "Stream FHIR Bulk Data exports through Kafka into an OMOP CDM v5.4 Parquet lake",
	Long: `fhirstream turns FHIR Bulk Data exports into an analytics lake.

A fetcher authenticates to an EHR with SMART Backend Services, runs a Bulk Data
$export and publishes every resource to a per-type Kafka topic. Independent consumer
groups validate, dedupe, map to OMOP CDM v5.4 and write Parquet partitions; failures go
to a dead-letter topic that 'fhirstream dlq' can inspect and replay.

Every flag can also be set by a FHIRSTREAM_<FLAG> environment variable or in a YAML
config file (--config); 'fhirstream config --help' explains, 'fhirstream config print'
shows the values in effect. Precedence: flag > environment > file > default.

Start with 'fhirstream demo': everything in one process on an embedded Kafka.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// addCommand registers a subcommand; called from the init function of each command's file.
func addCommand(c *cobra.Command) { rootCmd.AddCommand(c) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd, err := rootCmd.ExecuteContextC(ctx); err != nil {
		if kc := kafkaConfigs[cmd]; kc != nil {
			err = explainKafka(cmd, kc, err)
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "fhirstream: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "fhirstream: %v\n", err)
		os.Exit(1)
	}
}
