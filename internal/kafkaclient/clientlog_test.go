package kafkaclient

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestClientLoggerWarnsOnLongUnstableOffsets(t *testing.T) {
	var buf bytes.Buffer
	l := newClientLogger(kgo.LogLevelError)
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l.log = func() *slog.Logger { return log }
	clock := time.Unix(1_800_000_000, 0)
	l.now = func() time.Time { return clock }
	retry := func(group string, err error) {
		l.Log(kgo.LogLevelInfo, unstableOffsetsMsg, "group", group, "topic", "fhir.raw.Patient", "partition", int32(0), "err", err)
	}
	warnings := func() int { return strings.Count(buf.String(), "level=WARN") }

	// A wait shorter than a minute (a transaction committing) says nothing.
	for range 60 {
		retry("g", kerr.UnstableOffsetCommit)
		clock = clock.Add(time.Second)
	}
	if n := warnings(); n != 0 {
		t.Fatalf("%d warnings after 59 s:\n%s", n, buf.String())
	}
	retry("g", kerr.UnstableOffsetCommit)
	if n := warnings(); n != 1 || !strings.Contains(buf.String(), "group=g") || !strings.Contains(buf.String(), "fhirstream status") {
		t.Fatalf("after 60 s: %d warnings:\n%s", n, buf.String())
	}
	// Once a minute while it lasts.
	for range 30 {
		clock = clock.Add(time.Second)
		retry("g", kerr.UnstableOffsetCommit)
	}
	if n := warnings(); n != 1 {
		t.Fatalf("%d warnings 30 s later, want still 1", n)
	}
	for range 30 {
		clock = clock.Add(time.Second)
		retry("g", kerr.UnstableOffsetCommit)
	}
	if n := warnings(); n != 2 {
		t.Fatalf("%d warnings a minute later, want 2", n)
	}

	// After a pause the wait starts again; other errors and other groups do not count.
	clock = clock.Add(time.Minute)
	for range 40 {
		retry("g", kerr.UnstableOffsetCommit)
		retry("h", kerr.UnknownTopicID)
		clock = clock.Add(time.Second)
	}
	if n := warnings(); n != 2 {
		t.Fatalf("%d warnings, want 2: a new 40 s wait, and errors other than UNSTABLE_OFFSET_COMMIT, say nothing", n)
	}

	// Client errors are passed on.
	l.Log(kgo.LogLevelError, "fetch offsets failed with non-retryable error", "group", "g", "err", fmt.Errorf("boom"))
	if !strings.Contains(buf.String(), `level=ERROR msg="kafka client: fetch offsets failed with non-retryable error"`) {
		t.Errorf("client error not passed on:\n%s", buf.String())
	}
}

// --kafka-log-level passes franz-go's own messages on at their level; by default only its
// errors come through.
func TestClientLoggerLevels(t *testing.T) {
	for _, tc := range []struct {
		level kgo.LogLevel
		want  []string
	}{
		{kgo.LogLevelError, []string{"level=ERROR"}},
		{kgo.LogLevelWarn, []string{"level=ERROR", "level=WARN"}},
		{kgo.LogLevelDebug, []string{"level=ERROR", "level=WARN", "level=INFO", "level=DEBUG"}},
	} {
		var buf bytes.Buffer
		l := newClientLogger(tc.level)
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		l.log = func() *slog.Logger { return log }
		for _, lv := range []kgo.LogLevel{kgo.LogLevelError, kgo.LogLevelWarn, kgo.LogLevelInfo, kgo.LogLevelDebug} {
			l.Log(lv, "message at "+lv.String(), "broker", "0")
		}
		if got := strings.Count(buf.String(), "\n"); got != len(tc.want) {
			t.Errorf("level %v: %d lines, want %d:\n%s", tc.level, got, len(tc.want), buf.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(buf.String(), w+` msg="kafka client: message at`) {
				t.Errorf("level %v: no %s line:\n%s", tc.level, w, buf.String())
			}
		}
	}
}
