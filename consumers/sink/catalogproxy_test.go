package sink

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/testwait"
)

// catalogProxy stands between the sinks and the REST catalog server in the REST kill
// test, to give the sinks the catalog failures a network and a restart give, while the
// server itself is only ever stopped with no request in flight: Apache Iceberg's test
// server (JdbcCatalog on SQLite) stopped in the middle of a commit can point a table at
// a metadata file that is not there, which is its durability, not the sink's protocol.
type catalogProxy struct {
	srv *httptest.Server

	mu       sync.Mutex
	idle     *sync.Cond
	inFlight int
	down     bool // every request is cut: the connection closes, nothing is answered
	cut      int  // the next cut commits are forwarded, and their answer is dropped
	cutDone  int  // commits forwarded whose answer was dropped
	refused  int  // requests cut while down
}

func newCatalogProxy(t *testing.T, upstream string) *catalogProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &catalogProxy{}
	p.idle = sync.NewCond(&p.mu)
	forward := httputil.NewSingleHostReverseProxy(u)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.down {
			p.refused++
			p.mu.Unlock()
			closeConn(w)
			return
		}
		// A commit: a POST to a table (iceberg-go's REST client commits with
		// POST /v1/namespaces/{ns}/tables/{table}).
		drop := p.cut > 0 && r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/tables/")
		if drop {
			p.cut--
		}
		p.inFlight++
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.inFlight--
			if drop {
				p.cutDone++
			}
			p.idle.Broadcast()
			p.mu.Unlock()
		}()
		if !drop {
			forward.ServeHTTP(w, r)
			return
		}
		// The server commits; the sink never hears whether it did.
		forward.ServeHTTP(httptest.NewRecorder(), r)
		closeConn(w)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// closeConn closes the client's connection without an answer.
func closeConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// URL is the address the sinks use.
func (p *catalogProxy) URL() string { return p.srv.URL }

// cutCommits drops the answers of the next n commits and waits (up to timeout) until
// it has; it reports how many it dropped.
func (p *catalogProxy) cutCommits(t *testing.T, n int, timeout time.Duration) int {
	p.mu.Lock()
	p.cut, p.cutDone = n, 0
	p.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		done := p.cutDone
		p.mu.Unlock()
		if done >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = 0
	return p.cutDone
}

// outage cuts every request, waits until none is in flight at the server, runs
// restart (the server's stop and start), and lets requests through again after it.
// It reports how many requests it cut.
func (p *catalogProxy) outage(t *testing.T, restart func()) int {
	p.mu.Lock()
	p.down, p.refused = true, 0
	for p.inFlight > 0 {
		p.idle.Wait()
	}
	p.mu.Unlock()
	restart()
	// The sinks keep trying while the server is down and restarts; make sure they met
	// the outage before it ends.
	testwait.Until(t, 30*time.Second, "a sink request during the catalog outage", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.refused > 0
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
	return p.refused
}
