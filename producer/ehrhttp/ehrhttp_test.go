package ehrhttp

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBound(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"plain text", 100, "plain text"},
		{"line\nbreak\ttab", 100, "line break tab"},
		{"esc\x1b[31mred\x00", 100, "esc\uFFFD[31mred\uFFFD"},
		{"bidi\u202eevil", 100, "bidi\uFFFDevil"},
		{"bad \xff utf8", 100, "bad \uFFFD utf8"},
		{strings.Repeat("é", 10), 5, "éé… (20 bytes)"}, // cut at a rune boundary
	} {
		if got := Bound(c.in, c.n); got != c.want {
			t.Errorf("Bound(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://s3.example/b/Patient.ndjson?X-Amz-Signature=abc&X-Amz-Credential=k": "https://s3.example/b/Patient.ndjson",
		"https://user:pw@ehr.example/fhir#frag":                                      "https://ehr.example/fhir",
		"https://ehr.example/status/1":                                               "https://ehr.example/status/1",
		"://bad":                                                                     "<unparsable URL>",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOriginOf(t *testing.T) {
	same := [][2]string{{"https://EHR.example/a", "https://ehr.example:443/b"}, {"http://h/x", "http://h:80/y"}, {"https://[::1]/a", "https://[::1]:443/"}}
	for _, p := range same {
		a, _ := url.Parse(p[0])
		b, _ := url.Parse(p[1])
		if OriginOf(a) != OriginOf(b) {
			t.Errorf("%s and %s: origins %v and %v differ", p[0], p[1], OriginOf(a), OriginOf(b))
		}
	}
	differ := [][2]string{{"https://h/a", "http://h/a"}, {"https://h/a", "https://h:8443/a"}, {"https://h/a", "https://h.evil/a"}}
	for _, p := range differ {
		a, _ := url.Parse(p[0])
		b, _ := url.Parse(p[1])
		if OriginOf(a) == OriginOf(b) {
			t.Errorf("%s and %s share origin %v", p[0], p[1], OriginOf(a))
		}
	}
}

func TestCheckRedirect(t *testing.T) {
	req := func(u string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, u, nil)
		r.Header.Set("Authorization", "Bearer t")
		return r
	}
	// Same origin: kept.
	next := req("https://ehr/b")
	if err := CheckRedirect(next, []*http.Request{req("https://ehr/a")}); err != nil || next.Header.Get("Authorization") == "" {
		t.Errorf("same origin: %v, Authorization %q", err, next.Header.Get("Authorization"))
	}
	// Back to the first origin after leaving it: dropped.
	next = req("https://ehr/c")
	if err := CheckRedirect(next, []*http.Request{req("https://ehr/a"), req("https://cdn/b")}); err != nil || next.Header.Get("Authorization") != "" {
		t.Errorf("back after leaving: %v, Authorization %q", err, next.Header.Get("Authorization"))
	}
	// Another port is another origin.
	next = req("https://ehr:8443/b")
	if CheckRedirect(next, []*http.Request{req("https://ehr/a")}); next.Header.Get("Authorization") != "" {
		t.Error("the token followed to another port")
	}
	// A downgrade anywhere in the chain is refused.
	err := CheckRedirect(req("http://ehr/b"), []*http.Request{req("http://x/0"), req("https://ehr/a?sig=1")})
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "from https://ehr/a to http://ehr/b") {
		t.Errorf("downgrade: %v", err)
	}
}

func TestClassifyNetwork(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://x", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}
	if !IsPermanent(ClassifyNetwork(refused, false)) {
		t.Error("a refused first connection is retried")
	}
	if IsPermanent(ClassifyNetwork(refused, true)) {
		t.Error("a refused connection after the server answered is not retried")
	}
	dns := &url.Error{Op: "Get", URL: "https://x", Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}
	if !IsPermanent(ClassifyNetwork(dns, true)) {
		t.Error("an unknown host is retried")
	}
	reset := fmt.Errorf("read: %w", syscall.ECONNRESET)
	if IsPermanent(ClassifyNetwork(reset, true)) || IsPermanent(&IdleError{}) {
		t.Error("a reset or a stall is permanent")
	}
	if !IsPermanent(fmt.Errorf("wrapped: %w", errors.Join(errors.New("x"), Permanent(errors.New("y"))))) {
		t.Error("a permanent error inside a join is not seen")
	}
}

// TestIdleTimeout stalls a TLS response after its first line: the read must fail with
// an *IdleError, never end as if the body were complete (over TLS a cancelled body can
// read as a clean EOF).
func TestIdleTimeout(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "line\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	hc := NewClient(Options{RootCAs: pool})
	for range 4 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := Do(hc, req, 500*time.Millisecond) // long enough for a TLS handshake under -race
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var idle *IdleError
		if !errors.As(err, &idle) || string(b) != "line\n" || errors.Is(err, io.EOF) {
			t.Fatalf("read %q, error %v; want the line, then an *IdleError", b, err)
		}
	}
}
