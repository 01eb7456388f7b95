// Package ehrsim is an EHR simulator: a real FHIR Bulk Data Access (v2) server on
// loopback with optional SMART Backend Services authorization, serving a directory of
// NDJSON files or generated patients. Tests, the demo and users start it the same way,
// as httptest does for plain HTTP servers:
//
//	srv, err := ehrsim.New(ehrsim.Config{Dir: "testdata/export", Auth: true})
//	defer srv.Close()
//	srv.RegisterClient("my-client", publicJWKS)
//	// point a Bulk Data client at srv.URL
//
// Fault switches (Config.Faults) make the server misbehave in the ways real EHRs do —
// throttling and rate limits, 5xx and transient OperationOutcomes while polling, slow and
// dropped downloads, expiring file URLs and tokens, error and deleted files, a reused
// status URL, and the reference Bulk Data server's quirks — so the client's recovery
// paths are tested against the wire protocol rather than a mock.
//
// Clients are checked by the specifications (SMART Backend Services, OAuth 2.0) with
// this package's own code and go-jose, never with the fetcher's: the simulator imports
// nothing from producer/, so a client that drifts from the spec fails against it.
package ehrsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a simulator. The zero value plus Dir or Synth is a working open server.
type Config struct {
	// Dir holds the NDJSON to serve: files named <Type>.ndjson or <Type>.<n>.ndjson.
	Dir string
	// Synth, when Dir is empty, generates this many patients into a temporary directory.
	Synth int
	// Seed of the generated data (Synth).
	Seed uint64
	// Addr to listen on; default "127.0.0.1:0" (a free port).
	Addr string
	// PublicURL is the base URL clients reach the server at, when that is not the listen
	// address (behind a proxy, in a container network): status, file and token URLs are
	// built from it, and a proxy in front is expected to forward <PublicURL>/x to /x.
	// Default "http://" + the listen address.
	PublicURL string

	// Auth turns on SMART Backend Services: every Bulk Data request then needs a bearer
	// token from the token endpoint, obtained with a client registered by RegisterClient.
	Auth bool
	// TokenTTL is the lifetime of issued tokens; default 5 minutes.
	TokenTTL time.Duration

	// ResourcesPerFile splits each type's output into files of at most this many lines
	// (0: one output file per source file).
	ResourcesPerFile int
	// ManifestPageSize paginates the manifest: at most this many output entries per page,
	// later pages linked with link[relation=next] (0: one page).
	ManifestPageSize int
	// PollsBeforeReady is how many status polls answer 202 before the manifest; default 1.
	PollsBeforeReady int
	// RetryAfter is the Retry-After sent while in progress, rounded up to whole seconds;
	// 0 sends "0", which clients treat as their minimum poll interval.
	RetryAfter time.Duration
	// GroupIDs are the groups known for group-level export; each holds every patient.
	// Default {"all"}.
	GroupIDs []string

	Faults Faults
	// Log receives request-level events (never resource content or tokens); default discards.
	Log *slog.Logger
}

// Server is a running simulator.
type Server struct {
	// URL is the FHIR base URL, e.g. http://127.0.0.1:34567 (no trailing slash); the
	// public URL when one is configured.
	URL string

	cfg    Config
	log    *slog.Logger
	hs     *http.Server
	ln     net.Listener
	src    *source
	tmp    string // removed on Close
	gzDir  string // gzip copies of the source files; removed on Close
	faults faultState

	mu      sync.Mutex
	jobs    map[string]*job
	clients map[string]*client
	tokens  map[string]token
	jtis    map[string]time.Time
	// pollTimes records the arrival of each status poll (PollTimes).
	pollTimes []time.Time

	stats Stats
}

// Stats counts what the server did, so tests can assert on the protocol as seen by it.
type Stats struct {
	Kickoffs      atomic.Int64
	StatusPolls   atomic.Int64
	Deletes       atomic.Int64
	FileRequests  atomic.Int64
	RangeRequests atomic.Int64
	TokensIssued  atomic.Int64
	AuthFailures  atomic.Int64
	Dropped       atomic.Int64 // exports forgotten by the DropExportAfterFiles fault
	RateLimited   atomic.Int64 // status polls refused by the PollRateLimit fault
}

// PollTimes returns when each status poll arrived, in order, so tests can check a
// client's pacing as the server saw it.
func (s *Server) PollTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.pollTimes...)
}

