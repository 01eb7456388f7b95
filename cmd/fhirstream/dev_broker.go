package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fhirstream/fhirstream/internal/fakebroker"
)

func newDevBrokerCmd() *cobra.Command {
	var (
		port    int
		dataDir string
	)
	cmd := &cobra.Command{
		Use:   "dev-broker",
		Short: "Run an in-memory FAKE Kafka broker (kfake) on loopback, for local development only",
		Long: `Run franz-go's kfake, an in-process fake Kafka broker that speaks the real protocol,
on a loopback port, until interrupted.

THIS IS NOT A KAFKA BROKER FOR REAL DATA. It keeps records in memory (or in --data-dir,
best effort), has no replication, no security and is not Apache Kafka. It exists so you can
try fhirstream's commands against "--brokers 127.0.0.1:9092" without Java or Docker.
For a real single-node Apache Kafka without Docker use deploy/kafka/kafka-local.sh start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DefaultNumPartitions(6)}
			if dataDir != "" {
				opts = append(opts, kfake.DataDir(dataDir))
			}
			c, err := fakebroker.New(opts...)
			if err != nil {
				return fmt.Errorf("start fake broker on port %d: %w", port, err)
			}
			defer c.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "FAKE Kafka broker (kfake, development only) listening on %v; Ctrl-C to stop\n", c.ListenAddrs())
			<-cmd.Context().Done() // Ctrl-C or SIGTERM
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", 9092, "loopback port to listen on")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep the fake broker's data in this directory across restarts (default: memory only)")
	return cmd
}
