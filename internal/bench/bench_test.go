package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/pipeline"
)

// progress builds a sample's stage list in data-flow order from in/out counts.
func progress(counts map[string][2]int64) []pipeline.StageProgress {
	var out []pipeline.StageProgress
	for _, name := range []string{pipeline.StageValidate, pipeline.StageDedupe, pipeline.StageOMOP,
		pipeline.StageSinkBronze, pipeline.StageSinkSilver, pipeline.StageSinkOMOP} {
		c := counts[name]
		out = append(out, pipeline.StageProgress{Name: name, In: c[0], Out: c[1], BytesIn: -1, BytesOut: -1})
	}
	return out
}

// TestStageFigures checks a stage's start (the last sample before its input appeared),
// end (the first sample at its final count) and rate, on hand-made samples.
func TestStageFigures(t *testing.T) {
	s := func(ms int, fetched int64, counts map[string][2]int64) sample {
		return sample{at: time.Duration(ms) * time.Millisecond, fetched: fetched, stages: progress(counts)}
	}
	samples := []sample{
		s(0, 0, nil),
		s(100, 0, nil),
		s(200, 50, nil), // validate's input appears: validate starts at 100 ms
		s(300, 100, map[string][2]int64{pipeline.StageValidate: {60, 60}}), // dedupe's appears: starts at 200 ms
		s(400, 100, map[string][2]int64{pipeline.StageValidate: {100, 100}, pipeline.StageDedupe: {100, 90}}),
		s(500, 100, map[string][2]int64{pipeline.StageValidate: {100, 100}, pipeline.StageDedupe: {100, 90},
			pipeline.StageOMOP: {90, 120}, pipeline.StageSinkBronze: {90, 90}, pipeline.StageSinkSilver: {90, 90}, pipeline.StageSinkOMOP: {120, 120}}),
	}
	got := stageFigures(fetchFigures{read: 100, published: 100, bytes: 1000, commits: 2, end: 250 * time.Millisecond}, samples)
	by := map[string]Stage{}
	for _, st := range got {
		by[st.Name] = st
	}
	if len(got) != 7 || got[0].Name != LabelFetch {
		t.Fatalf("stages %+v", got)
	}
	for _, c := range []struct {
		name       string
		start, end float64
	}{
		{pipeline.StageValidate, 0.1, 0.4},
		{pipeline.StageDedupe, 0.2, 0.4},
		{pipeline.StageOMOP, 0.3, 0.5},     // dedupe's output appeared at 400, the last sample without it 300
		{pipeline.StageSinkOMOP, 0.4, 0.5}, // omop's output appeared at 500
	} {
		st := by[c.name]
		if !near(st.StartSeconds, c.start) || !near(st.EndSeconds, c.end) || !near(st.ActiveSeconds, c.end-c.start) {
			t.Errorf("%s: start %.3f end %.3f active %.3f, want %.3f to %.3f", c.name, st.StartSeconds, st.EndSeconds, st.ActiveSeconds, c.start, c.end)
		}
		if !near(st.RecordsPerSecond, float64(st.RecordsIn)/st.ActiveSeconds) {
			t.Errorf("%s: %.1f records/s for %d in %.3f s", c.name, st.RecordsPerSecond, st.RecordsIn, st.ActiveSeconds)
		}
	}
	if f := by[LabelFetch]; f.RecordsOut != 100 || !near(f.ActiveSeconds, 0.25) || !near(f.MBPerSecond, 1000/0.25/1e6) {
		t.Errorf("fetch %+v", f)
	}
	if by[pipeline.StageValidate].BytesIn != -1 || by[pipeline.StageValidate].MBPerSecond != 0 {
		t.Errorf("validate's bytes were not measured, yet %+v", by[pipeline.StageValidate])
	}
}

func TestMismatches(t *testing.T) {
	good := progress(map[string][2]int64{pipeline.StageValidate: {10, 9}, pipeline.StageDedupe: {9, 8},
		pipeline.StageOMOP: {8, 12}, pipeline.StageSinkBronze: {8, 8}, pipeline.StageSinkSilver: {8, 8}, pipeline.StageSinkOMOP: {12, 12}})
	if bad := mismatches(10, 10, good); len(bad) != 0 {
		t.Fatalf("consistent counts reported as %v", bad)
	}
	lost := slices.Clone(good)
	lost[5].In = 11 // sink-omop read one row fewer than omop wrote
	bad := mismatches(11, 10, lost)
	if len(bad) != 2 || !strings.Contains(bad[0], "fetched vs generated") || !strings.Contains(bad[1], "sink-omop in vs omop out: 11, want 12") {
		t.Fatalf("mismatches %v", bad)
	}
}

