package bench

import (
	"runtime"
	"runtime/metrics"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// cpuTimes are CPU seconds consumed so far: this process, its Go GC, the broker and
// the whole machine.
type cpuTimes struct{ process, gc, broker, machine float64 }

func takeCPU(fs procfs.FS, brokerPID int) cpuTimes {
	var c cpuTimes
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	gc := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(gc)
	if gc[0].Value.Kind() == metrics.KindFloat64 {
		c.gc = gc[0].Value.Float64()
	}
	if brokerPID > 0 {
		c.broker = processCPU(fs, brokerPID)
	}
	if st, err := fs.Stat(); err == nil {
		t := st.CPUTotal
		c.machine = t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ + t.Steal
	}
	return c
}

// processCPU is a process's user plus system time so far, 0 when it cannot be read.
func processCPU(fs procfs.FS, pid int) float64 {
	proc, err := fs.Proc(pid)
	if err != nil {
		return 0
	}
	st, err := proc.Stat()
	if err != nil {
		return 0
	}
	return st.CPUTime()
}

// maxRSS is the process's peak resident set size (getrusage reports KiB on Linux).
func maxRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

func loadAvg(fs procfs.FS) [3]float64 {
	l, err := fs.LoadAvg()
	if err != nil {
		return [3]float64{}
	}
	return [3]float64{l.Load1, l.Load5, l.Load15}
}

func hostInfo(fs procfs.FS, brokerPID int) Host {
	h := Host{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), LoadBefore: loadAvg(fs)}
	if ci, err := fs.CPUInfo(); err == nil && len(ci) > 0 {
		h.CPUModel = ci[0].ModelName
	}
	if mi, err := fs.Meminfo(); err == nil && mi.MemTotal != nil {
		h.MemBytes = int64(*mi.MemTotal) * 1024
	}
	if brokerPID > 0 {
		if proc, err := fs.Proc(brokerPID); err == nil {
			if args, err := proc.CmdLine(); err == nil {
				var heap []string
				for _, a := range args {
					if strings.HasPrefix(a, "-Xm") {
						heap = append(heap, a)
					}
				}
				h.BrokerHeap = strings.Join(heap, " ")
			}
			if st, err := proc.Stat(); err == nil {
				h.BrokerRSS = int64(st.ResidentMemory())
			}
		}
	}
	return h
}