// New starts a simulator and returns once it accepts connections.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 5 * time.Minute
	}
	if cfg.PollsBeforeReady <= 0 {
		cfg.PollsBeforeReady = 1
	}
	if len(cfg.GroupIDs) == 0 {
		cfg.GroupIDs = []string{"all"}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, jobs: map[string]*job{}, clients: map[string]*client{},
		tokens: map[string]token{}, jtis: map[string]time.Time{}}
	dir := cfg.Dir
	if dir == "" {
		if cfg.Synth <= 0 {
			return nil, errors.New("ehrsim: give Dir or Synth")
		}
		tmp, err := os.MkdirTemp("", "ehrsim-")
		if err != nil {
			return nil, fmt.Errorf("ehrsim: %w", err)
		}
		s.tmp = tmp
		if err := generate(context.Background(), tmp, cfg.Synth, cfg.Seed); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("ehrsim: generate %d patients: %w", cfg.Synth, err)
		}
		dir = tmp
	}
	src, err := loadSource(dir)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	s.src = src
	if err := s.precompress(); err != nil {
		s.cleanup()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("ehrsim: listen %s: %w", cfg.Addr, err)
	}
	s.ln = ln
	s.URL = "http://" + ln.Addr().String()
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			ln.Close()
			s.cleanup()
			return nil, fmt.Errorf("ehrsim: public URL %q: want http(s)://host[:port][/path]", cfg.PublicURL)
		}
		s.URL = strings.TrimRight(cfg.PublicURL, "/")
	}
	s.hs = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() { _ = s.hs.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on (which differs from URL's host when a
// public URL is configured).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Types lists the resource types served, with their line counts.
func (s *Server) Types() map[string]int64 {
	out := map[string]int64{}
	for _, f := range s.src.files {
		out[f.typ] += f.lines
	}
	return out
}

// Close stops the server and removes generated data and job files.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	if err != nil {
		err = s.hs.Close()
	}
	s.mu.Lock()
	for id, j := range s.jobs {
		j.mu.Lock()
		j.remove()
		j.mu.Unlock()
		delete(s.jobs, id)
	}
	s.mu.Unlock()
	s.cleanup()
	return err
}

func (s *Server) cleanup() {
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
	if s.gzDir != "" {
		os.RemoveAll(s.gzDir)
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/smart-configuration", s.handleSmartConfig)
	mux.HandleFunc("GET /metadata", s.handleMetadata)
	mux.HandleFunc("POST /auth/token", s.handleToken)
	mux.HandleFunc("/$export", s.authed(func(w http.ResponseWriter, r *http.Request) { s.handleKickoff(w, r, levelSystem, "") }))
	mux.HandleFunc("/Patient/$export", s.authed(func(w http.ResponseWriter, r *http.Request) { s.handleKickoff(w, r, levelPatient, "") }))
	mux.HandleFunc("/Group/{id}/$export", s.authed(func(w http.ResponseWriter, r *http.Request) {
		s.handleKickoff(w, r, levelGroup, r.PathValue("id"))
	}))
	mux.HandleFunc("GET /status/{job}", s.authed(s.handleStatus))
	mux.HandleFunc("DELETE /status/{job}", s.authed(s.handleDelete))
	mux.HandleFunc("GET /files/{job}/{gen}/{idx}", s.handleFile) // checks the token itself: requiresAccessToken
	return mux
}

// source is the data served: NDJSON files by type, with their line counts.
type source struct {
	files []srcFile
}

type srcFile struct {
	typ    string
	path   string
	size   int64
	lines  int64
	gzPath string // its gzip copy, made by precompress
}

var ndjsonName = regexp.MustCompile(`^([A-Z][A-Za-z]+)(\.[0-9]+)?\.ndjson$`)

func loadSource(dir string) (*source, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ehrsim: read data directory: %w", err)
	}
	src := &source{}
	for _, e := range entries {
		m := ndjsonName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		n, size, err := countLines(p)
		if err != nil {
			return nil, fmt.Errorf("ehrsim: %w", err)
		}
		src.files = append(src.files, srcFile{typ: m[1], path: p, size: size, lines: n})
	}
	if len(src.files) == 0 {
		return nil, fmt.Errorf("ehrsim: no <Type>.ndjson files in %s", dir)
	}
	sort.Slice(src.files, func(i, j int) bool { return src.files[i].path < src.files[j].path })
	return src, nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
