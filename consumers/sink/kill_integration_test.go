package sink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// sinkCommand is how the binary runs the OMOP sink.
var sinkCommand = []string{"consume", "sink-omop"}

// buildBinary builds cmd/fhirstream into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fhirstream")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/fhirstream/fhirstream/cmd/fhirstream")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fhirstream: %v\n%s", err, out)
	}
	return bin
}

// killTables and rows per patient of the synthetic 1,000-patient export.
var killTables = map[string]int{"person": 1, "visit_occurrence": 5, "condition_occurrence": 3, "measurement": 10}

// TestIntegrationSinkKill runs the sink binary, SIGKILLs it at random points at least 20
// times while records are still arriving, restarts it each time, and then checks that the
// lake holds every input row exactly once.
func TestIntegrationSinkKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test builds the binary and runs for a while")
	}
	bin := buildBinary(t)
	for _, lake := range testLakes(t, true) {
		t.Run(lake.name, func(t *testing.T) { testSinkKill(t, bin, lake) })
	}
}

func testSinkKill(t *testing.T, bin string, lake testLake) {
	const patients, kills = 1000, 22
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	var tps []string
	for table := range killTables {
		tps = append(tps, topics.OMOP(table))
	}
	c.CreateTopics(t, 3, append(tps, topics.DLQ())...)
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	// Rows over two days, so files land in two date partitions.
	day := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	want := map[string]int{}
	for table, per := range killTables {
		n := patients * per
		want[table] = n
		rs := omopRecords(t, codec, topics, table, n, patients, day)
		for i, r := range rs {
			r.Timestamp = day.AddDate(0, 0, i%2)
		}
		recs = append(recs, rs...)
	}
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })

	group := c.Group("sink-kill")
	args := append(append([]string{}, sinkCommand...),
		"--out", lake.out, "--group", group, "--instance-id", "kill-test",
		"--brokers", strings.Join(c.Brokers, ","), "--topic-prefix", c.Prefix,
		"--flush-rows", "700", "--flush-interval", "150ms", "--metrics-addr", "off", "--log-level", "info")
	// Every run logs into one file; on failure the lines that say what recovery and the
	// sessions did are printed (a lost row is otherwise silent).
	logFile, err := os.Create(filepath.Join(t.TempDir(), "sink.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	runs := 0
	start := func() *exec.Cmd {
		runs++
		fmt.Fprintf(logFile, "---- run %d at %s\n", runs, time.Now().Format(time.RFC3339Nano))
		cmd := exec.Command(bin, args...)
		cmd.Stderr = logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	defer func() {
		if !t.Failed() {
			return
		}
		b, _ := os.ReadFile(logFile.Name())
		var keep []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "----") || strings.Contains(line, "recovered") ||
				strings.Contains(line, "WARN") || strings.Contains(line, "ERROR") || strings.Contains(line, "restart") {
				keep = append(keep, line)
			}
		}
		t.Logf("sink runs, recoveries and warnings:\n%s", strings.Join(keep, "\n"))
		for _, r := range c.ReadAll(t, topics.DLQ()) {
			dc, _ := deadletter.Parse(r.Headers)
			t.Logf("dead letter: %s/%d@%d %s: %s", dc.SourceTopic, dc.Partition, dc.Offset, dc.Class, dc.Message)
		}
	}()

	// The producer feeds the topics in chunks while the sink is being killed.
	cl := c.Client(t)
	produced := make(chan error, 1)
	go func() {
		ctx := context.Background()
		const chunks = 40
		for i := range chunks {
			lo, hi := i*len(recs)/chunks, (i+1)*len(recs)/chunks
			if err := cl.ProduceSync(ctx, recs[lo:hi]...).FirstErr(); err != nil {
				produced <- err
				return
			}
			time.Sleep(100 * time.Millisecond) // pacing, so the kills land mid-stream
		}
		produced <- nil
	}()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for range kills {
		cmd := start()
		time.Sleep(time.Duration(150+rng.IntN(600)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	if err := <-produced; err != nil {
		t.Fatalf("produce: %v", err)
	}

	// The last run goes until the group has committed everything, then stops cleanly.
	cmd := start()
	adm := c.Admin(t)
	waitFor(t, 120*time.Second, "the group to commit every record", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			return false
		}
		l, ok := lags[group]
		if !ok || l.FetchErr != nil || l.DescribeErr != nil {
			return false
		}
		seen := 0
		for _, ml := range l.Lag.Sorted() {
			if ml.Err != nil || ml.End.Offset <= 0 || ml.Commit.At != ml.End.Offset {
				return false
			}
			seen++
		}
		return seen == 3*len(killTables)
	})
	// Everything may already have been committed by the killed runs, so the last process
	// can still be starting up when it is told to stop: a death by that very signal is as
	// good as a clean exit here.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Fatalf("final sink run: %v", err)
		}
	}

	out := lake.localDir(t)
	for table, n := range want {
		ids := map[int64]int{}
		rows := 0
		for _, f := range lakeFiles(t, filepath.Join(out, "omop", table)) {
			_, rs := readParquet(t, f)
			tm, _ := schemas.OMOPTable(table)
			for _, r := range rs {
				ids[r[tm.Columns[0].Name].Int64()]++
				rows++
			}
		}
		if rows != n || len(ids) != n {
			t.Errorf("%s: %d rows, %d distinct ids, want %d of each", table, rows, len(ids), n)
		}
		if n := duckCount(t, out, table); n >= 0 && n != int64(want[table]) {
			t.Errorf("%s: DuckDB counts %d rows, want %d", table, n, want[table])
		}
	}
	var pending []string
	_ = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, pendingSuffix) {
			pending = append(pending, p)
		}
		return nil
	})
	t.Logf("after %d kills: %d pending files left (invisible, removed on next assignment)", kills, len(pending))
}

// duckCount counts rows and checks distinct ids with DuckDB; -1 when DuckDB is missing.
func duckCount(t *testing.T, lake, table string) int64 {
	t.Helper()
	if !haveDuckDB() {
		return -1
	}
	tm, _ := schemas.OMOPTable(table)
	q := fmt.Sprintf(`SELECT count(*), count(DISTINCT %s) FROM read_parquet('%s/omop/%s/*/*.parquet', hive_partitioning=true)`,
		tm.Columns[0].Name, lake, table)
	out := duckQuery(t, q)
	var rows, distinct int64
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "%d,%d", &rows, &distinct); err != nil {
		t.Fatalf("duckdb output %q: %v", out, err)
	}
	if rows != distinct {
		t.Errorf("%s: DuckDB sees %d rows but %d distinct ids", table, rows, distinct)
	}
	return rows
}
