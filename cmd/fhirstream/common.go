package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/acl"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/schemas"
)

var (
	logConfig = obs.LogConfig{Format: "auto", Level: "info"}
	// logger is set up before any command runs; commands log through it.
	logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
)

// setupProcess runs before any command: it sets up the log, then the Go memory limit.
func setupProcess(*cobra.Command) error {
	l, err := obs.NewLogger(os.Stderr, logConfig)
	if err != nil {
		return err
	}
	logger = l
	slog.SetDefault(l)
	limitMemory(memlimit.FromCgroup)
	return nil
}

// memoryLimitRatio is the share of a container's memory limit that the Go runtime's
// soft limit (GOMEMLIMIT) is set to. The rest is for what the limit counts and the Go
// runtime does not: the binary's mapped pages (50-65 MB) and the kernel's page cache
// of files the process writes.
const memoryLimitRatio = 0.9

// limitMemory sets the Go runtime's soft memory limit to memoryLimitRatio of the
// memory limit that limit reports (the cgroup's: a container's), so that the collector
// works harder near the limit instead of the kernel killing the process. An explicit
// GOMEMLIMIT wins, AUTOMEMLIMIT sets another ratio or "off", and without a limit nothing
// changes (automemlimit's rules, which docs/capacity.md gives).
func limitMemory(limit memlimit.Provider) {
	// automemlimit logs what it set, and why it set nothing (at error level: a bad
	// AUTOMEMLIMIT, an unreadable cgroup); the process runs on either way.
	_, _ = memlimit.Set(memlimit.WithProvider(limit), memlimit.WithRatio(memoryLimitRatio), memlimit.WithLogger(logger))
}

// kafkaConfigs are the Kafka configurations of the commands, so that main explains a
// failed command's connection and permission errors in the terms of its own flags.
var kafkaConfigs = map[*cobra.Command]*kafkaclient.Config{}

// explainKafka says what a failed command's Kafka error means (a wrong password, an
// untrusted CA, a missing ACL and the grant of this command that would allow it).
func explainKafka(cmd *cobra.Command, kc *kafkaclient.Config, err error) error {
	t, terr := schemas.NewTopics(kc.TopicPrefix)
	if terr != nil {
		return kc.Explain(err)
	}
	resolve, _ := cmd.Flags().GetBool("resolve-hanging")
	return acl.Explain(err, *kc, t.Topology(schemas.TopologyOptions{}), acl.CommandOf(cmd.CommandPath(), resolve))
}

// kafkaFlags binds the shared Kafka connection flags to cmd and returns the config they fill.
func kafkaFlags(cmd *cobra.Command) *kafkaclient.Config {
	c := kafkaclient.Defaults()
	c.BindFlags(cmd.Flags())
	kafkaConfigs[cmd] = &c
	return &c
}

// observability is the --metrics-addr flag of a long-running command and what it serves.
type observability struct {
	addr  string
	ready *obs.Readiness
}

// metricsPorts are the default metrics ports, one per command that may share a host with
// the others (the README runs every stage on one machine), on 127.0.0.1 so that nothing
// is exposed beyond the host unless asked: the k8s and compose manifests set
// FHIRSTREAM_METRICS_ADDR=:9464 where Prometheus scrapes. 9100 is node_exporter's.
var metricsPorts = map[string]int{
	"run":                  9190,
	schemas.NodeValidate:   9191,
	schemas.NodeDedupe:     9192,
	schemas.NodeDeid:       9193,
	schemas.NodeOMOP:       9194,
	schemas.NodeSinkBronze: 9195,
	schemas.NodeSinkSilver: 9196,
	schemas.NodeSinkOMOP:   9197,
	"passthrough":          9198,
}

// defaultMetricsAddr is the default --metrics-addr of the command or stage name.
func defaultMetricsAddr(name string) string {
	port, ok := metricsPorts[name]
	if !ok {
		panic("no default metrics port for " + name)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// metricsFlag adds --metrics-addr to a long-running command; def is its default address.
func metricsFlag(cmd *cobra.Command, def string) *observability {
	o := &observability{addr: def, ready: obs.NewReadiness()}
	cmd.Flags().StringVar(&o.addr, "metrics-addr", def, `address serving /metrics, /healthz and /readyz ("off" to disable) (env FHIRSTREAM_METRICS_ADDR)`)
	return o
}

// start serves the endpoints until ctx ends.
func (o *observability) start(ctx context.Context) (*obs.Server, error) {
	return obs.Start(ctx, o.addr, o.ready, logger)
}

// writeJSON writes v as indented JSON, the -o json of every command that has one.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
