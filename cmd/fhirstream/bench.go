package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
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
				if perr := printBench(cmd.OutOrStdout(), a.output, rep); perr != nil {
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
	for _, kv := range o.ProcessEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--process-env %q: want KEY=VALUE", kv)
		}
	}
	for _, s := range a.stageEnv {
		stage, kv, ok := strings.Cut(s, ":")
		if k, _, kvOK := strings.Cut(kv, "="); !ok || !kvOK || stage == "" || k == "" {
			return fmt.Errorf("--stage-env %q: want STAGE:KEY=VALUE", s)
		}
		if o.StageEnv == nil {
			o.StageEnv = map[string][]string{}
		}
		o.StageEnv[stage] = append(o.StageEnv[stage], kv)
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

func printBench(w io.Writer, format string, r *bench.Report) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "fhirstream bench (%s): %d patients, %d resources (%.1f MB NDJSON), broker %s, %d partitions, topic prefix %s\n",
		r.Mode, r.Patients, r.Resources, float64(r.NDJSONBytes)/1e6, r.Broker, r.Partitions, r.TopicPrefix)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %.1f GiB RAM, load %.2f %.2f %.2f before, %.2f %.2f %.2f after\n\n",
		r.Host.CPUs, r.Host.CPUModel, float64(r.Host.MemBytes)/(1<<30),
		r.Host.LoadBefore[0], r.Host.LoadBefore[1], r.Host.LoadBefore[2], r.Host.LoadAfter[0], r.Host.LoadAfter[1], r.Host.LoadAfter[2])
	fmt.Fprintf(w, "end to end (kickoff → last stage drained): %.2f s, %.0f resources/s, %.1f MB/s\n\n",
		r.EndToEndSeconds, r.ResourcesPerSecond, r.MBPerSecond)
	processes := r.Mode == bench.ModeProcesses
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := "STAGE\tIN\tOUT\tDEAD\tTXNS\tSTART s\tEND s\tACTIVE s\tREC/s\tMB IN\tMB/s\tCPU s\tREC/CPU-s\t"
	if processes {
		head += "µs/RES\tPEAK RSS MB\tGO HEAP MB\t"
	}
	fmt.Fprintln(tw, head)
	for _, s := range r.Stages {
		mbIn, mbs := "-", "-"
		if s.BytesIn >= 0 {
			mbIn, mbs = fmt.Sprintf("%.1f", float64(s.BytesIn)/1e6), fmt.Sprintf("%.1f", s.MBPerSecond)
		}
		cpu, perCPU := "-", "-"
		if r.Profile != "" || s.Process != nil {
			cpu, perCPU = fmt.Sprintf("%.2f", s.CPUSeconds), fmt.Sprintf("%.0f", s.RecordsPerCPUSec)
		}
		txns := "-"
		if s.Batches >= 0 {
			txns = fmt.Sprint(s.Batches)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%.2f\t%.2f\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t", s.Name, s.RecordsIn, s.RecordsOut, s.DeadLetters, txns,
			s.StartSeconds, s.EndSeconds, s.ActiveSeconds, s.RecordsPerSecond, mbIn, mbs, cpu, perCPU)
		if processes {
			perRes, rss, heap := "-", "-", "-"
			if p := s.Process; p != nil {
				perRes, rss = fmt.Sprintf("%.1f", p.CPUMicrosPerResource), fmt.Sprintf("%.0f", float64(p.PeakRSSBytes)/1e6)
				heap = fmt.Sprintf("%.0f", float64(p.GoHeapPeakBytes)/1e6)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t", perRes, rss, heap)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Commits) > 0 {
		var n int64
		var secs float64
		for _, c := range r.Commits {
			n, secs = n+c.Commits, secs+c.Seconds
		}
		fmt.Fprintf(w, "\nlake commits: %d table commits, %.1f s in all (files, catalog, retries; tables commit in parallel); busiest tables:\n", n, secs)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  SINK\tTABLE\tCOMMITS\tMEAN ms\tTOTAL s\t")
		for _, c := range r.Commits[:min(8, len(r.Commits))] {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%.0f\t%.2f\t\n", c.Stage, c.Table, c.Commits, 1000*c.MeanSeconds, c.Seconds)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	c := r.CPU
	fmt.Fprintf(w, "\nCPU during the run (%.1f s × %d cores = %.1f core-s): fhirstream %.1f s", c.WallSeconds, c.Cores,
		c.WallSeconds*float64(c.Cores), c.ProcessSeconds)
	if !processes {
		fmt.Fprintf(w, " (GC %.1f s)", c.GCSeconds)
	}
	if c.BrokerSeconds > 0 {
		fmt.Fprintf(w, ", broker %.1f s", c.BrokerSeconds)
	}
	if processes {
		fmt.Fprintf(w, ", bench and EHR simulator %.1f s", c.HarnessSeconds)
	}
	fmt.Fprintf(w, ", everything else %.1f s\n", c.OtherSeconds)
	us, broker := r.MicrosPerResource()
	fmt.Fprintf(w, "CPU per resource: fhirstream %.1f µs", us)
	if c.BrokerSeconds > 0 {
		fmt.Fprintf(w, ", broker %.1f µs, together %.1f µs", broker, us+broker)
	}
	fmt.Fprintln(w)
	if processes {
		fmt.Fprintf(w, "memory: bench process (EHR simulator, sampling) max RSS %.0f MB; each stage's peak RSS is in the table\n",
			float64(r.Memory.MaxRSSBytes)/1e6)
	} else {
		fmt.Fprintf(w, "memory: max RSS %.0f MB, Go heap peak %.0f MB, Go runtime total peak %.0f MB\n",
			float64(r.Memory.MaxRSSBytes)/1e6, float64(r.Memory.GoHeapPeakBytes)/1e6, float64(r.Memory.GoTotalPeakBytes)/1e6)
	}
	if r.Profile != "" {
		fmt.Fprintf(w, "\nCPU profile %s (per stage: go tool pprof -tagfocus stage=<name> %s)\n", r.Profile, r.Profile)
		labels := make([]string, 0, len(c.ByLabel))
		for l := range c.ByLabel {
			labels = append(labels, l)
		}
		sort.Slice(labels, func(a, b int) bool { return c.ByLabel[labels[a]] > c.ByLabel[labels[b]] })
		for _, l := range labels {
			fmt.Fprintf(w, "  %-36s %7.2f s\n", l, c.ByLabel[l])
		}
		for _, s := range r.Stages {
			if len(s.TopFunctions) == 0 {
				continue
			}
			fmt.Fprintf(w, "top functions of %s (flat):\n", s.Name)
			for _, fn := range s.TopFunctions[:min(5, len(s.TopFunctions))] {
				fmt.Fprintf(w, "  %5.1f%%  %6.2f s  %s\n", 100*fn.Share, fn.Seconds, fn.Function)
			}
		}
	}
	if r.Consistent {
		fmt.Fprintln(w, "\ncounts consistent: every generated resource was fetched, and each stage read what its upstream wrote")
	} else {
		fmt.Fprintf(w, "\nCOUNTS INCONSISTENT:\n  %s\n", strings.Join(r.Mismatches, "\n  "))
	}
	if r.Kept != "" {
		fmt.Fprintf(w, "kept: %s\n", r.Kept)
	}
	return nil
}
