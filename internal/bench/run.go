package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/prometheus/procfs"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/fakebroker"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// Labels of the goroutines bench starts besides the stages' (pipeline.Stages), and the
// name of the fetcher's row of the report.
const (
	LabelFetch  = "fetch"
	LabelEHR    = "ehr"
	LabelBroker = "broker" // the embedded kfake broker, when no brokers are given
	LabelBench  = "bench"  // sampling and waiting for the stages to drain
)

// sampleEvery is how often stage progress and Go memory are sampled in-process: it
// bounds the error of every stage's active time and of the end-to-end time. Each sample
// gathers the whole metrics registry (about a millisecond of CPU, mostly the process
// collector reading /proc), so sampling much more often would show up in the figures.
const sampleEvery = 100 * time.Millisecond

// env is what both modes run in: the broker, the run's topics, the input and the EHR
// simulator serving it.
type env struct {
	o       Options
	fs      procfs.FS
	kc      kafkaclient.Config // with the run's topic prefix
	topics  schemas.Topics
	workDir string
	dataDir string
	lakeDir string
	ehr     *ehrsim.Server
	// clientID and keyFile are the fetcher's SMART credentials (Auth).
	clientID, keyFile string
	// groups are the stages' consumer groups, for clean-up, in data-flow order; inputs
	// their input topic patterns.
	groups []string
	inputs []*regexp.Regexp
}

// measured is what a mode hands back to be turned into the report.
type measured struct {
	samples  []sample
	fetch    fetchFigures
	wall     time.Duration
	before   cpuTimes
	after    cpuTimes
	memory   Memory
	commits  []Commit
	failures []string // the fetcher's own reconciliation failures
	// processes are the stages' and the fetcher's processes by stage name, in
	// processes mode.
	processes map[string]*Process
}

// fetchFigures are the fetcher's counts for its row of the report.
type fetchFigures struct {
	read, published, dead, bytes, commits int64
	end                                   time.Duration
}

// sample is one look at the pipeline during the run.
type sample struct {
	at      time.Duration // since kickoff
	fetched int64         // resources the fetcher published (produced, not yet committed)
	stages  []pipeline.StageProgress
}

// Run runs the benchmark and returns its report. A run whose counts do not add up
// returns the report and an error saying so.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	mode := ModeInProcess
	if o.Processes {
		mode = ModeProcesses
	}
	rep := &Report{Patients: o.Patients, Partitions: o.Partitions, Auth: o.Auth, Mode: mode,
		Started: time.Now().UTC().Format(time.RFC3339), Host: hostInfo(fs, o.BrokerPID)}
	e := &env{o: o, fs: fs}
	if e.workDir, err = os.MkdirTemp("", "fhirstream-bench-"); err != nil {
		return nil, err
	}
	defer func() {
		if rep.Kept == "" {
			os.RemoveAll(e.workDir)
		}
	}()
	e.dataDir, e.lakeDir = filepath.Join(e.workDir, "export"), filepath.Join(e.workDir, "lake")

	// The broker: the one given, or an embedded one whose goroutines carry its label.
	e.kc = o.Kafka
	rep.Broker = strings.Join(e.kc.Brokers, ",")
	if len(e.kc.Brokers) == 0 {
		var cluster *kfake.Cluster
		pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, LabelBroker), func(context.Context) {
			cluster, err = fakebroker.New(kfake.NumBrokers(1), kfake.DefaultNumPartitions(int(o.Partitions)))
		})
		if err != nil {
			return nil, fmt.Errorf("start embedded Kafka: %w", err)
		}
		defer cluster.Close()
		e.kc.Brokers = cluster.ListenAddrs()
		rep.Broker = "embedded kfake"
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	e.kc.TopicPrefix = fmt.Sprintf("%s-bench-%s-%s", e.kc.TopicPrefix, time.Now().UTC().Format("20060102t150405"), hex.EncodeToString(suffix))
	e.kc.ClientID = "fhirstream-bench"
	rep.TopicPrefix = e.kc.TopicPrefix
	if e.topics, err = schemas.NewTopics(e.kc.TopicPrefix); err != nil {
		return nil, err
	}
	defer func() {
		if o.Keep {
			rep.Kept = fmt.Sprintf("topics %s.*, groups %s-*, lake %s", e.kc.TopicPrefix, e.kc.TopicPrefix, e.lakeDir)
			return
		}
		// The run's context may have ended: clean up on a fresh one.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if cerr := deleteTopics(cctx, e.kc, e.groups); cerr != nil {
			o.Logger.Warn("bench: cleaning up topics and groups failed", "prefix", e.kc.TopicPrefix, "err", cerr)
		}
	}()
	if err := createTopics(ctx, e.kc, e.topics, o.Partitions); err != nil {
		return nil, err
	}

	// The input: generated before the clock starts, served by the EHR simulator.
	counts, err := synth.WriteDir(ctx, synth.Config{Patients: o.Patients, Seed: o.Seed}, e.dataDir)
	if err != nil {
		return nil, fmt.Errorf("generate patients: %w", err)
	}
	rep.Generated = counts.Total()
	pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, LabelEHR), func(context.Context) {
		e.ehr, err = ehrsim.New(ehrsim.Config{Addr: "127.0.0.1:0", Dir: e.dataDir, Auth: o.Auth, Log: o.Logger})
	})
	if err != nil {
		return nil, fmt.Errorf("start EHR simulator: %w", err)
	}
	defer e.ehr.Close()
	if o.Auth {
		if e.clientID, e.keyFile, err = o.ClientKey(e.ehr, e.workDir); err != nil {
			return nil, err
		}
	}

	var m *measured
	if o.Processes {
		m, err = runProcesses(ctx, e, rep)
	} else {
		m, err = runInProcess(ctx, e, rep)
	}
	if err != nil {
		return nil, err
	}
	return rep, finish(rep, m, fs)
}

