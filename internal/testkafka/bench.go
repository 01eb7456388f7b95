package testkafka

import (
	"context"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"github.com/twmb/franz-go/pkg/kadm"
)

// CommitProgress is one stage run seen from outside, through its group's committed
// offsets: how many input records it committed after the first commit observed, the time
// they took, and how long the run took to reach that first commit (joining the group,
// producer id, first batch), which stage benchmarks report apart from the steady rate.
type CommitProgress struct {
	Total   int64 // every input record, committed
	Records int64 // committed after the first commit observed
	Steady  time.Duration
	Start   time.Duration
}

// Rate is the steady records/s: Records over Steady.
func (p CommitProgress) Rate() float64 { return float64(p.Records) / p.Steady.Seconds() }

// WaitCommitted polls group's committed offsets every 20 ms until every partition in ends
// is committed to its end offset (an empty partition needs no commit), and returns what
// it saw. It fails tb if done reports the stage ended first, or after five minutes.
// Stage benchmarks time runs this way so that every case, a loop without transactions
// included, is measured by the same observer.
func WaitCommitted(tb testing.TB, adm *kadm.Client, group string, ends kadm.ListedOffsets, done <-chan error) CommitProgress {
	tb.Helper()
	ctx := context.Background()
	began := time.Now()
	deadline := began.Add(5 * time.Minute)
	var first time.Time
	var firstCount int64
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			tb.Fatalf("group %s stopped before catching up: %v", group, err)
		case <-tick.C:
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			continue // the group may not exist yet
		}
		finished := true
		var n int64
		ends.Each(func(end kadm.ListedOffset) {
			at := end.Offset
			if c, ok := committed.Lookup(end.Topic, end.Partition); ok && c.Err == nil && c.At >= 0 {
				at = c.At
			} else if end.Offset > 0 {
				at = 0
			}
			n += min(at, end.Offset)
			if at < end.Offset {
				finished = false
			}
		})
		now := time.Now()
		if n > 0 && first.IsZero() {
			first, firstCount = now, n
		}
		if finished {
			return CommitProgress{Total: n, Records: n - firstCount, Steady: now.Sub(first), Start: first.Sub(began)}
		}
	}
	tb.Fatalf("group %s did not catch up within 5 minutes", group)
	return CommitProgress{}
}

// EndOffsets lists the end offsets of topics, failing tb on error.
func EndOffsets(tb testing.TB, adm *kadm.Client, topics ...string) kadm.ListedOffsets {
	tb.Helper()
	lo, err := adm.ListEndOffsets(context.Background(), topics...)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		tb.Fatalf("list end offsets: %v", err)
	}
	return lo
}

// ProcessCPU is the CPU time, user and system, this process has used so far. The
// broker's is not in it: a benchmark's CPU per record is the price of its own process,
// which load on a shared machine distorts less than records/s.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// EnvBrokerPID names the environment variable giving the process id of a broker on this
// machine, whose CPU time stage benchmarks then report per record beside their own.
const EnvBrokerPID = "FHIRSTREAM_BENCH_BROKER_PID"

// BrokerCPU is the CPU time the broker process named by FHIRSTREAM_BENCH_BROKER_PID has
// used so far, and false without one. On a machine whose cores the broker shares, a
// stage's rate depends on what it costs the broker as much as on its own CPU.
func BrokerCPU() (time.Duration, bool) {
	pid, err := strconv.Atoi(os.Getenv(EnvBrokerPID))
	if err != nil || pid <= 0 {
		return 0, false
	}
	p, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, false
	}
	proc, err := p.Proc(pid)
	if err != nil {
		return 0, false
	}
	st, err := proc.Stat()
	if err != nil {
		return 0, false
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), true
}

// PositiveEnv is the positive integer in environment variable name, or def when it is
// unset; any other value fails tb. Benchmarks take their sizes and round counts this way.
func PositiveEnv(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// Median is the median of xs (0 for none), for benchmarks that report the middle of
// several rounds rather than a sum a single slow round would dominate.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WarmUpNote marks the log line of a benchmark's warm-up round (round -1), which the
// stage benchmarks run first and do not count.
func WarmUpNote(round int) string {
	if round < 0 {
		return " (warm-up, not counted)"
	}
	return ""
}
