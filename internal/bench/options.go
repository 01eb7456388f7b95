package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// Options say what to run and how.
type Options struct {
	// Patients to generate (synth) with Seed.
	Patients int
	Seed     uint64
	// Partitions of the topics the run creates.
	Partitions int32
	// Kafka is the cluster; without brokers the run starts an embedded kfake broker,
	// which measures fhirstream alone. Its TopicPrefix is the base of the run's prefix
	// (<prefix>-bench-<time>-<rand>).
	Kafka kafkaclient.Config
	// Auth turns on SMART Backend Services between the fetcher and the EHR simulator;
	// ClientKey then registers a client with the simulator and writes its private key
	// into dir.
	Auth      bool
	ClientKey func(ehr *ehrsim.Server, dir string) (clientID, keyFile string, err error)
	// SinkFlushInterval is the lake sinks' flush interval; zero keeps the sinks' default.
	SinkFlushInterval time.Duration
	// BrokerPID is the broker's process id on this machine, to report its CPU.
	BrokerPID int
	// CPUProfileDir, in-process only, receives a CPU profile of the run labelled per
	// stage (cpu.pprof, cpu-<stage>.pprof) and a heap profile near the peak.
	CPUProfileDir string
	// Keep keeps the run's topics, consumer groups and lake.
	Keep bool
	// Timeout bounds the whole run; zero means 30 minutes.
	Timeout time.Duration

	// Processes runs the fetcher and every stage as its own process of Executable (the
	// fhirstream binary), as a deployment runs them.
	Processes  bool
	Executable string
	// ProcessEnv is added to every stage process's environment, e.g. GOGC=200 or
	// GOMEMLIMIT=250MiB; StageEnv to one stage's (by stage name, "fetch" for the
	// fetcher), after ProcessEnv.
	ProcessEnv []string
	StageEnv   map[string][]string

	// Logger receives the run's log; Progress, when set, the fetcher's progress line
	// (in-process mode; ProgressTTY redraws it in place).
	Logger      *slog.Logger
	Progress    io.Writer
	ProgressTTY bool
}

func (o *Options) check() error {
	switch {
	case o.Patients <= 0:
		return fmt.Errorf("--patients %d: give at least 1", o.Patients)
	case o.Partitions <= 0:
		return fmt.Errorf("--partitions %d: give at least 1", o.Partitions)
	case o.Auth && o.ClientKey == nil:
		return errors.New("SMART auth needs a client key: no Options.ClientKey")
	case o.Processes && o.Executable == "":
		return errors.New("--processes needs the fhirstream binary: no Options.Executable")
	case o.Processes && o.CPUProfileDir != "":
		return errors.New("--cpuprofile-dir profiles the in-process run; with --processes each process is measured by its CPU time instead")
	}
	for _, kv := range o.ProcessEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--process-env %q: want KEY=VALUE", kv)
		}
	}
	for name := range o.StageEnv {
		if !o.Processes {
			return fmt.Errorf("environment for stage %s: only with --processes", name)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ParseStageEnv reads --stage-env values, STAGE:KEY=VALUE each, into Options.StageEnv.
func ParseStageEnv(specs []string) (map[string][]string, error) {
	var env map[string][]string
	for _, s := range specs {
		stage, kv, ok := strings.Cut(s, ":")
		if k, _, kvOK := strings.Cut(kv, "="); !ok || !kvOK || stage == "" || k == "" {
			return nil, fmt.Errorf("--stage-env %q: want STAGE:KEY=VALUE", s)
		}
		if env == nil {
			env = map[string][]string{}
		}
		env[stage] = append(env[stage], kv)
	}
	return env, nil
}
