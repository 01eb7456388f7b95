package dlq

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseWhen(t *testing.T) {
	if got, err := ParseWhen(""); err != nil || !got.IsZero() {
		t.Errorf("empty: %v, %v", got, err)
	}
	if got, err := ParseWhen("2024-05-01T12:00:00Z"); err != nil || !got.Equal(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v, %v", got, err)
	}
	before := time.Now()
	got, err := ParseWhen("24h")
	after := time.Now()
	if err != nil || got.Before(before.Add(-24*time.Hour)) || got.After(after.Add(-24*time.Hour)) {
		t.Errorf("24h: %v, %v (now %v)", got, err, before)
	}
	if _, err := ParseWhen("yesterday"); err == nil || !strings.Contains(err.Error(), "neither an RFC 3339 time nor a duration") {
		t.Errorf("yesterday: %v", err)
	}
}

func TestReplayResultWriteSummary(t *testing.T) {
	res := ReplayResult{Group: "g", Replayed: 3, Parked: 1, Histogram: map[string]int{"replay a validate/x": 3, "park a validate/x": 1}}
	var b bytes.Buffer
	res.WriteSummary(&b, true)
	want := "would replay 3, parked 1 (group g)\n  replay a validate/x  3\n  park a validate/x    1\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
