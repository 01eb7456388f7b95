package sink

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBatchEnd walks one batch through the clock: what makes it due, and how long the
// poll before each step may wait, against times worked out by hand from the settings.
func TestBatchEnd(t *testing.T) {
	s := &Sink{cfg: Config{FlushRows: 10, FlushBytes: 1000, FlushInterval: 5 * time.Second, FlushIdle: time.Second}}
	t0 := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	b := s.newBatch()
	if got, want := s.pollWait(b, t0), 5*time.Second; got != want {
		t.Errorf("no open batch: poll waits %s, want the interval %s", got, want)
	}
	if got := s.batchEnd(b, at(60_000)); got != "" {
		t.Errorf("an empty batch is due (%q) however long it has waited", got)
	}
	offset := int64(0)
	take := func(ms int) {
		b.take(&kgo.Record{Topic: "t", Offset: offset}, at(ms))
		offset++
	}
	// A record every 800 ms: never a second of quiet, so the interval ends the batch.
	for ms := 0; ms <= 4000; ms += 800 {
		take(ms)
		if got := s.batchEnd(b, at(ms+799)); got != "" {
			t.Fatalf("at %d ms, 799 ms after a record and %d ms after the first: due (%q), want not yet", ms+799, ms+799, got)
		}
	}
	take(4800)
	// Last record at 4800 ms: the interval (5000) comes before the idle time (5800).
	if got, want := s.pollWait(b, at(4900)), 100*time.Millisecond; got != want {
		t.Errorf("poll at 4900 ms waits %s, want %s (to the interval's end)", got, want)
	}
	if got := s.batchEnd(b, at(5000)); got != endedByInterval {
		t.Errorf("at 5000 ms: %q, want %q", got, endedByInterval)
	}

	// A burst, then quiet: the idle time ends the batch long before the interval.
	b = s.newBatch()
	take(0)
	take(300)
	if got, want := s.pollWait(b, at(400)), 900*time.Millisecond; got != want {
		t.Errorf("poll at 400 ms waits %s, want %s (a second after the last record)", got, want)
	}
	if got := s.batchEnd(b, at(1299)); got != "" {
		t.Errorf("at 1299 ms, 999 ms after the last record: %q, want not yet", got)
	}
	if got := s.batchEnd(b, at(1300)); got != endedByIdle {
		t.Errorf("at 1300 ms, a second after the last record: %q, want %q", got, endedByIdle)
	}
	// Past both deadlines the poll still waits a little, never zero or less.
	if got := s.pollWait(b, at(9000)); got != time.Millisecond {
		t.Errorf("poll past the deadlines waits %s, want 1ms", got)
	}

	// Size limits and a waiting rebalance end a batch at once, in that order of precedence.
	b.rows = 10
	if got := s.batchEnd(b, at(301)); got != endedByRows {
		t.Errorf("with FlushRows rows: %q, want %q", got, endedByRows)
	}
	b.rows, b.bytes = 0, 1000
	if got := s.batchEnd(b, at(301)); got != endedByBytes {
		t.Errorf("with FlushBytes bytes: %q, want %q", got, endedByBytes)
	}
	s.hurry.Store(true)
	if got := s.batchEnd(b, at(301)); got != endedByRebalance {
		t.Errorf("with a rebalance waiting: %q, want %q", got, endedByRebalance)
	}

	// An idle time at or above the interval changes nothing.
	s = &Sink{cfg: Config{FlushRows: 10, FlushBytes: 1000, FlushInterval: 2 * time.Second, FlushIdle: 2 * time.Second}}
	b = s.newBatch()
	b.take(&kgo.Record{Topic: "t"}, t0)
	if got := s.batchEnd(b, at(1999)); got != "" {
		t.Errorf("idle = interval, at 1999 ms: %q, want not yet", got)
	}
	if got := s.batchEnd(b, at(2000)); got != endedByInterval {
		t.Errorf("idle = interval, at 2000 ms: %q, want %q", got, endedByInterval)
	}
}
