package kafkaclient

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// unstableOffsetsMsg is what franz-go logs (at info level) each time a group's offset
// fetch answers UNSTABLE_OFFSET_COMMIT: a transaction that wrote offsets for the group is
// still open. It retries every second, for ever; the group consumes nothing meanwhile.
const unstableOffsetsMsg = "fetch offsets failed with retryable partition error, waiting 1s and retrying"

// unstableWarnAfter is how long a group may wait on open transactional offsets before
// it is reported: longer than the longest transaction timeout the project uses (30 s),
// after which the broker aborts a transaction whose producer died.
const unstableWarnAfter = time.Minute

// clientLogger passes the franz-go client's errors on to slog (its warnings and info are
// routine: reconnects, rebalances) and turns one silent wait into a warning: a consumer
// group whose committed offsets stay held by an open transaction, which is what a hanging
// transaction looks like from a stage (see "fhirstream status").
type clientLogger struct {
	// level is what the operator asked to see of franz-go (--kafka-log-level): errors
	// by default; warn, info or debug to diagnose the client itself.
	level kgo.LogLevel
	mu    sync.Mutex
	waits map[string]*offsetsWait // by group
	now   func() time.Time
	log   func() *slog.Logger
}

type offsetsWait struct {
	first, last, warned time.Time
}

func newClientLogger(level kgo.LogLevel) *clientLogger {
	return &clientLogger{level: level, waits: map[string]*offsetsWait{}, now: time.Now, log: slog.Default}
}

// slogLevels maps franz-go's log levels to slog's.
var slogLevels = map[kgo.LogLevel]slog.Level{
	kgo.LogLevelError: slog.LevelError,
	kgo.LogLevelWarn:  slog.LevelWarn,
	kgo.LogLevelInfo:  slog.LevelInfo,
	kgo.LogLevelDebug: slog.LevelDebug,
}

// Level is at least info: the unstable-offsets wait is an info message.
func (l *clientLogger) Level() kgo.LogLevel { return max(l.level, kgo.LogLevelInfo) }

func (l *clientLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	// franz-go's messages carry brokers, topics, partitions, offsets, groups and errors,
	// never record keys or values, nor credentials. Errors always pass (l.level is at
	// least LogLevelError).
	if level <= l.level {
		l.log().Log(context.Background(), slogLevels[level], "kafka client: "+msg, keyvals...)
	}
	if msg == unstableOffsetsMsg {
		var group string
		var err error
		for i := 0; i+1 < len(keyvals); i += 2 {
			switch keyvals[i] {
			case "group":
				group, _ = keyvals[i+1].(string)
			case "err":
				err, _ = keyvals[i+1].(error)
			}
		}
		if errors.Is(err, kerr.UnstableOffsetCommit) {
			l.unstable(group)
		}
	}
}

// unstable notes one more UNSTABLE_OFFSET_COMMIT answer for group and warns, at most once
// a minute, once the wait has lasted unstableWarnAfter. A pause of more than a few
// retries ends a wait.
func (l *clientLogger) unstable(group string) {
	now := l.now()
	l.mu.Lock()
	w := l.waits[group]
	if w == nil || now.Sub(w.last) > 5*time.Second {
		w = &offsetsWait{first: now}
		l.waits[group] = w
	}
	w.last = now
	warn := now.Sub(w.first) >= unstableWarnAfter && now.Sub(w.warned) >= time.Minute
	if warn {
		w.warned = now
	}
	waited := now.Sub(w.first).Round(time.Second)
	l.mu.Unlock()
	if warn {
		l.log().Warn("consumer group waits for an open transaction holding its offsets; if this goes on, the transaction may be hanging: see 'fhirstream status'",
			"group", group, "waited", waited.String())
	}
}
