package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/internal/bench"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationBench runs `fhirstream bench` on a handful of patients (on kfake, or on
// the broker in FHIRSTREAM_TEST_BROKERS) and checks that its report is consistent with
// the generated input and with itself, and that the CPU profile splits by stage.
func TestIntegrationBench(t *testing.T) {
	const patients, seed = 4, 7
	profDir := t.TempDir()
	args := []string{"bench", "--patients", "4", "--seed", "7", "--partitions", "3", "--output", "json",
		"--sink-flush-interval", "200ms", "--cpuprofile-dir", profDir, "--log-level", "warn"}
	brokers := os.Getenv("FHIRSTREAM_TEST_BROKERS")
	if brokers != "" {
		args = append(args, "--brokers", brokers)
	}
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs(args)
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bench --output json printed no JSON report: %v\n%s", err, out.String())
	}

	// The input, counted independently of the pipeline.
	var generated, lineBytes int64
	err := synth.Generate(context.Background(), synth.Config{Patients: patients, Seed: seed}, func(_ string, line []byte) error {
		generated++
		lineBytes += int64(len(line))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Generated != generated || rep.Resources != generated {
		t.Fatalf("report: generated %d, fetched %d resources; synth generates %d", rep.Generated, rep.Resources, generated)
	}
	if !rep.Consistent || len(rep.Mismatches) > 0 {
		t.Fatalf("report not consistent: %v", rep.Mismatches)
	}

	// Each stage read exactly what its upstream committed, and the figures follow from
	// the counts and times the report gives.
	want := append([]string{bench.LabelFetch}, pipeline.Stages(schemas.TopologyOptions{})...)
	if len(rep.Stages) != len(want) {
		t.Fatalf("stages %+v, want %v", rep.Stages, want)
	}
	by := map[string]bench.Stage{}
	for i, s := range rep.Stages {
		if s.Name != want[i] {
			t.Fatalf("stage %d is %q, want %q", i, s.Name, want[i])
		}
		by[s.Name] = s
		if s.RecordsIn <= 0 || s.ActiveSeconds <= 0 || s.EndSeconds > rep.EndToEndSeconds+1e-9 || s.StartSeconds > s.EndSeconds {
			t.Errorf("stage %s: %d records in, active %.3fs from %.3fs to %.3fs, end to end %.3fs",
				s.Name, s.RecordsIn, s.ActiveSeconds, s.StartSeconds, s.EndSeconds, rep.EndToEndSeconds)
		}
		if !near(s.RecordsPerSecond, float64(s.RecordsIn)/s.ActiveSeconds) {
			t.Errorf("stage %s: %.1f records/s, but %d records in %.3fs", s.Name, s.RecordsPerSecond, s.RecordsIn, s.ActiveSeconds)
		}
		if s.BytesIn <= 0 {
			t.Errorf("stage %s: %d bytes in", s.Name, s.BytesIn)
		}
	}
	flow := []struct {
		what     string
		got, exp int64
	}{
		{"fetch in", by["fetch"].RecordsIn, generated},
		{"validate in", by[pipeline.StageValidate].RecordsIn, generated},
		{"dedupe in", by[pipeline.StageDedupe].RecordsIn, by[pipeline.StageValidate].RecordsOut},
		{"omop in", by[pipeline.StageOMOP].RecordsIn, by[pipeline.StageDedupe].RecordsOut},
		{"sink-bronze in", by[pipeline.StageSinkBronze].RecordsIn, by[pipeline.StageDedupe].RecordsOut},
		{"sink-omop in", by[pipeline.StageSinkOMOP].RecordsIn, by[pipeline.StageOMOP].RecordsOut},
	}
	for _, f := range flow {
		if f.got != f.exp {
			t.Errorf("%s: %d, want %d", f.what, f.got, f.exp)
		}
	}
	// Raw records carry each NDJSON line as their value (plus a key).
	if v := by[pipeline.StageValidate].BytesIn; v < lineBytes {
		t.Errorf("validate read %d bytes, less than the %d bytes of the generated lines", v, lineBytes)
	}
	if !near(rep.ResourcesPerSecond, float64(rep.Resources)/rep.EndToEndSeconds) {
		t.Errorf("%.1f resources/s end to end, but %d resources in %.3fs", rep.ResourcesPerSecond, rep.Resources, rep.EndToEndSeconds)
	}
	if rep.Memory.MaxRSSBytes <= 0 || rep.Memory.GoHeapPeakBytes <= 0 || rep.Memory.GoTotalPeakBytes < rep.Memory.GoHeapPeakBytes {
		t.Errorf("memory %+v", rep.Memory)
	}
	if rep.CPU.ProcessSeconds <= 0 || rep.Host.CPUs <= 0 {
		t.Errorf("cpu %+v, machine %+v", rep.CPU, rep.Host)
	}

	// The profile: labels are stage names, and each per-stage file holds only its stage.
	if rep.Profile != filepath.Join(profDir, "cpu.pprof") {
		t.Fatalf("profile at %q, want in %s", rep.Profile, profDir)
	}
	known := map[string]bool{bench.LabelEHR: true, bench.LabelBroker: true, bench.LabelBench: true}
	for _, s := range want {
		known[s] = true
	}
	for label := range rep.CPU.ByLabel {
		if strings.HasPrefix(label, "(") {
			continue
		}
		if !known[label] {
			t.Errorf("profile label %q is no stage of the run", label)
		}
		one := readProfile(t, filepath.Join(profDir, "cpu-"+label+".pprof"))
		for _, s := range one.Sample {
			if !s.HasLabel(pipeline.ProfileLabel, label) {
				t.Fatalf("cpu-%s.pprof holds a sample labelled %v", label, s.Label)
			}
		}
	}
	readProfile(t, rep.Profile)

	// The table form shows every stage and the verdict.
	var table bytes.Buffer
	if err := rep.WriteText(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range want {
		if !strings.Contains(table.String(), " "+s+"  ") {
			t.Errorf("table lacks stage %s:\n%s", s, table.String())
		}
	}
	if !strings.Contains(table.String(), "counts consistent") {
		t.Errorf("table lacks the consistency verdict:\n%s", table.String())
	}

	// On a real broker, the run's topics and groups are gone afterwards.
	if brokers != "" {
		kc := kafkaclient.Defaults()
		kc.Brokers = strings.Split(brokers, ",")
		cl, err := kc.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		topics, err := adm.ListTopics(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for name := range topics {
			if strings.HasPrefix(name, rep.TopicPrefix+".") {
				t.Errorf("topic %s left behind", name)
			}
		}
		groups, err := adm.ListGroups(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups.Groups() {
			if strings.HasPrefix(g, rep.TopicPrefix+"-") {
				t.Errorf("group %s left behind", g)
			}
		}
	}
}

func TestBenchRejectsBadOptions(t *testing.T) {
	for flag, args := range map[string][]string{
		"--patients":    {"--patients", "0"},
		"--output":      {"--output", "xml"},
		"--partitions":  {"--partitions", "0"},
		"--stage-env":   {"--processes", "--stage-env", "GOGC=50"},
		"--process-env": {"--processes", "--process-env", "GOGC"},
	} {
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"bench"}, args...))
		if err := root.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("bench %v: error %v, want one about %s", args, err, flag)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func readProfile(t *testing.T, path string) *profile.Profile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

// TestIntegrationBenchProcesses runs `fhirstream bench --processes` from the built binary
// (on kfake, or on the broker in FHIRSTREAM_TEST_BROKERS): the fetcher and every stage
// run as processes of their own, and the report gives each one's CPU and peak memory
// beside counts that add up.
func TestIntegrationBenchProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts eight processes")
	}
	const patients, seed = 4, 7
	bin := filepath.Join(t.TempDir(), "fhirstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	args := []string{"bench", "--processes", "--patients", "4", "--seed", "7", "--partitions", "3", "--output", "json",
		"--sink-flush-interval", "200ms", "--log-level", "warn",
		"--process-env", "GOGC=150", "--stage-env", "omop:GOMEMLIMIT=200MiB"}
	if brokers := os.Getenv("FHIRSTREAM_TEST_BROKERS"); brokers != "" {
		args = append(args, "--brokers", brokers)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench --processes: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	var rep bench.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("no JSON report: %v\n%s", err, out)
	}
	var generated int64
	if err := synth.Generate(context.Background(), synth.Config{Patients: patients, Seed: seed}, func(string, []byte) error {
		generated++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if rep.Mode != bench.ModeProcesses || !rep.Consistent || rep.Resources != generated {
		t.Fatalf("mode %s, consistent %v %v, %d resources; synth generates %d", rep.Mode, rep.Consistent, rep.Mismatches, rep.Resources, generated)
	}
	want := append([]string{bench.LabelFetch}, pipeline.Stages(schemas.TopologyOptions{})...)
	if len(rep.Stages) != len(want) {
		t.Fatalf("stages %+v, want %v", rep.Stages, want)
	}
	pids := map[int]string{os.Getpid(): "the test"}
	var cpu float64
	for i, s := range rep.Stages {
		if s.Name != want[i] {
			t.Fatalf("stage %d is %q, want %q", i, s.Name, want[i])
		}
		p := s.Process
		if p == nil {
			t.Fatalf("stage %s: no process", s.Name)
		}
		if other, dup := pids[p.PID]; dup || p.PID <= 0 {
			t.Errorf("stage %s: pid %d, also %s's", s.Name, p.PID, other)
		}
		pids[p.PID] = s.Name
		// A Go process with a Kafka client holds well over 10 MB resident; a peak of
		// several GB for four patients would be a leak.
		if p.PeakRSSBytes < 10<<20 || p.PeakRSSBytes > 2<<30 {
			t.Errorf("stage %s: peak RSS %d bytes", s.Name, p.PeakRSSBytes)
		}
		// Every stage's /metrics is read throughout the run; the fetcher's may be missed.
		if s.Name != bench.LabelFetch && (p.GoHeapPeakBytes <= 0 || p.GoHeapPeakBytes > p.PeakRSSBytes) {
			t.Errorf("stage %s: Go heap peak %d bytes, peak RSS %d", s.Name, p.GoHeapPeakBytes, p.PeakRSSBytes)
		}
		if p.CPUSeconds < 0 || s.CPUSeconds != p.CPUSeconds {
			t.Errorf("stage %s: CPU %.3f s, process %.3f s", s.Name, s.CPUSeconds, p.CPUSeconds)
		}
		if !near(p.CPUMicrosPerResource, 1e6*p.CPUSeconds/float64(rep.Resources)) {
			t.Errorf("stage %s: %.1f µs per resource, but %.3f s for %d", s.Name, p.CPUMicrosPerResource, p.CPUSeconds, rep.Resources)
		}
		env := strings.Join(p.Env, " ")
		if !strings.Contains(env, "GOGC=150") || strings.Contains(env, "GOMEMLIMIT") != (s.Name == pipeline.StageOMOP) {
			t.Errorf("stage %s: environment %q", s.Name, env)
		}
		if s.RecordsIn <= 0 || s.ActiveSeconds <= 0 || s.BytesIn == 0 {
			t.Errorf("stage %s: %d records in, active %.3fs, %d bytes in", s.Name, s.RecordsIn, s.ActiveSeconds, s.BytesIn)
		}
		cpu += p.CPUSeconds
	}
	if !near(rep.CPU.ProcessSeconds, cpu) || rep.CPU.ProcessSeconds <= 0 {
		t.Errorf("fhirstream CPU %.3f s, the processes' %.3f s", rep.CPU.ProcessSeconds, cpu)
	}
	var table bytes.Buffer
	if err := rep.WriteText(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "PEAK RSS MB") || !strings.Contains(table.String(), "counts consistent") {
		t.Errorf("table:\n%s", table.String())
	}
}
