package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
)

// runInProcess runs the fetcher and every stage in this process (internal/pipeline).
func runInProcess(ctx context.Context, e *env, rep *Report) (*measured, error) {
	o := e.o
	fetchCfg := producer.Config{Kafka: e.kc, Partitions: o.Partitions, Export: bulk.Request{Base: e.ehr.URL},
		TokenURL: "none", Log: o.Logger, Progress: o.Progress, ProgressTTY: o.ProgressTTY}
	if o.Auth {
		fetchCfg.KeyFile, fetchCfg.ClientID, fetchCfg.TokenURL = e.keyFile, e.clientID, ""
	}

	// Every stage, started and joined before the clock starts: the figure is the
	// throughput of a running pipeline, not its start-up.
	p, err := pipeline.Start(ctx, pipeline.Config{Kafka: e.kc, Lake: lakehouse.Config{Out: e.lakeDir},
		SinkFlushInterval: o.SinkFlushInterval, MeasureBytes: true, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	defer p.Stop() //nolint:errcheck // the explicit Stop below reports errors
	e.groups = p.Groups()
	if err := waitGroupsStable(ctx, e.kc, e.groups, p.Err); err != nil {
		return nil, err
	}

	// The measured run: kickoff → drained, sampled every sampleEvery.
	var profFile *os.File
	if o.CPUProfileDir != "" {
		if err := os.MkdirAll(o.CPUProfileDir, 0o755); err != nil {
			return nil, err
		}
		rep.Profile = filepath.Join(o.CPUProfileDir, "cpu.pprof")
		if profFile, err = os.Create(rep.Profile); err != nil {
			return nil, err
		}
		defer profFile.Close()
		if err := pprof.StartCPUProfile(profFile); err != nil {
			return nil, fmt.Errorf("start CPU profile: %w", err)
		}
	}
	m := &measured{before: takeCPU(e.fs, o.BrokerPID)}
	fetchedBase := fetchedResources()
	t0 := time.Now()
	heapProfile := ""
	if o.CPUProfileDir != "" {
		heapProfile = filepath.Join(o.CPUProfileDir, "heap-peak.pprof")
	}
	smp := startSampler(ctx, o.Logger, p, t0, fetchedBase, heapProfile)

	var sum producer.Summary
	var fetchErr error
	pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, LabelFetch), func(ctx context.Context) {
		sum, fetchErr = producer.Fetch(ctx, fetchCfg)
	})
	fetchEnd := time.Since(t0)
	if fetchErr != nil {
		smp.stop()
		stopProfile(profFile)
		return nil, fmt.Errorf("fetch: %w", fetchErr)
	}
	var drainErr error
	pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, LabelBench), func(ctx context.Context) {
		drainErr = p.WaitDrained(ctx)
	})
	m.samples, m.memory = smp.stop()
	m.wall = time.Since(t0)
	m.after = takeCPU(e.fs, o.BrokerPID)
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
	m.samples = append(m.samples, sample{at: m.wall, fetched: fetchedResources() - fetchedBase, stages: final})
	m.memory.MaxRSSBytes = maxRSS()
	m.fetch = fetchFigures{published: sum.Resources(), bytes: sum.Bytes, commits: sum.Commits, end: fetchEnd}
	for _, f := range sum.Files {
		if f.Kind == "output" {
			m.fetch.read += f.Read
			m.fetch.dead += f.Dead
		}
	}
	if !sum.OK() {
		m.failures = sum.Mismatches
	}
	m.commits = inProcessCommits(p)
	return m, nil
}

// inProcessCommits lists the sinks' table commits, busiest first.
func inProcessCommits(p *pipeline.Pipeline) []Commit {
	var out []Commit
	for _, layer := range sink.Layers {
		for table, ts := range p.SinkStats(layer).Tables {
			out = append(out, Commit{Stage: sink.StageName(layer), Table: table, Commits: ts.Commits,
				MeanSeconds: ts.Seconds / float64(max(ts.Commits, 1)), Seconds: ts.Seconds})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seconds > out[j].Seconds })
	return out
}

// sampler samples stage progress and Go memory until stopped.
type sampler struct {
	done   chan struct{}
	result chan samplerResult
}

type samplerResult struct {
	samples []sample
	mem     Memory
}

// startSampler samples until stop. With heapProfile set, it also writes a heap profile
// there each time the Go heap grows by a quarter past the last one written, so the file
// shows what was live near the peak.
func startSampler(ctx context.Context, log *slog.Logger, p *pipeline.Pipeline, t0 time.Time, fetchedBase int64, heapProfile string) *sampler {
	s := &sampler{done: make(chan struct{}), result: make(chan samplerResult, 1)}
	mem := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	go pprof.Do(ctx, pprof.Labels(pipeline.ProfileLabel, LabelBench), func(context.Context) {
		var r samplerResult
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		var fetched, heapWritten int64
		for {
			metrics.Read(mem)
			heap := int64(mem[0].Value.Uint64())
			r.mem.GoHeapPeakBytes = max(r.mem.GoHeapPeakBytes, heap)
			if heapProfile != "" && heap > 64<<20 && heap > heapWritten+heapWritten/4 {
				if err := writeHeapProfile(heapProfile); err != nil {
					log.Warn("bench: heap profile not written", "err", err)
					heapProfile = ""
				}
				heapWritten = heap
			}
			r.mem.GoTotalPeakBytes = max(r.mem.GoTotalPeakBytes, int64(mem[1].Value.Uint64()))
			if fetched == 0 { // only its first change matters: validate's start
				fetched = fetchedResources() - fetchedBase
			}
			if sp, err := p.Progress(); err == nil {
				r.samples = append(r.samples, sample{at: time.Since(t0), fetched: fetched, stages: sp})
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

func (s *sampler) stop() ([]sample, Memory) {
	close(s.done)
	r := <-s.result
	return r.samples, r.mem
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

func stopProfile(f *os.File) {
	if f != nil {
		pprof.StopCPUProfile()
	}
}
