package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestLimitMemory: a reported limit of 1,000 MiB gives the Go runtime a soft limit of
// 900 MiB; an explicit GOMEMLIMIT, AUTOMEMLIMIT=off and no limit at all leave it alone.
func TestLimitMemory(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const mib = 1 << 20
	for _, tc := range []struct {
		name, env, value string
		provider         memlimit.Provider
		before, want     int64
	}{
		{"a container's limit", "", "", memlimit.Limit(1000 * mib), math.MaxInt64, 900 * mib},
		{"GOMEMLIMIT wins", "GOMEMLIMIT", "300MiB", memlimit.Limit(1000 * mib), 300 * mib, 300 * mib},
		{"AUTOMEMLIMIT off", "AUTOMEMLIMIT", "off", memlimit.Limit(1000 * mib), math.MaxInt64, math.MaxInt64},
		{"AUTOMEMLIMIT a ratio", "AUTOMEMLIMIT", "0.5", memlimit.Limit(1000 * mib), math.MaxInt64, 500 * mib},
		{"no limit", "", "", func() (uint64, error) { return 0, memlimit.ErrNoLimit }, math.MaxInt64, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", "")
			t.Setenv("AUTOMEMLIMIT", "")
			os.Unsetenv("AUTOMEMLIMIT")
			if tc.env != "" {
				t.Setenv(tc.env, tc.value)
			}
			debug.SetMemoryLimit(tc.before) // as the runtime would have read GOMEMLIMIT
			limitMemory(tc.provider)
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("memory limit %d, want %d", got, tc.want)
			}
		})
	}
}

// TestMemoryLimitFromCgroup runs the binary in a memory cgroup of 512 MiB and reads the
// soft limit it logs: 90 % of what the test wrote to the cgroup. It needs a writable
// memory cgroup (v1, or v2 with the memory controller), so as root; it skips otherwise.
func TestMemoryLimitFromCgroup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const limit = 512 << 20
	procs, cleanup, err := memoryCgroup(fmt.Sprintf("fhirstream-test-%d", os.Getpid()), limit)
	if err != nil {
		t.Skipf("no writable memory cgroup here: %v", err)
	}
	defer cleanup()
	bin := filepath.Join(t.TempDir(), "fhirstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The shell joins the cgroup, then becomes the binary.
	cmd := exec.Command("sh", "-c", `echo $$ > "$1" && exec "$2" version --log-format json`, "sh", procs, bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "AUTOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fhirstream version in the cgroup: %v\n%s", err, out)
	}
	var got int64 = -1
	for _, line := range strings.Split(string(out), "\n") {
		var rec struct {
			Msg        string `json:"msg"`
			GOMEMLIMIT int64  `json:"GOMEMLIMIT"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "GOMEMLIMIT is updated" {
			got = rec.GOMEMLIMIT
		}
	}
	if want := int64(limit * 9 / 10); got != want {
		t.Errorf("soft memory limit %d, want %d (90 %% of the cgroup's %d)\n%s", got, want, limit, out)
	}
}

// memoryCgroup creates a memory cgroup called name with limit bytes and returns its
// procs file and a function that removes it.
func memoryCgroup(name string, limit int64) (procs string, cleanup func(), err error) {
	try := func(dir, limitFile string) (string, func(), error) {
		if _, err := os.Stat(filepath.Dir(dir)); err != nil {
			return "", nil, err
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", nil, err
		}
		remove := func() { os.Remove(dir) }
		if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(fmt.Sprint(limit)), 0o644); err != nil {
			remove()
			return "", nil, err
		}
		return filepath.Join(dir, "cgroup.procs"), remove, nil
	}
	procs, cleanup, err1 := try(filepath.Join("/sys/fs/cgroup/memory", name), "memory.limit_in_bytes")
	if err1 == nil {
		return procs, cleanup, nil
	}
	procs, cleanup, err2 := try(filepath.Join("/sys/fs/cgroup", name), "memory.max")
	if err2 == nil {
		return procs, cleanup, nil
	}
	return "", nil, fmt.Errorf("cgroup v1: %v; v2: %v", err1, err2)
}
