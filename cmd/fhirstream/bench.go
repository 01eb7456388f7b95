package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/bench"
	"github.com/fhirstream/fhirstream/internal/demo"
	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/obs"
)

// benchFlags are bench's flags beyond bench.Options.
type benchFlags struct {
	output   string
	stageEnv []string
}

func newBenchCmd() *cobra.Command {
	o := &bench.Options{}
	var a benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the whole pipeline end to end: generated patients, EHR simulator, fetch, every stage",
		Long: `bench generates --patients patients, serves them with the EHR simulator (SMART auth on
unless --auth=false), fetches the export into Kafka and runs every stage, on a fresh topic
prefix and fresh consumer groups, until all stages have drained. It then prints resources
per second end to end (export kickoff to the last stage's last commit), each stage's
records in, active time, records per second and MB/s, peak memory and CPU use, as a table
or as JSON. Topics and groups are deleted afterwards unless --keep.

By default the fetcher and every stage run in this process. With --processes each runs as
its own process of this binary ('fhirstream fetch', 'fhirstream consume <stage>'), as a
deployment runs them, and the report gives each process's CPU during the run, its CPU per
resource and its peak resident memory; --process-env and --stage-env set their
environment (GOGC, GOMEMLIMIT).

Without --brokers (or FHIRSTREAM_BROKERS) it runs on an embedded kfake broker, which
measures fhirstream alone; a real broker gives the figures that matter.

A stage is active from the moment its input first became readable (its upstream's first
committed output; the kickoff for fetch) until its last input was committed. Records per
second are its committed input records over that time; MB/s its input key and value
bytes over it. With --cpuprofile-dir (in-process), a CPU profile of the run is written
whose samples carry the label stage=<name> (fetch, ehr, validate, dedupe, omop,
sink-bronze, sink-silver, sink-omop, broker for kfake, bench): 'go tool pprof -tagfocus
stage=omop DIR/cpu.pprof' shows one stage; the report adds CPU seconds and top functions
per stage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("--output %q: want table or json", a.output)
			}
			if err := a.apply(o); err != nil {
				return err
			}
			rep, err := bench.Run(cmd.Context(), *o)
			if rep != nil {
				if perr := printReport(cmd.OutOrStdout(), a.output, rep); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	o.Kafka = kafkaclient.Defaults()
	o.Kafka.Brokers = nil // none given: the embedded broker
	o.Kafka.BindFlags(cmd.Flags())
	f := cmd.Flags()
	f.IntVar(&o.Patients, "patients", 1000, "patients to generate")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the generated data")
	f.Int32Var(&o.Partitions, "partitions", 6, "partitions of the topics the run creates")
	f.StringVar(&a.output, "output", "table", "report format: table or json")
	f.StringVar(&o.CPUProfileDir, "cpuprofile-dir", "", "write a CPU profile of the run, labelled per stage, to DIR/cpu.pprof (and DIR/cpu-<stage>.pprof), and a heap profile near the peak to DIR/heap-peak.pprof (in-process only)")
	f.BoolVar(&o.Keep, "keep", false, "keep the run's topics, consumer groups and lake")
	f.BoolVar(&o.Auth, "auth", true, "SMART Backend Services auth between fetcher and EHR simulator")
	f.IntVar(&o.BrokerPID, "broker-pid", 0, "process id of the Kafka broker on this machine, to report its CPU time during the run")
	f.DurationVar(&o.SinkFlushInterval, "sink-flush-interval", 0, "lake sinks' flush interval, the time between a table's snapshots (0: the sink default, 5s)")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Minute, "give up after this long")
	f.BoolVar(&o.Processes, "processes", false, "run the fetcher and every stage as its own process of this binary, reporting each one's CPU and peak memory")
	f.StringArrayVar(&o.ProcessEnv, "process-env", nil, "with --processes: KEY=VALUE in every process's environment, e.g. GOMEMLIMIT=250MiB (repeatable)")
	f.StringArrayVar(&a.stageEnv, "stage-env", nil, "with --processes: STAGE:KEY=VALUE in one process's environment, e.g. sink-bronze:GOGC=50 (fetch for the fetcher; repeatable)")
	return cmd
}

// apply fills o from the flags that need reading, and from the process itself.
func (a *benchFlags) apply(o *bench.Options) error {
	o.Logger = logger
	if obs.IsTerminal(os.Stderr) {
		o.Progress, o.ProgressTTY = os.Stderr, true
	}
	o.ClientKey = func(ehr *ehrsim.Server, dir string) (string, string, error) {
		key, err := demo.ClientKey(ehr, dir)
		return demo.ClientID, key, err
	}
	var err error
	if o.StageEnv, err = bench.ParseStageEnv(a.stageEnv); err != nil {
		return err
	}
	if o.Processes {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--processes: find this binary: %w", err)
		}
		o.Executable = exe
	}
	return nil
}

// printReport writes a report as JSON, or as text with its own writer.
func printReport(w io.Writer, format string, r *bench.Report) error {
	if format == "json" {
		return writeJSON(w, r)
	}
	return r.WriteText(w)
}
