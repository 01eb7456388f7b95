// Package stagekill is the harness of the stages' kill tests: it builds the fhirstream
// binary, runs one stage as two OS processes in one consumer group, produces the test's
// input in chunks while SIGKILLing one process or the other at random moments (a poll,
// a batch, between produce and commit) and restarting it with the same command. The
// test then checks its output topics hold every expected record exactly once.
package stagekill

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/testkafka"
)

// Config is one kill run.
type Config struct {
	// Stage is the `fhirstream consume` subcommand, e.g. "validate".
	Stage string
	// Input is produced in Chunks chunks, 400 ms apart, while the processes run.
	Input  []*kgo.Record
	Chunks int
	// Kills is how many SIGKILLs to deliver, each after 200–1400 ms.
	Kills int
	// ProducerOpts are added to the input producer's options (e.g. a partitioner).
	ProducerOpts []kgo.Opt
	// Args are the stage's own flags, after the common ones (brokers, prefix, group,
	// instance, logs). Default: --max-poll-records 300, small transactions.
	Args []string
	// AfterKill, when set, is called after kill number n (from 1) was delivered and the
	// process restarted (e.g. to restart a service the stage depends on).
	AfterKill func(n int)
}

// Run is a kill run under way; Stop ends it.
type Run struct {
	procs map[string]*exec.Cmd
	// Starts counts process starts (2 + Kills); LogDir holds each one's log.
	Starts int
	LogDir string
}

// Start builds the binary, starts two instances of the stage, produces the input and
// delivers the kills; it returns once all input is produced and every kill delivered,
// with both instances running. It skips the test under -short.
func Start(t testing.TB, c *testkafka.Cluster, cfg Config) *Run {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs for about a minute")
	}
	bin := filepath.Join(t.TempDir(), "fhirstream")
	build := exec.Command("go", "build", "-o", bin, "github.com/fhirstream/fhirstream/cmd/fhirstream")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	opts := append([]kgo.Opt{kgo.ProducerLinger(5 * time.Millisecond),
		kgo.UnknownTopicRetries(-1), kgo.RecordDeliveryTimeout(time.Minute)}, cfg.ProducerOpts...)
	cl := c.Client(t, opts...)
	produced := make(chan error, 1)
	go func() {
		ctx := context.Background()
		per := (len(cfg.Input) + cfg.Chunks - 1) / cfg.Chunks
		for i := 0; i < len(cfg.Input); i += per {
			if err := cl.ProduceSync(ctx, cfg.Input[i:min(i+per, len(cfg.Input))]...).FirstErr(); err != nil {
				produced <- err
				return
			}
			time.Sleep(400 * time.Millisecond) // spreads the input over the kills, by design
		}
		produced <- nil
	}()

	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	logDir := t.TempDir()
	group := c.Group(cfg.Stage)
	starts := 0
	start := func(instance string) *exec.Cmd {
		starts++
		logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("%s-%d.log", instance, starts)))
		if err != nil {
			t.Fatal(err)
		}
		args := cfg.Args
		if args == nil {
			args = []string{"--max-poll-records", "300"}
		}
		cmd := exec.Command(bin, append([]string{"consume", cfg.Stage, "--brokers", c.Brokers[0], "--topic-prefix", c.Prefix,
			"--group", group, "--instance-id", instance, "--metrics-addr", "off", "--log-format", "json"},
			args...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
		return cmd
	}
	r := &Run{LogDir: logDir, procs: map[string]*exec.Cmd{"a": start("a"), "b": start("b")}}
	for n := range cfg.Kills {
		time.Sleep(time.Duration(200+rng.IntN(1200)) * time.Millisecond)
		victim := []string{"a", "b"}[rng.IntN(2)]
		_ = r.procs[victim].Process.Kill() // SIGKILL: no cleanup, mid-batch
		_ = r.procs[victim].Wait()
		r.procs[victim] = start(victim)
		if cfg.AfterKill != nil {
			cfg.AfterKill(n + 1)
		}
	}
	if err := <-produced; err != nil {
		t.Fatalf("produce: %v", err)
	}
	r.Starts = starts
	return r
}

// Stop stops both instances gracefully (SIGINT) and waits for them.
func (r *Run) Stop() {
	for _, p := range r.procs {
		_ = p.Process.Signal(os.Interrupt)
		_ = p.Wait()
	}
}
