// Package obs is the observability base every command shares: structured logging with
// log/slog (text on a terminal, JSON otherwise), and an HTTP server exposing Prometheus
// /metrics, /healthz (the process is alive) and /readyz (it is doing its job, e.g. joined
// its consumer group).
//
// Nothing logged through here may carry PHI, access tokens or keys: callers log counts,
// resource types, topics and offsets, never resource content.
package obs

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"
)

// LogConfig selects the log format and level.
type LogConfig struct {
	// Format is "auto" (text on a terminal, JSON otherwise), "text" or "json".
	Format string
	// Level is debug, info, warn or error.
	Level string
}

// NewLogger builds a logger writing to w according to cfg.
func NewLogger(w io.Writer, cfg LogConfig) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", cfg.Level)
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	format := strings.ToLower(cfg.Format)
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, text or json", cfg.Format)
}

// readableDurations writes durations as Go duration strings ("1.5s", "250ms") in both
// formats: the JSON handler would write an integer of nanoseconds, which neither a person
// nor a log query reads as a time.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// IsTerminal reports whether f is an interactive terminal, for progress displays.
func IsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
