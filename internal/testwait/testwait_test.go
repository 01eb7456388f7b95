package testwait

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeT records a failure and ends the call under test, as t.Fatalf ends a test.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper()      {}
func (f *fakeT) Failed() bool { return f.msg != "" }
func (f *fakeT) FailNow()     { panic(f) }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestUntil(t *testing.T) {
	n := 0
	Until(t, time.Second, "three calls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}

	f := &fakeT{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != f {
				panic(r)
			}
		}()
		Until(f, 100*time.Millisecond, "the impossible", func() bool { return false })
	}()
	if !strings.Contains(f.msg, "timed out after 100ms waiting for the impossible") {
		t.Fatalf("a condition that never holds failed with %q", f.msg)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 2*time.Second {
		t.Fatalf("gave up after %s, want about the 100ms timeout", took)
	}
}
