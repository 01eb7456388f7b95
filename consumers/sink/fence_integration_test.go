package sink

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIntegrationSinkFencesZombie makes a zombie: member A holds an open batch when it is
// frozen (SIGSTOP) long enough for the group to expel it; member B takes its partitions,
// starts them from the tables' offsets and commits everything; then A is thawed and
// tries to commit its stale batch. The fence must refuse it (the tables' offsets are no
// longer those A started from), A must start again from the tables, and the lake must
// hold every row once. Without the fence A's commit doubles the first versions it held
// and moves the tables' offsets back.
func TestIntegrationSinkFencesZombie(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and freezes a member past its session timeout")
	}
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	var tps []string
	for _, tb := range killTables {
		tps = append(tps, topics.OMOP(tb.name))
	}
	c.CreateTopics(t, 3, append(tps, topics.DLQ())...)
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	events := killInput(rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5)), 120)
	recs := make([]*kgo.Record, len(events))
	for i, e := range events {
		recs[i] = killRecord(t, codec, topics, e)
	}
	want := killReference(events)

	bin := filepath.Join(t.TempDir(), "fhirstream")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fhirstream/fhirstream/cmd/fhirstream").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	lake := t.TempDir()
	group := c.Group("sink-fence")
	logs := t.TempDir()
	start := func(name, flush string) *exec.Cmd {
		logf, err := os.Create(filepath.Join(logs, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "consume", "sink-omop", "--brokers", strings.Join(c.Brokers, ","), "--topic-prefix", c.Prefix,
			"--group", group, "--out", lake, "--flush-interval", flush, "--flush-rows", "1000000",
			"--session-timeout", "6s", "--metrics-addr", "off", "--log-format", "json", "--log-level", "debug")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT); _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
		return cmd
	}
	logOf := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(logs, name+".log"))
		return string(b)
	}
	defer func() {
		if t.Failed() {
			t.Logf("A:\n%s\nB:\n%s", logOf("a"), logOf("b"))
		}
	}()
	cl := c.Client(t)
	half := len(recs) / 2

	// A takes the first half into a batch it will not commit for 25 s.
	a := start("a", "25s")
	waitLog(t, logOf, "a", "partitions assigned", len(killTables))
	if err := cl.ProduceSync(context.Background(), recs[:half]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A must hold them in an open batch when it is frozen: with none, it would have
	// nothing stale to commit when it wakes.
	waitLog(t, logOf, "a", "batch opened", 1)
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// B joins; the group expels the frozen A after its 6 s session timeout and gives B
	// every partition. B commits all of it quickly.
	b := start("b", "300ms")
	if err := cl.ProduceSync(context.Background(), recs[half:]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cat := openLake(t, lakehouse.Config{Out: lake})
	for _, kt := range killTables {
		l, _ := lakehouse.OMOPLayout(kt.name)
		waitAbsorbed(t, cat, l, group, endOffsets(t, c, topics.OMOP(kt.name)))
	}
	// A wakes with its stale batch and tries to commit it.
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The refusal is logged; whether or not it comes, the lake is checked after it.
	if !logged(logOf, "a", "fenced", 1, 30*time.Second) {
		t.Error("A never logged a fenced commit")
	}
	for _, p := range []*exec.Cmd{a, b} {
		_ = p.Process.Signal(os.Interrupt)
		_ = p.Wait()
	}
	for _, kt := range killTables {
		l, _ := lakehouse.OMOPLayout(kt.name)
		tbl, err := cat.LoadTable(context.Background(), l)
		if err != nil {
			t.Fatal(err)
		}
		if d := lineDiff(want[kt.name], scanState(t, tbl, kt)); d != "" {
			t.Errorf("%s: current state differs from the reference:\n%s", kt.name, d)
		}
		o, _, _ := lakehouse.TableOffsets(tbl.Metadata(), group)
		for p, end := range endOffsets(t, c, topics.OMOP(kt.name)) {
			if o.Offsets[p] != end {
				t.Errorf("%s partition %d: the table says offset %d, the topic ends at %d", kt.name, p, o.Offsets[p], end)
			}
		}
	}
}

// waitLog waits until the log of a process holds at least n lines containing what.
func waitLog(t *testing.T, logOf func(string) string, name, what string, n int) {
	t.Helper()
	if !logged(logOf, name, what, n, 90*time.Second) {
		t.Fatalf("%s never logged %q %d times", name, what, n)
	}
}

// logged reports whether the log of a process holds n lines containing what within d.
func logged(logOf func(string) string, name, what string, n int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for strings.Count(logOf(name), what) < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
