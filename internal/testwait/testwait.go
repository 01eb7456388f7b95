// Package testwait is the one poll loop of the tests: wait for a condition with a
// deadline, instead of sleeping and hoping. The deadline only guards against a hang; a
// test that passes never waits for it.
package testwait

import (
	"testing"
	"time"
)

// Until polls cond, every 20 ms at first and less often as time passes (at most every
// 500 ms), until it returns true. It fails the test, naming what it waited for, when
// timeout passes first, and stops at once when the test has already failed (from cond,
// say).
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 20 * time.Millisecond
	for !cond() {
		if t.Failed() {
			t.FailNow()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
		wait = min(2*wait, 500*time.Millisecond)
	}
}
