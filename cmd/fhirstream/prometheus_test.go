package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// metricsReaders are the files that name fhirstream's metrics for someone else to query:
// the alert rules and their tests, the dashboard, the docs.
var metricsReaders = []string{
	"../../deploy/prometheus", "../../deploy/grafana", "../../deploy/README.md", "../../README.md", "../../docs",
}

var metricName = regexp.MustCompile(`fhirstream_[a-z0-9_]*[a-z0-9]`)

// notMetrics are names of that shape the docs use for other things.
var notMetrics = map[string]bool{
	"fhirstream_lake": true, // docker compose's volume of the lake
}

// TestQueriedMetricsExist: every fhirstream_* metric that the alert rules, the dashboard
// and the docs name is a metric the code defines, so renaming one cannot leave an alert
// that never fires. The oracle is the source text, not a registry: the metrics register
// lazily, and a name is defined where it is written as a string literal in a non-test
// Go file. A histogram's series (_bucket, _count, _sum) name the histogram.
func TestQueriedMetricsExist(t *testing.T) {
	defined := map[string]bool{}
	literal := regexp.MustCompile(`"(fhirstream_[a-z0-9_]+)"`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllSubmatch(b, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := map[string][]string{} // metric → files naming it
	for _, root := range metricsReaders {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			switch filepath.Ext(path) {
			case ".yml", ".yaml", ".json", ".md":
			default:
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range metricName.FindAll(b, -1) {
				name := string(m)
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if base := strings.TrimSuffix(name, suffix); base != name && defined[base] {
						name = base
					}
				}
				named[name] = append(named[name], path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(named) < 15 {
		t.Fatalf("only %d metric names found in %v: did the rules or the dashboard move?", len(named), metricsReaders)
	}
	var missing []string
	for name, files := range named {
		if !defined[name] && !notMetrics[name] {
			slices.Sort(files)
			missing = append(missing, name+" (in "+strings.Join(slices.Compact(files), ", ")+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("no metric called %s", m)
	}
}

// TestPrometheusConfigAndRules runs promtool over the Prometheus configuration, the
// alert and recording rules and their unit tests (deploy/prometheus/tests), as
// deploy/README.md tells an operator to. Without promtool on the PATH it skips, unless
// FHIRSTREAM_TEST_PROMTOOL=require (CI, which installs Debian's prometheus package).
// prometheus-kubernetes.yml is not checked: Debian builds promtool without Kubernetes
// service discovery, so it rejects kubernetes_sd_configs.
func TestPrometheusConfigAndRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("FHIRSTREAM_TEST_PROMTOOL") == "require" {
			t.Fatal("promtool is not on the PATH and FHIRSTREAM_TEST_PROMTOOL=require")
		}
		t.Skip("promtool is not on the PATH (Debian: apt-get install prometheus)")
	}
	rules, err := filepath.Glob("../../deploy/prometheus/rules/*.yml")
	if err != nil || len(rules) == 0 {
		t.Fatalf("no rule files under deploy/prometheus/rules (%v)", err)
	}
	tests, err := filepath.Glob("../../deploy/prometheus/tests/*.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests under deploy/prometheus/tests (%v)", err)
	}
	for _, args := range [][]string{
		{"check", "config", "../../deploy/prometheus/prometheus.yml"},
		append([]string{"check", "rules"}, rules...),
		append([]string{"test", "rules"}, tests...),
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