// finish fills the report from what was measured and checks the counts add up.
func finish(rep *Report, m *measured, fs procfs.FS) error {
	rep.Host.LoadAfter = loadAvg(fs)
	rep.Memory = m.memory
	cpu := CPU{Cores: runtime.NumCPU(), WallSeconds: m.wall.Seconds(), ByLabel: rep.CPU.ByLabel,
		BrokerSeconds: m.after.broker - m.before.broker, MachineBusy: m.after.machine - m.before.machine}
	if rep.Mode == ModeProcesses {
		cpu.HarnessSeconds = m.after.process - m.before.process
		for _, p := range m.processes {
			cpu.ProcessSeconds += p.CPUSeconds
		}
	} else {
		cpu.ProcessSeconds, cpu.GCSeconds = m.after.process-m.before.process, m.after.gc-m.before.gc
	}
	cpu.OtherSeconds = max(0, cpu.MachineBusy-cpu.ProcessSeconds-cpu.HarnessSeconds-cpu.BrokerSeconds)
	rep.CPU = cpu
	rep.Resources = m.fetch.published
	rep.NDJSONBytes = m.fetch.bytes
	rep.Stages = stageFigures(m.fetch, m.samples)
	rep.Commits = m.commits
	end := m.fetch.end
	for _, s := range rep.Stages {
		end = max(end, time.Duration(s.EndSeconds*float64(time.Second)))
	}
	rep.EndToEndSeconds = end.Seconds()
	rep.ResourcesPerSecond = perSecond(rep.Resources, rep.EndToEndSeconds)
	rep.MBPerSecond = perSecond(rep.NDJSONBytes, rep.EndToEndSeconds) / 1e6
	for i := range rep.Stages {
		st := &rep.Stages[i]
		if p := m.processes[st.Name]; p != nil {
			if rep.Resources > 0 {
				p.CPUMicrosPerResource = 1e6 * p.CPUSeconds / float64(rep.Resources)
			}
			st.Process = p
			st.CPUSeconds = p.CPUSeconds
			st.RecordsPerCPUSec = perSecond(st.RecordsIn, st.CPUSeconds)
		}
	}
	rep.Mismatches = append(mismatches(rep.Generated, m.fetch.published, m.samples[len(m.samples)-1].stages), m.failures...)
	rep.Consistent = len(rep.Mismatches) == 0
	if rep.Profile != "" {
		if err := attributeProfile(rep); err != nil {
			return fmt.Errorf("read CPU profile: %w", err)
		}
	}
	if !rep.Consistent {
		return fmt.Errorf("bench: the stages' counts do not add up: %s", strings.Join(rep.Mismatches, "; "))
	}
	return nil
}
