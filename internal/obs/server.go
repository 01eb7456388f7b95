package obs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is the Prometheus registry every fhirstream metric registers with. A private
// registry (not the global default) keeps tests independent and the exposition explicit.
var Registry = newRegistry()

func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Readiness collects named readiness checks; /readyz is ready when all of them are.
// Components register a check when they start (e.g. "stage validate: group joined").
type Readiness struct {
	mu     sync.Mutex
	checks map[string]func() error
}

// NewReadiness returns an empty set of checks (ready).
func NewReadiness() *Readiness { return &Readiness{checks: map[string]func() error{}} }

// Set registers or replaces the check called name.
func (r *Readiness) Set(name string, check func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks[name] = check
}

// Remove drops the check called name.
func (r *Readiness) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.checks, name)
}

// Check returns nil when every check passes, else an error naming each failing one.
func (r *Readiness) Check() error {
	r.mu.Lock()
	names := make([]string, 0, len(r.checks))
	for n := range r.checks {
		names = append(names, n)
	}
	checks := make([]func() error, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i] = r.checks[n]
	}
	r.mu.Unlock()
	var errs []error
	for i, c := range checks {
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	Addr      string
	Readiness *Readiness
	srv       *http.Server
	ln        net.Listener
}

// Handler returns the HTTP handler of the observability endpoints.
func Handler(ready *Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready.Check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready:\n" + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Start listens on addr ("" or "off" disables the server and returns nil, nil) and
// serves until ctx ends. The returned server's Addr is the bound address, useful with ":0".
func Start(ctx context.Context, addr string, ready *Readiness, log *slog.Logger) (*Server, error) {
	if addr == "" || addr == "off" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("metrics listener %s: the port is taken by another program (each stage has its own default port; choose one with --metrics-addr, e.g. 127.0.0.1:0 for any free port, or turn it off with --metrics-addr off): %w", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	s := &Server{Addr: ln.Addr().String(), Readiness: ready, ln: ln,
		srv: &http.Server{Handler: Handler(ready), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	log.Info("serving metrics and health", "addr", "http://"+s.Addr, "paths", "/metrics /healthz /readyz")
	return s, nil
}
