package bench

// Report is what a run measured; its JSON form is `fhirstream bench --output json`.
type Report struct {
	Patients    int    `json:"patients"`
	Generated   int64  `json:"generated_resources"`
	Broker      string `json:"broker"`
	TopicPrefix string `json:"topic_prefix"`
	Partitions  int32  `json:"partitions"`
	Auth        bool   `json:"smart_auth"`
	// Mode is ModeInProcess or ModeProcesses.
	Mode    string `json:"mode"`
	Started string `json:"started"`

	EndToEndSeconds    float64 `json:"end_to_end_seconds"`
	Resources          int64   `json:"resources"`
	ResourcesPerSecond float64 `json:"resources_per_second"`
	NDJSONBytes        int64   `json:"ndjson_bytes"`
	MBPerSecond        float64 `json:"mb_per_second"`

	Stages []Stage `json:"stages"`
	// Commits are the lake sinks' table commits: per table, how many and what they cost.
	Commits []Commit `json:"table_commits"`
	Memory  Memory   `json:"memory"`
	CPU     CPU      `json:"cpu"`
	Host    Host     `json:"machine"`

	Profile    string   `json:"cpu_profile,omitempty"`
	Consistent bool     `json:"consistent"`
	Mismatches []string `json:"mismatches,omitempty"`
	Kept       string   `json:"kept,omitempty"`
}

// Modes of a run.
const (
	ModeInProcess = "in-process"
	ModeProcesses = "processes"
)

// Stage is one stage's (or the fetcher's) figures.
type Stage struct {
	Name        string `json:"name"`
	RecordsIn   int64  `json:"records_in"`
	RecordsOut  int64  `json:"records_out"`
	DeadLetters int64  `json:"dead_letters"`
	// Batches are committed batches (transactions); fetch: checkpoint commits, -1 when
	// not known (processes mode, the fetcher's /metrics never read after a commit).
	Batches          int64   `json:"batches"`
	StartSeconds     float64 `json:"start_seconds"` // after kickoff
	EndSeconds       float64 `json:"end_seconds"`
	ActiveSeconds    float64 `json:"active_seconds"`
	RecordsPerSecond float64 `json:"records_per_second"`
	// BytesIn is -1 where it was not measured (processes mode).
	BytesIn     int64   `json:"bytes_in"`
	MBPerSecond float64 `json:"mb_per_second"`
	// CPUSeconds is the stage's CPU during the run: in-process, the CPU profile's
	// seconds labelled with the stage (with a profile only); in processes mode, its
	// process's user and system time from kickoff to drained.
	CPUSeconds       float64 `json:"cpu_seconds,omitempty"`
	RecordsPerCPUSec float64 `json:"records_per_cpu_second,omitempty"`
	TopFunctions     []FnCPU `json:"top_functions,omitempty"`
	// Process is the stage's OS process, in processes mode.
	Process *Process `json:"process,omitempty"`
}

// Process is a stage's (or the fetcher's) OS process in processes mode.
type Process struct {
	PID int `json:"pid"`
	// PeakRSSBytes is the process's peak resident set size over its whole life, start-up
	// and shutdown included (getrusage ru_maxrss, read when it has exited).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// GoHeapPeakBytes is the largest Go heap (objects live and not yet swept,
	// go_memstats_heap_alloc_bytes) its /metrics showed during the run: what the peak
	// RSS is made of besides the garbage collector's headroom (GOGC) and the runtime.
	GoHeapPeakBytes int64 `json:"go_heap_peak_bytes"`
	// CPUSeconds is user plus system time from kickoff to drained.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUMicrosPerResource is CPUSeconds per resource fetched: the process's share of
	// the pipeline's CPU cost per resource, comparable across stages.
	CPUMicrosPerResource float64 `json:"cpu_us_per_resource"`
	// Env is what the process was given beyond the environment of the bench (GOGC,
	// GOMEMLIMIT).
	Env []string `json:"env,omitempty"`
}

// Commit is one lake table's commits during the run.
type Commit struct {
	Stage       string  `json:"stage"`
	Table       string  `json:"table"`
	Commits     int64   `json:"commits"`
	MeanSeconds float64 `json:"mean_seconds"` // files written, catalog commit and retries
	Seconds     float64 `json:"seconds"`
}

// FnCPU is a function's flat CPU time in a stage.
type FnCPU struct {
	Function string  `json:"function"`
	Seconds  float64 `json:"flat_seconds"`
	Share    float64 `json:"flat_share"` // of the stage's CPU
}

// Memory is the bench process's memory; in processes mode each stage's process
// reports its own (Stage.Process).
type Memory struct {
	MaxRSSBytes      int64 `json:"max_rss_bytes"`       // getrusage ru_maxrss: the process's peak, setup included
	GoHeapPeakBytes  int64 `json:"go_heap_peak_bytes"`  // heap objects, live and not yet swept, sampled
	GoTotalPeakBytes int64 `json:"go_total_peak_bytes"` // all memory the Go runtime mapped, sampled
}

// CPU is the CPU time spent during the run (kickoff to drained).
type CPU struct {
	Cores       int     `json:"cores"`
	WallSeconds float64 `json:"wall_seconds"` // kickoff to drained
	// ProcessSeconds is fhirstream's CPU: in-process, this process (user+system); in
	// processes mode, the sum of the stage and fetcher processes.
	ProcessSeconds float64 `json:"process_seconds"`
	// GCSeconds is the Go GC's share of ProcessSeconds (runtime/metrics estimate).
	GCSeconds float64 `json:"gc_seconds"`
	// HarnessSeconds is, in processes mode, the bench process itself: the EHR
	// simulator serving the export, sampling, waiting; not part of a deployment.
	HarnessSeconds float64            `json:"harness_seconds,omitempty"`
	BrokerSeconds  float64            `json:"broker_seconds,omitempty"`
	MachineBusy    float64            `json:"machine_busy_seconds"` // all CPUs, from /proc/stat
	OtherSeconds   float64            `json:"other_seconds"`        // busy time of everything else on the machine
	ByLabel        map[string]float64 `json:"profile_seconds_by_label,omitempty"`
}

// MicrosPerResource returns fhirstream's and the broker's CPU per resource.
func (r *Report) MicrosPerResource() (fhirstream, broker float64) {
	if r.Resources <= 0 {
		return 0, 0
	}
	n := float64(r.Resources)
	return 1e6 * r.CPU.ProcessSeconds / n, 1e6 * r.CPU.BrokerSeconds / n
}

// Host is the machine the run was on.
type Host struct {
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
