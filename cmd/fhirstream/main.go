// Command fhirstream is the single binary of the project: it fetches FHIR Bulk Data
// exports into Kafka, runs the processing stages, inspects the dead-letter topic and
// runs the embedded demo. Each subcommand lives in its own file, made by a constructor
// that newRootCmd calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fhirstream/fhirstream/internal/cliconfig"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix prefixes the environment variables that back flags: --brokers reads
// FHIRSTREAM_BROKERS when the flag is not given on the command line.
const envPrefix = "FHIRSTREAM_"

// configOptions is how every command is configured (internal/cliconfig).
var configOptions = cliconfig.Options{
	EnvPrefix:        envPrefix,
	SecretAnnotation: kafkaclient.SecretFlagAnnotation,
	SharedFlags: func(fs *pflag.FlagSet) {
		kc := kafkaclient.Defaults()
		kc.BindFlags(fs)
	},
	Example: `  brokers: [kafka-0:9092, kafka-1:9092]
  sasl-mechanism: SCRAM-SHA-512
  consume:
    max-poll-records: 2000
    validate:
      relax: [bad-coding]
`,
}

// newRootCmd builds the command tree: the root and every command, each made by the
// constructor in its own file, so the list of files is the list of commands.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "fhirstream",
		Short: "Stream FHIR Bulk Data exports through Kafka into an Iceberg lakehouse with the OMOP CDM v5.4",
		Long: `fhirstream turns FHIR Bulk Data exports into an analytics lake.

A fetcher authenticates to an EHR with SMART Backend Services, runs a Bulk Data
$export and publishes every resource to a per-type Kafka topic. Independent consumer
groups validate, dedupe, optionally de-identify, map to OMOP CDM v5.4 and keep Apache
Iceberg tables current (bronze, silver FHIR, the CDM); failures go to a dead-letter
topic that 'fhirstream dlq' can inspect and replay.

Every flag can also be set by a FHIRSTREAM_<FLAG> environment variable or in a YAML
config file (--config); 'fhirstream config --help' explains, 'fhirstream config print'
shows the values in effect. Precedence: flag > environment > file > default.

Start with 'fhirstream demo': everything in one process on an embedded Kafka.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&logConfig.Format, "log-format", logConfig.Format, "log format: auto (text on a terminal, JSON otherwise), text or json (env FHIRSTREAM_LOG_FORMAT)")
	pf.StringVar(&logConfig.Level, "log-level", logConfig.Level, "log level: debug, info, warn or error (env FHIRSTREAM_LOG_LEVEL)")
	cliconfig.Install(root, configOptions, setupProcess)
	root.AddCommand(
		newDemoCmd(), newFetchCmd(), newServeEHRCmd(), newKeysCmd(), newConsumeCmd(), newRunCmd(),
		newDLQCmd(), newStatusCmd(), newTopologyCmd(), newACLsCmd(), newTopicsCmd(), newLakeCmd(), newGoldCmd(), newVocabCmd(),
		newBenchCmd(), newSynthCmd(), newDevBrokerCmd(), newVersionCmd(),
		cliconfig.NewCommand(newRootCmd, configOptions),
	)
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd, err := newRootCmd().ExecuteContextC(ctx); err != nil {
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
