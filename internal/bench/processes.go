package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/schemas"
)

// scrapeEvery is how often processes mode reads every process's /metrics. Each scrape
// costs the process about a millisecond of CPU (gathering its registry, the process
// collector reading /proc); at 200 ms that is under 1 % of a core per process.
const scrapeEvery = 200 * time.Millisecond

// stopGrace is how long a stage process may take to leave its group and exit after
// SIGTERM before it is killed.
const stopGrace = time.Minute

// child is the fetcher or one stage running as a process of the fhirstream binary.
type child struct {
	name    string
	cmd     *exec.Cmd
	env     []string // given beyond the bench's own environment
	metrics string   // URL of its /metrics
	logPath string
	done    chan struct{} // closed once it has exited; err is then its exit
	err     error
	cpu0    float64 // CPU seconds at kickoff
}

// runProcesses runs the fetcher and every stage as its own process: the stages start
// and settle in their groups, the fetcher's start is the clock's, and the run ends when
// every stage has drained its input.
func runProcesses(ctx context.Context, e *env, _ *Report) (*measured, error) {
	names := pipeline.Stages(schemas.TopologyOptions{})
	logDir := filepath.Join(e.workDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	stages, err := startStageProcesses(e, names, logDir)
	defer func() {
		for _, c := range stages {
			c.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	exited := func() error { return firstExit(stages) }
	if err := waitGroupsStable(ctx, e.kc, e.groups, exited); err != nil {
		return nil, err
	}

	// The measured run: the fetcher's process starts the clock.
	m := &measured{before: takeCPU(e.fs, e.o.BrokerPID), processes: map[string]*Process{}}
	for _, c := range stages {
		c.cpu0 = processCPU(e.fs, c.cmd.Process.Pid)
	}
	t0 := time.Now()
	fetch, err := startFetchProcess(e, logDir)
	if err != nil {
		return nil, err
	}
	defer fetch.stop()
	scr := startScraper(ctx, e.topics, names, stages, fetch, t0)
	fetchEnd, err := waitFetchProcess(ctx, fetch, t0)
	if err != nil {
		scr.stop()
		return nil, err
	}
	drainErr := pipeline.WaitGroupsDrained(ctx, e.kc, e.groups, e.inputs, exited)
	m.samples = scr.stop()
	m.wall = time.Since(t0)
	m.after = takeCPU(e.fs, e.o.BrokerPID)
	if drainErr != nil {
		return nil, drainErr
	}
	if err := addFinalScrape(e, m, stages, names); err != nil {
		return nil, err
	}
	if err := stopAndMeasureProcesses(e, m, stages, fetch, scr); err != nil {
		return nil, err
	}
	if err := addFetchFigures(e, m, fetchEnd, scr); err != nil {
		return nil, err
	}
	m.memory.MaxRSSBytes = maxRSS()
	return m, nil
}

// startStageProcesses starts one `consume <stage>` process per name and records each
// stage's group and input pattern in e. It returns the processes started so far even on
// error, for the caller to stop.
func startStageProcesses(e *env, names []string, logDir string) ([]*child, error) {
	topo := e.topics.Topology(schemas.TopologyOptions{})
	var stages []*child
	for _, name := range names {
		node := topo.MustNode(name)
		e.groups = append(e.groups, node.Group)
		e.inputs = append(e.inputs, regexp.MustCompile(node.InputPattern()))
		args := []string{"consume", name}
		if strings.HasPrefix(name, "sink-") {
			args = append(args, "--out", e.lakeDir)
			if e.o.SinkFlushInterval > 0 {
				args = append(args, "--flush-interval", e.o.SinkFlushInterval.String())
			}
		}
		c, err := startChild(e, name, logDir, args)
		if err != nil {
			return stages, err
		}
		stages = append(stages, c)
	}
	return stages, nil
}

// startFetchProcess starts `fetch` against the run's EHR simulator.
func startFetchProcess(e *env, logDir string) (*child, error) {
	args := []string{"fetch", e.ehr.URL, "--partitions", strconv.Itoa(int(e.o.Partitions)),
		"--min-poll", "1s", "--manifest-dir", ""}
	if e.o.Auth {
		args = append(args, "--smart-client-id", e.clientID, "--key", e.keyFile)
	} else {
		args = append(args, "--token-url", "none")
	}
	return startChild(e, LabelFetch, logDir, args)
}

// waitFetchProcess waits for the fetcher to exit and returns how long after t0 it did;
// a fetcher that failed is an error, with the tail of its log.
func waitFetchProcess(ctx context.Context, fetch *child, t0 time.Time) (time.Duration, error) {
	select {
	case <-fetch.done:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for the fetcher: %w", ctx.Err())
	}
	end := time.Since(t0)
	if fetch.err != nil {
		return 0, fmt.Errorf("fetch process: %w%s", fetch.err, logTail(fetch.logPath))
	}
	return end, nil
}

// addFinalScrape reads every stage's /metrics once the run has drained, appends that as
// the last sample, and takes each stage's CPU and the lake commits from it.
func addFinalScrape(e *env, m *measured, stages []*child, names []string) error {
	final, families := scrapeAll(stages, names, e.topics)
	for i, sp := range final {
		if sp == nil {
			return fmt.Errorf("stage %s: /metrics unreadable at the end of the run%s", names[i], logTail(stages[i].logPath))
		}
	}
	last := sample{at: m.wall, stages: make([]pipeline.StageProgress, len(final))}
	for i, sp := range final {
		last.stages[i] = *sp
	}
	if n := len(m.samples); n > 0 {
		last.fetched = m.samples[n-1].fetched
	}
	m.samples = append(m.samples, last)
	for _, c := range stages {
		m.processes[c.name] = &Process{PID: c.cmd.Process.Pid, CPUSeconds: processCPU(e.fs, c.cmd.Process.Pid) - c.cpu0, Env: c.env}
	}
	m.commits = scrapedCommits(families, names)
	return nil
}

// stopAndMeasureProcesses stops every process: each stage leaves its group, and its
// whole-life peak RSS is known once it has exited.
func stopAndMeasureProcesses(e *env, m *measured, stages []*child, fetch *child, scr *scraper) error {
	var stopErrs []error
	for _, c := range append(stages, fetch) {
		if err := c.stop(); err != nil {
			stopErrs = append(stopErrs, fmt.Errorf("%s: %w%s", c.name, err, logTail(c.logPath)))
		}
	}
	if err := errors.Join(stopErrs...); err != nil {
		return fmt.Errorf("stopping the stage processes: %w", err)
	}
	fetchCPU := 0.0
	if ps := fetch.cmd.ProcessState; ps != nil {
		fetchCPU = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	m.processes[LabelFetch] = &Process{PID: fetch.cmd.Process.Pid, CPUSeconds: fetchCPU, Env: fetch.env}
	for _, c := range append(stages, fetch) {
		m.processes[c.name].PeakRSSBytes = peakRSS(c.cmd)
		m.processes[c.name].GoHeapPeakBytes = scr.heapPeak(c.name)
	}
	return nil
}

// addFetchFigures fills the fetcher's figures: it reconciled what it read with what it
// published (a run that does not exits non-zero), validate read every record it
// published, and the export's lines and bytes are the generated files'.
func addFetchFigures(e *env, m *measured, end time.Duration, scr *scraper) error {
	for _, sp := range m.samples[len(m.samples)-1].stages {
		if sp.Name == pipeline.StageValidate {
			m.fetch.published = sp.In
		}
	}
	m.fetch.end = end
	var err error
	if m.fetch.read, m.fetch.bytes, err = countLines(e.dataDir); err != nil {
		return err
	}
	// Its commits as last scraped; -1 when no scrape saw one.
	if m.fetch.commits = scr.fetchCommits(); m.fetch.commits == 0 {
		m.fetch.commits = -1
	}
	return nil
}

// startChild starts one command of the fhirstream binary with the run's Kafka settings,
// its own metrics port and its log in logDir.
func startChild(e *env, name, logDir string, args []string) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	kargs, kenv := kafkaArgs(e.kc, name)
	args = append(args, kargs...)
	args = append(args, "--metrics-addr", addr, "--log-level", "warn")
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := &child{name: name, metrics: "http://" + addr + "/metrics", logPath: logPath, done: make(chan struct{})}
	c.env = append(append([]string{}, e.o.ProcessEnv...), e.o.StageEnv[name]...)
	// Not CommandContext: a stage is stopped with SIGTERM (stop), so it leaves its
	// group and commits or aborts its batch, as in a deployment.
	c.cmd = exec.Command(e.o.Executable, args...) //nolint:gosec // the fhirstream binary, with arguments built here
	c.cmd.Env = append(append(os.Environ(), kenv...), c.env...)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		logFile.Close()
		close(c.done)
	}()
	return c, nil
}

// kafkaArgs are the flags (and, for secrets, environment variables) that point a child
// process at the run's cluster and topic prefix.
func kafkaArgs(kc kafkaclient.Config, name string) (args, env []string) {
	args = []string{"--brokers", strings.Join(kc.Brokers, ","), "--topic-prefix", kc.TopicPrefix,
		"--client-id", kc.ClientID + "-" + name, "--max-record-bytes", strconv.Itoa(int(kc.MaxRecordBytes))}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	add("--sasl-mechanism", kc.SASLMechanism)
	add("--sasl-user", kc.SASLUser)
	add("--sasl-oauth-token-url", kc.OAuthTokenURL)
	add("--sasl-oauth-client-id", kc.OAuthClientID)
	add("--sasl-oauth-client-secret-file", kc.OAuthClientSecretFile)
	add("--tls-ca", kc.TLSCAFile)
	add("--tls-cert", kc.TLSCertFile)
	add("--tls-key", kc.TLSKeyFile)
	add("--tls-server-name", kc.TLSServerName)
	if kc.TLS {
		args = append(args, "--tls")
	}
	if len(kc.OAuthScopes) > 0 {
		args = append(args, "--sasl-oauth-scopes", strings.Join(kc.OAuthScopes, ","))
	}
	// Secrets through the environment, out of process listings.
	if kc.SASLPassword != "" {
		env = append(env, "FHIRSTREAM_SASL_PASSWORD="+kc.SASLPassword)
	}
	if kc.OAuthClientSecret != "" {
		env = append(env, "FHIRSTREAM_SASL_OAUTH_CLIENT_SECRET="+kc.OAuthClientSecret)
	}
	return args, env
}

// stop sends SIGTERM and waits for the process to exit, killing it after stopGrace. It
// returns the exit error of a process that failed, nil for one that exited cleanly
// (now or before).
func (c *child) stop() error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(stopGrace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("did not exit within %s of SIGTERM: killed", stopGrace)
	}
}

// firstExit reports a stage process that has exited: during a run none should.
func firstExit(cs []*child) error {
	for _, c := range cs {
		select {
		case <-c.done:
			return fmt.Errorf("stage process %s exited during the run: %v%s", c.name, c.err, logTail(c.logPath))
		default:
		}
	}
	return nil
}

// peakRSS is an exited process's peak resident set size (ru_maxrss, KiB on Linux).
func peakRSS(cmd *exec.Cmd) int64 {
	if cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024
	}
	return 0
}