// TestKafkaArgsKeepSecretsOutOfTheCommandLine: a child process gets the cluster by
// flags, and a password or client secret only through its environment.
func TestKafkaArgsKeepSecretsOutOfTheCommandLine(t *testing.T) {
	kc := kafkaclient.Defaults()
	kc.Brokers = []string{"b1:9092", "b2:9092"}
	kc.TopicPrefix, kc.ClientID = "p-bench-x", "fhirstream-bench"
	kc.SASLMechanism, kc.SASLUser, kc.SASLPassword = "SCRAM-SHA-512", "svc", "hunter2"
	kc.OAuthClientSecret = "s3cret"
	kc.TLS, kc.TLSCAFile = true, "/ca.pem"
	args, env := kafkaArgs(kc, "dedupe")
	line := strings.Join(args, " ")
	for _, want := range []string{"--brokers b1:9092,b2:9092", "--topic-prefix p-bench-x", "--client-id fhirstream-bench-dedupe",
		"--sasl-mechanism SCRAM-SHA-512", "--sasl-user svc", "--tls-ca /ca.pem", "--tls"} {
		if !strings.Contains(line, want) {
			t.Errorf("args %q lack %q", line, want)
		}
	}
	if strings.Contains(line, "hunter2") || strings.Contains(line, "s3cret") {
		t.Errorf("a secret is on the command line: %q", line)
	}
	if !slices.Contains(env, "FHIRSTREAM_SASL_PASSWORD=hunter2") || !slices.Contains(env, "FHIRSTREAM_SASL_OAUTH_CLIENT_SECRET=s3cret") {
		t.Errorf("environment %q lacks the secrets", env)
	}
}

func TestScrapedCommitsAndHeap(t *testing.T) {
	hist := func(table string, n uint64, sum float64) *dto.Metric {
		return &dto.Metric{Label: []*dto.LabelPair{{Name: ptr("stage"), Value: ptr("sink-omop")},
			{Name: ptr("table"), Value: ptr(table)}},
			Histogram: &dto.Histogram{SampleCount: ptr[uint64](n), SampleSum: ptr[float64](sum)}}
	}
	fams := map[string]map[string]*dto.MetricFamily{
		pipeline.StageSinkOMOP: {
			"fhirstream_stage_table_commit_seconds": {Metric: []*dto.Metric{hist("omop.person", 2, 0.5), hist("omop.measurement", 4, 3)}},
			"go_memstats_heap_alloc_bytes":          {Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: ptr[float64](123e6)}}}},
		},
	}
	got := scrapedCommits(fams, []string{pipeline.StageValidate, pipeline.StageSinkOMOP})
	if len(got) != 2 || got[0].Table != "omop.measurement" || got[0].Commits != 4 || !near(got[0].MeanSeconds, 0.75) || got[1].Table != "omop.person" {
		t.Fatalf("commits %+v", got)
	}
	if h := heapAlloc(fams[pipeline.StageSinkOMOP]); h != 123e6 {
		t.Fatalf("heap %d", h)
	}
	if h := heapAlloc(nil); h != 0 {
		t.Fatalf("heap of nothing %d", h)
	}
}

func TestCountLines(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"Patient.ndjson": "{\"a\":1}\n{\"a\":2}\n\n", "Observation.ndjson": "{}\n  \n{}", "notes.txt": "x\ny\n"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lines, size, err := countLines(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(files["Patient.ndjson"]) + len(files["Observation.ndjson"])); lines != 4 || size != want {
		t.Fatalf("%d lines, %d bytes; want 4 and %d", lines, size, want)
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Patients: 0, Partitions: 1}, "--patients"},
		{Options{Patients: 1, Partitions: 0}, "--partitions"},
		{Options{Patients: 1, Partitions: 1, Auth: true}, "client key"},
		{Options{Patients: 1, Partitions: 1, Processes: true}, "binary"},
		{Options{Patients: 1, Partitions: 1, Processes: true, Executable: "x", CPUProfileDir: "d"}, "--cpuprofile-dir"},
		{Options{Patients: 1, Partitions: 1, StageEnv: map[string][]string{"omop": {"GOGC=50"}}}, "--processes"},
		{Options{Patients: 1, Partitions: 1, Processes: true, Executable: "x", ProcessEnv: []string{"GOGC"}}, "--process-env"},
		{Options{Patients: 1, Partitions: 1, Processes: true, Executable: "x", ProcessEnv: []string{"=50"}}, "--process-env"},
	} {
		if err := c.o.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %s", c.o, err, c.want)
		}
	}
	o := Options{Patients: 1, Partitions: 1}
	if err := o.check(); err != nil || o.Timeout != 30*time.Minute || o.Logger == nil {
		t.Fatalf("defaults: %v, %+v", err, o)
	}
}

func TestParseStageEnv(t *testing.T) {
	env, err := ParseStageEnv([]string{"omop:GOGC=50", "fetch:GOMEMLIMIT=1GiB", "omop:A=b=c"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(env); got != "map[fetch:[GOMEMLIMIT=1GiB] omop:[GOGC=50 A=b=c]]" {
		t.Errorf("got %s", got)
	}
	for _, bad := range []string{"GOGC=50", "omop:GOGC", ":GOGC=1", "omop:=1"} {
		if _, err := ParseStageEnv([]string{bad}); err == nil || !strings.Contains(err.Error(), "--stage-env") {
			t.Errorf("%q: %v, want an error about --stage-env", bad, err)
		}
	}
	if env, err := ParseStageEnv(nil); env != nil || err != nil {
		t.Errorf("none: %v, %v", env, err)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func ptr[T any](v T) *T { return &v }
