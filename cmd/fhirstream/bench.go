package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/pprof/profile"
	"github.com/prometheus/procfs"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/demo"
	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/schemas"
)

type benchOptions struct {
	patients      int
	seed          uint64
	partitions    int32
	output        string
	cpuprofileDir string
	keep          bool
	auth          bool
	brokerPID     int
	sinkFlush     time.Duration
	timeout       time.Duration
	kafka         *kafkaclient.Config
}

// Labels of the goroutines bench starts besides the stages' (pipeline.Stages).
const (
	benchLabelFetch  = "fetch"
	benchLabelEHR    = "ehr"
	benchLabelBroker = "broker" // the embedded kfake broker, when no --brokers is given
	benchLabelBench  = "bench"  // sampling and waiting for the stages to drain
)

// benchSampleEvery is how often stage progress and Go memory are sampled: it bounds the
// error of every stage's active time and of the end-to-end time. Each sample gathers
// the whole metrics registry (about a millisecond of CPU, mostly the process collector
// reading /proc), so sampling much more often would show up in the figures.
const benchSampleEvery = 100 * time.Millisecond

func newBenchCmd() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the whole pipeline end to end: generated patients, EHR simulator, fetch, every stage",
		Long: `bench generates --patients patients, serves them with the EHR simulator (SMART auth on
unless --auth=false), fetches the export into Kafka and runs every stage in this process,
on a fresh topic prefix and fresh consumer groups, until all stages have drained. It then
prints resources per second end to end (export kickoff to the last stage's last commit),
each stage's records in, active time, records per second and MB/s, peak memory and CPU use,
as a table or as JSON. Topics and groups are deleted afterwards unless --keep.

Without --brokers (or FHIRSTREAM_BROKERS) it runs on an embedded kfake broker, which
measures fhirstream alone; a real broker gives the figures that matter.

A stage is active from the moment its input first became readable (its upstream's first
committed output; the kickoff for fetch) until its last input was committed. Records per
second are its committed input records over that time; MB/s its input key and value
bytes over it. With --cpuprofile-dir, a CPU profile of the run is written whose samples
carry the label stage=<name> (fetch, ehr, validate, dedupe, omop, sink-bronze, sink-silver, sink-omop,
broker for kfake, bench): 'go tool pprof -tagfocus stage=omop DIR/cpu.pprof' shows one
stage; the report adds CPU seconds and top functions per stage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := runBench(cmd.Context(), o)
			if rep != nil {
				if perr := printBench(cmd.OutOrStdout(), o.output, rep); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	kc := kafkaclient.Defaults()
	kc.Brokers = nil // none given: the embedded broker
	kc.BindFlags(cmd.Flags())
	o.kafka = &kc
	f := cmd.Flags()
	f.IntVar(&o.patients, "patients", 1000, "patients to generate")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the generated data")
	f.Int32Var(&o.partitions, "partitions", 6, "partitions of the topics the run creates")
	f.StringVar(&o.output, "output", "table", "report format: table or json")
	f.StringVar(&o.cpuprofileDir, "cpuprofile-dir", "", "write a CPU profile of the run, labelled per stage, to DIR/cpu.pprof (and DIR/cpu-<stage>.pprof), and a heap profile near the peak to DIR/heap-peak.pprof")
	f.BoolVar(&o.keep, "keep", false, "keep the run's topics, consumer groups and lake")
	f.BoolVar(&o.auth, "auth", true, "SMART Backend Services auth between fetcher and EHR simulator")
	f.IntVar(&o.brokerPID, "broker-pid", 0, "process id of the Kafka broker on this machine, to report its CPU time during the run")
	f.DurationVar(&o.sinkFlush, "sink-flush-interval", 0, "lake sinks' flush interval, the time between a table's snapshots (0: the sink default, 5s)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	return cmd
}

// benchReport is what bench prints; its JSON form is the --output json document.
type benchReport struct {
	Patients    int    `json:"patients"`
	Generated   int64  `json:"generated_resources"`
	Broker      string `json:"broker"`
	TopicPrefix string `json:"topic_prefix"`
	Partitions  int32  `json:"partitions"`
	Auth        bool   `json:"smart_auth"`
	Started     string `json:"started"`

	EndToEndSeconds    float64 `json:"end_to_end_seconds"`
	Resources          int64   `json:"resources"`
	ResourcesPerSecond float64 `json:"resources_per_second"`
	NDJSONBytes        int64   `json:"ndjson_bytes"`
	MBPerSecond        float64 `json:"mb_per_second"`

	Stages []benchStage `json:"stages"`
	// Commits are the lake sinks' table commits: per table, how many and what they cost.
	Commits []benchCommit `json:"table_commits"`
	Memory  benchMemory   `json:"memory"`
	CPU     benchCPU      `json:"cpu"`
	Host    benchHost     `json:"machine"`

	Profile    string   `json:"cpu_profile,omitempty"`
	Consistent bool     `json:"consistent"`
	Mismatches []string `json:"mismatches,omitempty"`
	Kept       string   `json:"kept,omitempty"`
}

type benchStage struct {
	Name             string  `json:"name"`
	RecordsIn        int64   `json:"records_in"`
	RecordsOut       int64   `json:"records_out"`
	DeadLetters      int64   `json:"dead_letters"`
	Batches          int64   `json:"batches"`       // committed batches (transactions); fetch: commits
	StartSeconds     float64 `json:"start_seconds"` // after kickoff
	EndSeconds       float64 `json:"end_seconds"`
	ActiveSeconds    float64 `json:"active_seconds"`
	RecordsPerSecond float64 `json:"records_per_second"`
	BytesIn          int64   `json:"bytes_in"`
	MBPerSecond      float64 `json:"mb_per_second"`
	CPUSeconds       float64 `json:"cpu_seconds,omitempty"`
	RecordsPerCPUSec float64 `json:"records_per_cpu_second,omitempty"`
	TopFunctions     []fnCPU `json:"top_functions,omitempty"`
}

type benchCommit struct {
	Stage       string  `json:"stage"`
	Table       string  `json:"table"`
	Commits     int64   `json:"commits"`
	MeanSeconds float64 `json:"mean_seconds"` // files written, catalog commit and retries
	Seconds     float64 `json:"seconds"`
}

// benchCommits lists the sinks' table commits, busiest first.
func benchCommits(p *pipeline.Pipeline) []benchCommit {
	var out []benchCommit
	for _, layer := range sink.Layers {
		for table, ts := range p.SinkStats(layer).Tables {
			out = append(out, benchCommit{Stage: sink.StageName(layer), Table: table, Commits: ts.Commits,
				MeanSeconds: ts.Seconds / float64(max(ts.Commits, 1)), Seconds: ts.Seconds})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seconds > out[j].Seconds })
	return out
}

type fnCPU struct {
	Function string  `json:"function"`
	Seconds  float64 `json:"flat_seconds"`
	Share    float64 `json:"flat_share"` // of the stage's CPU
}

type benchMemory struct {
	MaxRSSBytes      int64 `json:"max_rss_bytes"`       // getrusage ru_maxrss: the process's peak, setup included
	GoHeapPeakBytes  int64 `json:"go_heap_peak_bytes"`  // heap objects, live and not yet swept, sampled
	GoTotalPeakBytes int64 `json:"go_total_peak_bytes"` // all memory the Go runtime mapped, sampled
}

type benchCPU struct {
	Cores          int                `json:"cores"`
	WallSeconds    float64            `json:"wall_seconds"`    // kickoff to drained
	ProcessSeconds float64            `json:"process_seconds"` // this process, user+system
	GCSeconds      float64            `json:"gc_seconds"`      // of which the Go GC (runtime/metrics estimate)
	BrokerSeconds  float64            `json:"broker_seconds,omitempty"`
	MachineBusy    float64            `json:"machine_busy_seconds"` // all CPUs, from /proc/stat
	OtherSeconds   float64            `json:"other_seconds"`        // busy time of everything else on the machine
	ByLabel        map[string]float64 `json:"profile_seconds_by_label,omitempty"`
}

type benchHost struct {
	CPUs       int        `json:"cpus"`
	GOMAXPROCS int        `json:"gomaxprocs"`
	CPUModel   string     `json:"cpu_model,omitempty"`
	MemBytes   int64      `json:"mem_total_bytes,omitempty"`
	LoadBefore [3]float64 `json:"load_before"`
	LoadAfter  [3]float64 `json:"load_after"`
	BrokerHeap string     `json:"broker_heap,omitempty"`
	BrokerRSS  int64      `json:"broker_rss_bytes,omitempty"`
	GoVersion  string     `json:"go_version"`
}

// benchSample is one look at the pipeline during the run.
type benchSample struct {
	at      time.Duration // since kickoff
	fetched int64         // resources the fetcher published (produced, not yet committed)
	stages  []pipeline.StageProgress
}

func runBench(ctx context.Context, o *benchOptions) (*benchReport, error) {
	switch {
	case o.patients <= 0:
		return nil, fmt.Errorf("--patients %d: give at least 1", o.patients)
	case o.output != "table" && o.output != "json":
		return nil, fmt.Errorf("--output %q: want table or json", o.output)
	case o.partitions <= 0:
		return nil, fmt.Errorf("--partitions %d: give at least 1", o.partitions)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	rep := &benchReport{Patients: o.patients, Partitions: o.partitions, Auth: o.auth,
		Started: time.Now().UTC().Format(time.RFC3339), Host: hostInfo(fs, o.brokerPID)}
	workDir, err := os.MkdirTemp("", "fhirstream-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if rep.Kept == "" {
			os.RemoveAll(workDir)
		}
	}()

	// The broker: the one given, or an embedded one whose goroutines carry its label.
	kc := *o.kafka
	rep.Broker = strings.Join(kc.Brokers, ",")
	if len(kc.Brokers) == 0 {
		var cluster *kfake.Cluster
		pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, benchLabelBroker), func(context.Context) {
			cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(int(o.partitions)))
		})
		if err != nil {
			return nil, fmt.Errorf("start embedded Kafka: %w", err)
		}
		defer cluster.Close()
		kc.Brokers = cluster.ListenAddrs()
		rep.Broker = "embedded kfake"
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	kc.TopicPrefix = fmt.Sprintf("%s-bench-%s-%s", kc.TopicPrefix, time.Now().UTC().Format("20060102t150405"), hex.EncodeToString(suffix))
	kc.ClientID = "fhirstream-bench"
	rep.TopicPrefix = kc.TopicPrefix
	topics, err := schemas.NewTopics(kc.TopicPrefix)
	if err != nil {
		return nil, err
	}
	groupPrefix := kc.TopicPrefix + "-"
	var groups []string
	defer func() {
		if o.keep {
			rep.Kept = fmt.Sprintf("topics %s.*, groups %s*, lake %s", kc.TopicPrefix, groupPrefix, filepath.Join(workDir, "lake"))
			return
		}
		// The run's context may have ended: clean up on a fresh one.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if cerr := deleteBenchTopics(cctx, kc, groups); cerr != nil {
			logger.Warn("bench: cleaning up topics and groups failed", "prefix", kc.TopicPrefix, "err", cerr)
		}
	}()
	if err := createBenchTopics(ctx, kc, topics, o.partitions); err != nil {
		return nil, err
	}

	// The input: generated before the clock starts, served by the EHR simulator.
	dataDir := filepath.Join(workDir, "export")
	counts, err := synth.WriteDir(ctx, synth.Config{Patients: o.patients, Seed: o.seed}, dataDir)
	if err != nil {
		return nil, fmt.Errorf("generate patients: %w", err)
	}
	rep.Generated = counts.Total()
	var ehr *ehrsim.Server
	pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, benchLabelEHR), func(context.Context) {
		ehr, err = ehrsim.New(ehrsim.Config{Addr: "127.0.0.1:0", Dir: dataDir, Auth: o.auth, Log: logger})
	})
	if err != nil {
		return nil, fmt.Errorf("start EHR simulator: %w", err)
	}
	defer ehr.Close()
	fetchCfg := producer.Config{Kafka: kc, Partitions: o.partitions, Export: bulk.Request{Base: ehr.URL},
		TokenURL: "none", Log: logger}
	if obs.IsTerminal(os.Stderr) {
		fetchCfg.Progress, fetchCfg.ProgressTTY = os.Stderr, true
	}
	if o.auth {
		if fetchCfg.KeyFile, err = demo.ClientKey(ehr, workDir); err != nil {
			return nil, err
		}
		fetchCfg.ClientID, fetchCfg.TokenURL = demo.ClientID, ""
	}

	// Every stage, started and joined before the clock starts: the figure is the
	// throughput of a running pipeline, not its start-up.
	p, err := pipeline.Start(ctx, pipeline.Config{Kafka: kc, Lake: lakehouse.Config{Out: filepath.Join(workDir, "lake")},
		SinkFlushInterval: o.sinkFlush, MeasureBytes: true, Logger: logger})
	if err != nil {
		return nil, err
	}
	defer p.Stop() //nolint:errcheck // the explicit Stop below reports errors
	groups = p.Groups()
	if err := waitGroupsStable(ctx, kc, groups, p); err != nil {
		return nil, err
	}

	// The measured run: kickoff → drained, sampled every benchSampleEvery.
	var profFile *os.File
	if o.cpuprofileDir != "" {
		if err := os.MkdirAll(o.cpuprofileDir, 0o755); err != nil {
			return nil, err
		}
		rep.Profile = filepath.Join(o.cpuprofileDir, "cpu.pprof")
		if profFile, err = os.Create(rep.Profile); err != nil {
			return nil, err
		}
		defer profFile.Close()
		if err := pprof.StartCPUProfile(profFile); err != nil {
			return nil, fmt.Errorf("start CPU profile: %w", err)
		}
	}
	before := takeCPU(fs, o.brokerPID)
	fetchedBase := fetchedResources()
	t0 := time.Now()
	heapProfile := ""
	if o.cpuprofileDir != "" {
		heapProfile = filepath.Join(o.cpuprofileDir, "heap-peak.pprof")
	}
	sampler := startBenchSampler(ctx, p, t0, fetchedBase, heapProfile)

	var sum producer.Summary
	var fetchErr error
	pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, benchLabelFetch), func(ctx context.Context) {
		sum, fetchErr = producer.Fetch(ctx, fetchCfg)
	})
	fetchEnd := time.Since(t0)
	if fetchErr != nil {
		sampler.stop()
		stopProfile(profFile)
		return nil, fmt.Errorf("fetch: %w", fetchErr)
	}
	var drainErr error
	pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, benchLabelBench), func(ctx context.Context) {
		drainErr = p.WaitDrained(ctx)
	})
	samples, mem := sampler.stop()
	wall := time.Since(t0)
	after := takeCPU(fs, o.brokerPID)
	stopProfile(profFile)
	if drainErr != nil {
		return nil, drainErr
	}
	if err := p.Stop(); err != nil {
		return nil, err
	}
	final, err := p.Progress()
	if err != nil {
		return nil, err
	}
	samples = append(samples, benchSample{at: wall, fetched: fetchedResources() - fetchedBase, stages: final})

	rep.Host.LoadAfter = loadAvg(fs)
	rep.Memory = mem
	rep.Memory.MaxRSSBytes = maxRSS()
	rep.CPU = benchCPU{Cores: runtime.NumCPU(), WallSeconds: wall.Seconds(),
		ProcessSeconds: after.process - before.process, GCSeconds: after.gc - before.gc,
		BrokerSeconds: after.broker - before.broker, MachineBusy: after.machine - before.machine}
	rep.CPU.OtherSeconds = max(0, rep.CPU.MachineBusy-rep.CPU.ProcessSeconds-rep.CPU.BrokerSeconds)
	rep.Resources = sum.Resources()
	rep.NDJSONBytes = sum.Bytes
	rep.Stages = benchStages(sum, fetchEnd, samples)
	rep.Commits = benchCommits(p)
	end := fetchEnd
	for _, s := range rep.Stages {
		end = max(end, time.Duration(s.EndSeconds*float64(time.Second)))
	}
	rep.EndToEndSeconds = end.Seconds()
	rep.ResourcesPerSecond = perSecond(rep.Resources, rep.EndToEndSeconds)
	rep.MBPerSecond = perSecond(rep.NDJSONBytes, rep.EndToEndSeconds) / 1e6
	rep.Mismatches = benchMismatches(rep.Generated, sum, final)
	if !sum.OK() {
		rep.Mismatches = append(rep.Mismatches, sum.Mismatches...)
	}
	rep.Consistent = len(rep.Mismatches) == 0
	if rep.Profile != "" {
		if err := attributeProfile(rep); err != nil {
			return rep, fmt.Errorf("read CPU profile: %w", err)
		}
	}
	if !rep.Consistent {
		return rep, fmt.Errorf("bench: the stages' counts do not add up: %s", strings.Join(rep.Mismatches, "; "))
	}
	return rep, nil
}

// benchStages turns the samples into per-stage figures. A stage starts when its input
// first became readable (the upstream's first committed output, or the fetcher's first
// published resource for validate) and ends at the first sample showing its final count.
func benchStages(sum producer.Summary, fetchEnd time.Duration, samples []benchSample) []benchStage {
	var read int64
	for _, f := range sum.Files {
		if f.Kind == "output" {
			read += f.Read
		}
	}
	fetch := benchStage{Name: benchLabelFetch, RecordsIn: read, RecordsOut: sum.Resources(), EndSeconds: fetchEnd.Seconds(),
		ActiveSeconds: fetchEnd.Seconds(), BytesIn: sum.Bytes, Batches: sum.Commits}
	for _, f := range sum.Files {
		if f.Kind == "output" {
			fetch.DeadLetters += f.Dead
		}
	}
	out := []benchStage{fetch}
	final := samples[len(samples)-1].stages
	index := map[string]int{}
	for i, sp := range final {
		index[sp.Name] = i
	}
	upstreamOut := func(name string) func(benchSample) int64 {
		up := map[string]string{pipeline.StageDedupe: pipeline.StageValidate, pipeline.StageOMOP: pipeline.StageDedupe,
			pipeline.StageSinkBronze: pipeline.StageDedupe, pipeline.StageSinkSilver: pipeline.StageDedupe, pipeline.StageSinkOMOP: pipeline.StageOMOP}[name]
		if up == "" {
			return func(s benchSample) int64 { return s.fetched }
		}
		return func(s benchSample) int64 { return s.stages[index[up]].Out }
	}
	for i, sp := range final {
		st := benchStage{Name: sp.Name, RecordsIn: sp.In, RecordsOut: sp.Out, DeadLetters: sp.DeadLetters, Batches: sp.Batches, BytesIn: sp.BytesIn}
		inputSeen := upstreamOut(sp.Name)
		// The input became readable between the last sample without it and the first
		// with it; starting from the earlier one never under-counts the active time, and
		// keeps it above zero for a stage that finished within one sample period.
		start, end, before := time.Duration(-1), time.Duration(-1), time.Duration(0)
		for _, s := range samples {
			if start < 0 {
				if inputSeen(s) > 0 {
					start = before
				} else {
					before = s.at
				}
			}
			if end < 0 && s.stages[i].In == sp.In {
				end = s.at
			}
		}
		if sp.In > 0 && start >= 0 && end >= start {
			st.StartSeconds, st.EndSeconds = start.Seconds(), end.Seconds()
			st.ActiveSeconds = (end - start).Seconds()
		}
		out = append(out, st)
	}
	for i := range out {
		out[i].RecordsPerSecond = perSecond(out[i].RecordsIn, out[i].ActiveSeconds)
		if out[i].BytesIn >= 0 {
			out[i].MBPerSecond = perSecond(out[i].BytesIn, out[i].ActiveSeconds) / 1e6
		}
	}
	return out
}

// benchMismatches checks the records flowing from stage to stage add up, and that the
// fetcher published every generated resource.
func benchMismatches(generated int64, sum producer.Summary, stages []pipeline.StageProgress) []string {
	by := map[string]pipeline.StageProgress{}
	for _, s := range stages {
		by[s.Name] = s
	}
	var bad []string
	check := func(what string, got, want int64) {
		if got != want {
			bad = append(bad, fmt.Sprintf("%s: %d, want %d", what, got, want))
		}
	}
	check("resources fetched vs generated", sum.Resources(), generated)
	check("validate in vs fetched", by[pipeline.StageValidate].In, sum.Resources())
	check("dedupe in vs validate out", by[pipeline.StageDedupe].In, by[pipeline.StageValidate].Out)
	check("omop in vs dedupe out", by[pipeline.StageOMOP].In, by[pipeline.StageDedupe].Out)
	check("sink-bronze in vs dedupe out", by[pipeline.StageSinkBronze].In, by[pipeline.StageDedupe].Out)
	check("sink-silver in vs dedupe out", by[pipeline.StageSinkSilver].In, by[pipeline.StageDedupe].Out)
	check("sink-omop in vs omop out", by[pipeline.StageSinkOMOP].In, by[pipeline.StageOMOP].Out)
	return bad
}

func perSecond(n int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(n) / seconds
}

// benchSampler samples stage progress and Go memory until stopped.
type benchSampler struct {
	done   chan struct{}
	result chan samplerResult
}

type samplerResult struct {
	samples []benchSample
	mem     benchMemory
}

// startBenchSampler samples until stop. With heapProfile set, it also writes a heap
// profile there each time the Go heap grows by a quarter past the last one written, so
// the file shows what was live near the peak.
func startBenchSampler(ctx context.Context, p *pipeline.Pipeline, t0 time.Time, fetchedBase int64, heapProfile string) *benchSampler {
	s := &benchSampler{done: make(chan struct{}), result: make(chan samplerResult, 1)}
	mem := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	go pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, benchLabelBench), func(context.Context) {
		var r samplerResult
		tick := time.NewTicker(benchSampleEvery)
		defer tick.Stop()
		var fetched, heapWritten int64
		for {
			metrics.Read(mem)
			heap := int64(mem[0].Value.Uint64())
			r.mem.GoHeapPeakBytes = max(r.mem.GoHeapPeakBytes, heap)
			if heapProfile != "" && heap > 64<<20 && heap > heapWritten+heapWritten/4 {
				if err := writeHeapProfile(heapProfile); err != nil {
					logger.Warn("bench: heap profile not written", "err", err)
					heapProfile = ""
				}
				heapWritten = heap
			}
			r.mem.GoTotalPeakBytes = max(r.mem.GoTotalPeakBytes, int64(mem[1].Value.Uint64()))
			if fetched == 0 { // only its first change matters: validate's start
				fetched = fetchedResources() - fetchedBase
			}
			if sp, err := p.Progress(); err == nil {
				r.samples = append(r.samples, benchSample{at: time.Since(t0), fetched: fetched, stages: sp})
			}
			select {
			case <-s.done:
				s.result <- r
				return
			case <-ctx.Done():
				s.result <- r
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	werr := pprof.Lookup("heap").WriteTo(f, 0)
	if err := errors.Join(werr, f.Close()); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

func (s *benchSampler) stop() ([]benchSample, benchMemory) {
	close(s.done)
	r := <-s.result
	return r.samples, r.mem
}

// fetchedResources is the process-wide count of resources the fetcher has published.
func fetchedResources() int64 {
	families, err := obs.Registry.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "fhirstream_fetch_resources_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int64(n)
}

// waitGroupsStable waits until every stage's consumer group has a member and has
// settled (the first rebalance is over), so the clock starts on a running pipeline.
func waitGroupsStable(ctx context.Context, kc kafkaclient.Config, groups []string, p *pipeline.Pipeline) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := p.Err(); err != nil {
			return err
		}
		described, err := adm.DescribeGroups(ctx, groups...)
		stable := err == nil
		for _, g := range groups {
			d, ok := described[g]
			stable = stable && ok && d.Err == nil && d.State == "Stable" && len(d.Members) > 0
		}
		if stable {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the stages to join their groups: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func createBenchTopics(ctx context.Context, kc kafkaclient.Config, topics schemas.Topics, partitions int32) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	specs := kafkaclient.ContractTopics(topics, schemas.BulkResourceTypes, schemas.OMOPTables(),
		kafkaclient.TopicOptions{Partitions: partitions, MaxMessageBytes: kc.MaxRecordBytes})
	_, err = kafkaclient.EnsureTopics(ctx, kadm.NewClient(cl), specs)
	return err
}

// deleteBenchTopics deletes every topic of the run's prefix (the contract's and those the
// stages created, such as state changelogs) and the run's consumer groups.
func deleteBenchTopics(ctx context.Context, kc kafkaclient.Config, groups []string) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var errs []error
	if len(groups) > 0 {
		resp, err := adm.DeleteGroups(ctx, groups...)
		errs = append(errs, err)
		for _, r := range resp {
			errs = append(errs, r.Err)
		}
	}
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var mine []string
	for name := range all {
		if strings.HasPrefix(name, kc.TopicPrefix+".") {
			mine = append(mine, name)
		}
	}
	if len(mine) > 0 {
		resp, err := adm.DeleteTopics(ctx, mine...)
		errs = append(errs, err)
		for _, r := range resp {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

func stopProfile(f *os.File) {
	if f != nil {
		pprof.StopCPUProfile()
	}
}

// cpuTimes are CPU seconds consumed so far.
type cpuTimes struct{ process, gc, broker, machine float64 }

func takeCPU(fs procfs.FS, brokerPID int) cpuTimes {
	var c cpuTimes
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	gc := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(gc)
	if gc[0].Value.Kind() == metrics.KindFloat64 {
		c.gc = gc[0].Value.Float64()
	}
	if brokerPID > 0 {
		if proc, err := fs.Proc(brokerPID); err == nil {
			if st, err := proc.Stat(); err == nil {
				c.broker = st.CPUTime()
			}
		}
	}
	if st, err := fs.Stat(); err == nil {
		t := st.CPUTotal
		c.machine = t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ + t.Steal
	}
	return c
}

// maxRSS is the process's peak resident set size (getrusage reports KiB on Linux).
func maxRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

func loadAvg(fs procfs.FS) [3]float64 {
	l, err := fs.LoadAvg()
	if err != nil {
		return [3]float64{}
	}
	return [3]float64{l.Load1, l.Load5, l.Load15}
}

func hostInfo(fs procfs.FS, brokerPID int) benchHost {
	h := benchHost{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), LoadBefore: loadAvg(fs)}
	if ci, err := fs.CPUInfo(); err == nil && len(ci) > 0 {
		h.CPUModel = ci[0].ModelName
	}
	if mi, err := fs.Meminfo(); err == nil && mi.MemTotal != nil {
		h.MemBytes = int64(*mi.MemTotal) * 1024
	}
	if brokerPID > 0 {
		if proc, err := fs.Proc(brokerPID); err == nil {
			if args, err := proc.CmdLine(); err == nil {
				var heap []string
				for _, a := range args {
					if strings.HasPrefix(a, "-Xm") {
						heap = append(heap, a)
					}
				}
				h.BrokerHeap = strings.Join(heap, " ")
			}
			if st, err := proc.Stat(); err == nil {
				h.BrokerRSS = int64(st.ResidentMemory())
			}
		}
	}
	return h
}

// attributeProfile splits the CPU profile by the stage label: CPU seconds per label, per
// stage the top functions by flat time, and one profile file per stage beside it.
func attributeProfile(rep *benchReport) error {
	f, err := os.Open(rep.Profile)
	if err != nil {
		return err
	}
	prof, err := profile.Parse(f)
	f.Close()
	if err != nil {
		return err
	}
	valueIndex := -1
	for i, st := range prof.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			valueIndex = i
		}
	}
	if valueIndex < 0 {
		return errors.New("no cpu nanoseconds samples")
	}
	byLabel := map[string]float64{}
	flat := map[string]map[string]float64{}
	for _, s := range prof.Sample {
		label := "(unlabelled: GC workers, runtime)"
		if v := s.Label[pipeline.ProfileLabel]; len(v) > 0 {
			label = v[0]
		}
		secs := float64(s.Value[valueIndex]) / 1e9
		byLabel[label] += secs
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 && s.Location[0].Line[0].Function != nil {
			if flat[label] == nil {
				flat[label] = map[string]float64{}
			}
			flat[label][s.Location[0].Line[0].Function.Name] += secs
		}
	}
	rep.CPU.ByLabel = byLabel
	for i := range rep.Stages {
		st := &rep.Stages[i]
		st.CPUSeconds = byLabel[st.Name]
		st.RecordsPerCPUSec = perSecond(st.RecordsIn, st.CPUSeconds)
		for fn, secs := range flat[st.Name] {
			st.TopFunctions = append(st.TopFunctions, fnCPU{Function: fn, Seconds: secs, Share: secs / st.CPUSeconds})
		}
		sort.Slice(st.TopFunctions, func(a, b int) bool { return st.TopFunctions[a].Seconds > st.TopFunctions[b].Seconds })
		st.TopFunctions = st.TopFunctions[:min(len(st.TopFunctions), 10)]
	}
	// One file per label, for tools that cannot focus on a tag.
	dir := filepath.Dir(rep.Profile)
	for label := range byLabel {
		if strings.HasPrefix(label, "(") {
			continue
		}
		one := prof.Copy()
		one.FilterSamplesByTag(func(s *profile.Sample) bool { return s.HasLabel(pipeline.ProfileLabel, label) }, nil)
		out, err := os.Create(filepath.Join(dir, "cpu-"+label+".pprof"))
		if err != nil {
			return err
		}
		werr := one.Write(out)
		if err := errors.Join(werr, out.Close()); err != nil {
			return err
		}
	}
	return nil
}

func printBench(w io.Writer, format string, r *benchReport) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "fhirstream bench: %d patients, %d resources (%.1f MB NDJSON), broker %s, %d partitions, topic prefix %s\n",
		r.Patients, r.Resources, float64(r.NDJSONBytes)/1e6, r.Broker, r.Partitions, r.TopicPrefix)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %.1f GiB RAM, load %.2f %.2f %.2f before, %.2f %.2f %.2f after\n\n",
		r.Host.CPUs, r.Host.CPUModel, float64(r.Host.MemBytes)/(1<<30),
		r.Host.LoadBefore[0], r.Host.LoadBefore[1], r.Host.LoadBefore[2], r.Host.LoadAfter[0], r.Host.LoadAfter[1], r.Host.LoadAfter[2])
	fmt.Fprintf(w, "end to end (kickoff → last stage drained): %.2f s, %.0f resources/s, %.1f MB/s\n\n",
		r.EndToEndSeconds, r.ResourcesPerSecond, r.MBPerSecond)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STAGE\tIN\tOUT\tDEAD\tTXNS\tSTART s\tEND s\tACTIVE s\tREC/s\tMB IN\tMB/s\tCPU s\tREC/CPU-s\t")
	for _, s := range r.Stages {
		mbIn, mbs := "-", "-"
		if s.BytesIn >= 0 {
			mbIn, mbs = fmt.Sprintf("%.1f", float64(s.BytesIn)/1e6), fmt.Sprintf("%.1f", s.MBPerSecond)
		}
		cpu, perCPU := "-", "-"
		if r.Profile != "" {
			cpu, perCPU = fmt.Sprintf("%.2f", s.CPUSeconds), fmt.Sprintf("%.0f", s.RecordsPerCPUSec)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t\n", s.Name, s.RecordsIn, s.RecordsOut, s.DeadLetters, s.Batches,
			s.StartSeconds, s.EndSeconds, s.ActiveSeconds, s.RecordsPerSecond, mbIn, mbs, cpu, perCPU)
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
	fmt.Fprintf(w, "\nCPU during the run (%.1f s × %d cores = %.1f core-s): fhirstream %.1f s (GC %.1f s)", c.WallSeconds, c.Cores,
		c.WallSeconds*float64(c.Cores), c.ProcessSeconds, c.GCSeconds)
	if c.BrokerSeconds > 0 {
		fmt.Fprintf(w, ", broker %.1f s", c.BrokerSeconds)
	}
	fmt.Fprintf(w, ", everything else %.1f s\n", c.OtherSeconds)
	fmt.Fprintf(w, "memory: max RSS %.0f MB, Go heap peak %.0f MB, Go runtime total peak %.0f MB\n",
		float64(r.Memory.MaxRSSBytes)/1e6, float64(r.Memory.GoHeapPeakBytes)/1e6, float64(r.Memory.GoTotalPeakBytes)/1e6)
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