// logTail is the end of a process's log, to explain its failure.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\n--- " + filepath.Base(path) + " (end) ---\n" + string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// countLines counts the non-empty lines and bytes of the export's NDJSON files.
func countLines(dir string) (lines, size int64, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil {
		return 0, 0, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, 0, err
		}
		size += int64(len(b))
		for _, line := range bytes.Split(b, []byte{'\n'}) {
			if len(bytes.TrimSpace(line)) > 0 {
				lines++
			}
		}
	}
	return lines, size, nil
}

// scraper samples every process's /metrics until stopped.
type scraper struct {
	done    chan struct{}
	result  chan []sample
	mu      sync.Mutex
	commits int64            // the fetcher's committed transactions, last seen
	heap    map[string]int64 // the largest Go heap seen, by process (stage name)
}

func startScraper(ctx context.Context, topics schemas.Topics, names []string, stages []*child, fetch *child, t0 time.Time) *scraper {
	s := &scraper{done: make(chan struct{}), result: make(chan []sample, 1), heap: map[string]int64{}}
	go func() {
		var samples []sample
		prev := make([]pipeline.StageProgress, len(names))
		for i, n := range names {
			prev[i] = pipeline.StageProgress{Name: n, BytesIn: -1, BytesOut: -1}
		}
		var fetched int64
		tick := time.NewTicker(scrapeEvery)
		defer tick.Stop()
		for {
			select {
			case <-fetch.done:
			default:
				if f, err := scrape(fetch.metrics); err == nil {
					fetched = max(fetched, counterSum(f["fhirstream_fetch_resources_total"]))
					s.mu.Lock()
					s.commits = max(s.commits, counterSum(f["fhirstream_fetch_commits_total"]))
					s.heap[fetch.name] = max(s.heap[fetch.name], heapAlloc(f))
					s.mu.Unlock()
				}
			}
			now, fams := scrapeAll(stages, names, topics)
			s.mu.Lock()
			for name, f := range fams {
				s.heap[name] = max(s.heap[name], heapAlloc(f))
			}
			s.mu.Unlock()
			cur := make([]pipeline.StageProgress, len(names))
			for i := range names {
				cur[i] = prev[i] // a process that did not answer this time keeps its last counts
				if now[i] != nil {
					cur[i] = *now[i]
				}
			}
			prev = cur
			// Validate reads only what the fetcher published: when the fetcher's /metrics
			// was missed (a short fetch publishes between two scrapes), validate's count
			// still says records were out.
			for _, sp := range cur {
				if sp.Name == pipeline.StageValidate {
					fetched = max(fetched, sp.In)
				}
			}
			samples = append(samples, sample{at: time.Since(t0), fetched: fetched, stages: cur})
			select {
			case <-s.done:
				s.result <- samples
				return
			case <-ctx.Done():
				s.result <- samples
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *scraper) stop() []sample {
	close(s.done)
	return <-s.result
}

// heapPeak is the largest Go heap seen of a process, by stage name.
func (s *scraper) heapPeak(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heap[name]
}

func (s *scraper) fetchCommits() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

// scrapeAll reads every stage's progress; an entry is nil where /metrics did not answer.
// It also returns the metric families read, by stage name.
func scrapeAll(stages []*child, names []string, topics schemas.Topics) ([]*pipeline.StageProgress, map[string]map[string]*dto.MetricFamily) {
	out := make([]*pipeline.StageProgress, len(stages))
	fams := map[string]map[string]*dto.MetricFamily{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, c := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := scrape(c.metrics)
			if err != nil {
				return
			}
			sp := pipeline.MetricsProgress(f, names[i], "", topics)
			mu.Lock()
			out[i], fams[names[i]] = &sp, f
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, fams
}

var scrapeClient = &http.Client{Timeout: 2 * time.Second}

// scrape reads a process's /metrics (the Prometheus text format).
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := scrapeClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return f, nil
}

// heapAlloc is a process's Go heap as its Go collector reports it.
func heapAlloc(f map[string]*dto.MetricFamily) int64 {
	for _, m := range f["go_memstats_heap_alloc_bytes"].GetMetric() {
		return int64(m.GetGauge().GetValue())
	}
	return 0
}

func counterSum(f *dto.MetricFamily) int64 {
	var n float64
	for _, m := range f.GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return int64(n)
}

// scrapedCommits are the sinks' table commits from their commit-time histograms,
// busiest first.
func scrapedCommits(families map[string]map[string]*dto.MetricFamily, names []string) []Commit {
	var out []Commit
	for _, name := range names {
		for _, m := range families[name]["fhirstream_stage_table_commit_seconds"].GetMetric() {
			c := Commit{Stage: name}
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" {
					c.Table = l.GetValue()
				}
			}
			h := m.GetHistogram()
			c.Commits, c.Seconds = int64(h.GetSampleCount()), h.GetSampleSum()
			c.MeanSeconds = c.Seconds / float64(max(c.Commits, 1))
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seconds > out[j].Seconds })
	return out
}
