package producer_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationFetchKill runs `fhirstream fetch` as a subprocess, SIGKILLs it at random
// points, restarts it with the same command, and checks that the raw topics then hold
// every source line exactly once. FHIRSTREAM_KILL_PATIENTS sets the export size; the
// default is the acceptance size, 1,000 patients, on a real broker and 100 on kfake, whose
// in-process broker (often under -race) would make the big run slow without proving more.
func TestIntegrationFetchKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a multi-process export")
	}
	patients := 100
	if testkafka.Real() {
		patients = 1000
	}
	if v := os.Getenv("FHIRSTREAM_KILL_PATIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("FHIRSTREAM_KILL_PATIENTS=%q: want a positive number", v)
		}
		patients = n
	}
	// Kills land anywhere in a run's first maxKillDelay; a bigger export runs longer, so
	// the window grows with it and the kills fall at early, middle and late points.
	maxKillDelay := time.Duration(max(1500, 6*patients)) * time.Millisecond
	bin := filepath.Join(t.TempDir(), "fhirstream")
	build := exec.Command("go", "build", "-o", bin, "../cmd/fhirstream")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	srv, err := ehrsim.New(ehrsim.Config{Synth: patients, Seed: 7, ResourcesPerFile: 5000,
		Faults: ehrsim.Faults{TruncateDownloads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := testkafka.New(t)
	logDir := t.TempDir()
	logPath := func(i int) string { return filepath.Join(logDir, "run"+strconv.Itoa(i)+".log") }
	runLog := func(i int) []byte {
		b, _ := os.ReadFile(logPath(i))
		return b
	}
	run := func(i int) *exec.Cmd {
		cmd := exec.Command(bin, "fetch", srv.URL, "--token-url", "none", "--min-poll", "10ms",
			"--commit-bytes", "1000000", "--commit-interval", "100ms", "--manifest-dir", "", "--partitions", "3")
		cmd.Env = append(os.Environ(), "FHIRSTREAM_BROKERS="+c.Brokers[0], "FHIRSTREAM_TOPIC_PREFIX="+c.Prefix,
			"FHIRSTREAM_LOG_FORMAT=text")
		logf, _ := os.Create(logPath(i))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kills := 0
	for i := 0; ; i++ {
		cmd := run(i)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if kills < 4 {
			delay := 200*time.Millisecond + rand.N(maxKillDelay)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run %d failed: %v\n%s", i, err, runLog(i))
				}
				t.Logf("run %d finished before its kill", i)
				goto check
			case <-time.After(delay):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-done
				kills++
				// A run can finish the export and commit it, and print its summary, and
				// still be killed on its way out. The export is then complete: a further
				// fetch rightly starts a new one, which would publish everything again.
				if bytes.Contains(runLog(i), []byte("reconciliation: OK")) {
					t.Logf("run %d completed the export before its kill after %v landed", i, delay)
					goto check
				}
				t.Logf("run %d killed after %v", i, delay)
				continue
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("final run failed: %v\n%s", err, runLog(i))
			}
		case <-time.After(5 * time.Minute):
			_ = cmd.Process.Kill()
			t.Fatal("final run did not finish in 5 minutes")
		}
		t.Logf("final run:\n%s", runLog(i))
		break
	}
check:
	want := sourceCounts(srv)
	got := readLanded(t, c, keys(want))
	for typ, n := range want {
		if got.byType[typ] != n {
			t.Errorf("%s: %d records, source has %d", typ, got.byType[typ], n)
		}
	}
	if len(got.dead) != 0 {
		t.Errorf("%d unexpected dead letters", len(got.dead))
	}
	if t.Failed() {
		// What the killed runs did and what the state topic holds are what explain a
		// duplicate or a gap; the final run's log is above.
		for i := range kills {
			t.Logf("run %d (killed), last lines:\n%s", i, lastLines(runLog(i), 25))
		}
		for _, r := range c.ReadAll(t, schemas.MustTopics(c.Prefix).State("fetcher")) {
			t.Logf("state %s: %.160s", recordAt(r), r.Value)
		}
	}
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
