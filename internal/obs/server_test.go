package obs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := NewReadiness()
	srv, err := Start(ctx, "127.0.0.1:0", ready, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr

	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "fhirstream_obs_test_total", Help: "test"})
	Registry.MustRegister(c)
	defer Registry.Unregister(c)
	c.Add(3)

	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz with no checks = %d, want 200", code)
	}
	var joined atomic.Bool
	ready.Set("stage validate", func() error {
		if !joined.Load() {
			return errors.New("consumer group not joined")
		}
		return nil
	})
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "stage validate: consumer group not joined") {
		t.Fatalf("/readyz not ready = %d %q", code, body)
	}
	joined.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz ready = %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "fhirstream_obs_test_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d, missing metrics", code)
	}
}

func TestStartOff(t *testing.T) {
	s, err := Start(context.Background(), "off", NewReadiness(), slog.Default())
	if s != nil || err != nil {
		t.Fatalf("Start(off) = %v, %v", s, err)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, LogConfig{Format: "auto", Level: "warn"})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.HasPrefix(out, "{") || !strings.Contains(out, `"msg":"shown"`) {
		t.Fatalf("auto format on a non-terminal should be JSON at warn level, got %q", out)
	}
	if _, err := NewLogger(&buf, LogConfig{Format: "xml", Level: "info"}); err == nil {
		t.Fatal("accepted log format xml")
	}
	if _, err := NewLogger(&buf, LogConfig{Format: "text", Level: "loud"}); err == nil {
		t.Fatal("accepted log level loud")
	}
}

func TestStartNamesATakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(context.Background(), ln.Addr().String(), NewReadiness(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "port is taken") || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("a taken port: %v, want a message naming the cause and --metrics-addr", err)
	}
}

func TestLogDurationsAreReadable(t *testing.T) {
	var b strings.Builder
	log, err := NewLogger(&b, LogConfig{Format: "json", Level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("done", "took", 1500*time.Millisecond)
	if !strings.Contains(b.String(), `"took":"1.5s"`) {
		t.Fatalf("duration logged as %s, want \"1.5s\"", b.String())
	}
}
