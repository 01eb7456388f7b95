package validate_test

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

	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationKillValidate runs two 'fhirstream consume validate' processes in one
// group, SIGKILLs them at random points and restarts them, then checks that the valid
// and dead-letter topics hold every expected record exactly once (read_committed).
func TestIntegrationKillValidate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs for about a minute")
	}
	bin := filepath.Join(t.TempDir(), "fhirstream")
	build := exec.Command("go", "build", "-o", bin, "github.com/fhirstream/fhirstream/cmd/fhirstream")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	types := []string{"Patient", "Observation"}
	for _, typ := range types {
		c.CreateTopics(t, 4, topics.Raw(typ), topics.Valid(typ))
	}
	c.CreateTopics(t, 4, topics.DLQ())

	// The input is produced in chunks while the processes run and are killed, so the
	// kills land mid-stream: in a poll, a batch, or between produce and commit.
	const perType, badEvery, chunks = 3000, 10, 20
	cl := c.Client(t, kgo.ProducerLinger(5*time.Millisecond))
	wantValid, wantDead := map[string]bool{}, map[string]bool{}
	var recs []*kgo.Record
	for _, typ := range types {
		for i := range perType {
			id := fmt.Sprintf("%s-%05d", typ[:3], i)
			key := typ + "/" + id
			var v string
			switch {
			case i%badEvery == 0 && typ == "Patient":
				v = fmt.Sprintf(`{"resourceType":"Patient","id":%q,"birthDate":"1970-13-01"}`, id)
				wantDead[key] = true
			case i%badEvery == 0:
				v = fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":7}`, id)
				wantDead[key] = true
			case typ == "Patient":
				v = fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":"female","birthDate":"1970-01-01"}`, id)
				wantValid[key] = true
			default:
				v = fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/Pat-%05d"}}`, id, i)
				wantValid[key] = true
			}
			recs = append(recs, &kgo.Record{Topic: topics.Raw(typ), Key: []byte(key), Value: []byte(v)})
		}
	}
	produced := make(chan error, 1)
	go func() {
		ctx := context.Background()
		per := (len(recs) + chunks - 1) / chunks
		for i := 0; i < len(recs); i += per {
			if err := cl.ProduceSync(ctx, recs[i:min(i+per, len(recs))]...).FirstErr(); err != nil {
				produced <- err
				return
			}
			time.Sleep(400 * time.Millisecond)
		}
		produced <- nil
	}()

	seed := time.Now().UnixNano()
	t.Logf("kill schedule seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	logDir := t.TempDir()
	group := c.Group("validate")
	starts := 0
	start := func(instance string) *exec.Cmd {
		starts++
		logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("%s-%d.log", instance, starts)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "consume", "validate", "--brokers", c.Brokers[0], "--topic-prefix", c.Prefix,
			"--group", group, "--instance-id", instance, "--metrics-addr", "off", "--max-poll-records", "300", "--log-format", "json")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
		return cmd
	}
	procs := map[string]*exec.Cmd{"a": start("a"), "b": start("b")}
	for range 8 {
		time.Sleep(time.Duration(200+rng.IntN(1200)) * time.Millisecond)
		victim := []string{"a", "b"}[rng.IntN(2)]
		_ = procs[victim].Process.Kill() // SIGKILL: no cleanup, mid-batch
		_ = procs[victim].Wait()
		procs[victim] = start(victim)
	}

	if err := <-produced; err != nil {
		t.Fatalf("produce: %v", err)
	}
	validTopics := []string{topics.Valid("Patient"), topics.Valid("Observation")}
	deadline := time.Now().Add(3 * time.Minute)
	var valid, dead []*kgo.Record
	for {
		valid, dead = c.ReadAll(t, validTopics...), c.ReadAll(t, topics.DLQ())
		if len(valid) >= len(wantValid) && len(dead) >= len(wantDead) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Stop both gracefully, then read once more: nothing may have been added twice.
	for _, p := range procs {
		_ = p.Process.Signal(os.Interrupt)
		_ = p.Wait()
	}
	valid, dead = c.ReadAll(t, validTopics...), c.ReadAll(t, topics.DLQ())
	checkOnce(t, "valid", valid, wantValid)
	checkOnce(t, "dead-letter", dead, wantDead)
	for _, r := range dead {
		if dc, ok := deadletter.Parse(r.Headers); !ok || dc.Stage != "validate" || dc.Class != validate.ClassBadFormat {
			t.Fatalf("dead letter %s: %+v", r.Key, dc)
		}
	}
	t.Logf("%d valid and %d dead letters exactly once after %d process starts (logs in %s)", len(valid), len(dead), starts, logDir)
}

func checkOnce(t *testing.T, what string, recs []*kgo.Record, want map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Key)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s: %s appears %d times", what, k, n)
		}
		if !want[k] {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
	missing := 0
	for k := range want {
		if seen[k] == 0 {
			missing++
		}
	}
	if missing > 0 || t.Failed() {
		t.Fatalf("%s: %d records, %d distinct, %d missing of %d", what, len(recs), len(seen), missing, len(want))
	}
}
