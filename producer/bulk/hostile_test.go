package bulk_test

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
	"sync"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// The tests here play hostile or misconfigured EHRs on loopback. Each asserts what the
// operator reads and, where a token is involved, that it never reached a server it must
// not: every test server records the Authorization headers it received.

const secretToken = "tok-do-not-leak"

// recorder is a test server that notes the Authorization header of every request.
type recorder struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func newRecorder(t *testing.T, tls bool, h http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{}
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.auths = append(r.auths, req.Header.Get("Authorization"))
		r.mu.Unlock()
		h(w, req)
	})
	if tls {
		r.Server = httptest.NewTLSServer(wrapped)
	} else {
		r.Server = httptest.NewServer(wrapped)
	}
	t.Cleanup(r.Close)
	return r
}

// sawToken reports whether any request to r carried the token.
func (r *recorder) sawToken() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.auths {
		if strings.Contains(a, secretToken) {
			return true
		}
	}
	return false
}

func (r *recorder) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.auths)
}

// tlsClient is a bulk client trusting httptest's certificate, with a token and the
// token policy of base.
func tlsClient(t *testing.T, base string, trusted ...string) *bulk.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(httptest.NewTLSServer(http.NotFoundHandler()).Certificate()) // every httptest TLS server shares it
	policy, err := ehrhttp.NewPolicy(base, trusted)
	if err != nil {
		t.Fatal(err)
	}
	c := fastClient()
	c.HTTP = ehrhttp.NewClient(ehrhttp.Options{RootCAs: pool})
	c.Auth, c.Policy = &fakeAuth{tok: secretToken}, policy
	return c
}

const ndjsonLine = `{"resourceType":"Patient","id":"p1"}` + "\n"

func serveLine(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, ndjsonLine) }

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one saying %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q\ndoes not say %q", err, p)
		}
	}
}

func TestTokenNotSentToAnotherOrigin(t *testing.T) {
	base := newRecorder(t, true, serveLine)
	other := newRecorder(t, true, serveLine) // same host, another port: another origin
	c := tlsClient(t, base.URL)
	_, err := c.Open(t.Context(), other.URL+"/Patient.ndjson?X-Amz-Signature=SIGNED", true, 0)
	wantErr(t, err, "not sending the access token to "+other.URL+"/Patient.ndjson:", "is not the FHIR base's", "add --trust-origin "+other.URL)
	if strings.Contains(err.Error(), "SIGNED") {
		t.Errorf("the error shows the signed URL's query: %v", err)
	}
	if other.requests() != 0 {
		t.Errorf("%d requests reached the other origin", other.requests())
	}
	if !ehrhttp.IsPermanent(err) {
		t.Error("a refusal is retried")
	}

	// Trusted, it gets the token.
	c = tlsClient(t, base.URL, other.URL)
	r, err := c.Open(t.Context(), other.URL+"/Patient.ndjson", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r)
	r.Close()
	if !other.sawToken() {
		t.Error("a trusted origin did not get the token")
	}
	// Without requiresAccessToken nobody gets it.
	base.auths, other.auths = nil, nil
	r, err = c.Open(t.Context(), base.URL+"/Patient.ndjson", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r)
	r.Close()
	if base.sawToken() {
		t.Error("requiresAccessToken false, yet the token was sent")
	}
}

func TestStatusURLOnAnotherOrigin(t *testing.T) {
	other := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	base := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Location", other.URL+"/status/1")
		w.WriteHeader(http.StatusAccepted)
	})
	c := tlsClient(t, base.URL)
	status, err := c.Kickoff(t.Context(), bulk.Request{Base: base.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Wait(t.Context(), status)
	wantErr(t, err, "poll: not sending the access token to "+other.URL+"/status/1:", "--trust-origin "+other.URL)
	if other.requests() != 0 || !base.sawToken() {
		t.Errorf("other origin got %d requests; base saw the token: %v", other.requests(), base.sawToken())
	}
}

func TestNoTokenOverHTTPUnderHTTPS(t *testing.T) {
	base := newRecorder(t, true, serveLine)
	plain := newRecorder(t, false, serveLine)
	// Even trusting the host does not let the token travel in cleartext.
	if _, err := ehrhttp.NewPolicy(base.URL, []string{plain.URL}); err == nil || !strings.Contains(err.Error(), "never sent over http") {
		t.Errorf("trusting an http origin under an https base: %v", err)
	}
	c := tlsClient(t, base.URL)
	_, err := c.Open(t.Context(), plain.URL+"/Patient.ndjson", true, 0)
	wantErr(t, err, "not sending the access token to "+plain.URL+"/Patient.ndjson", "travel in cleartext")
	if plain.requests() != 0 {
		t.Errorf("%d requests went over http", plain.requests())
	}
}

func TestRedirectDowngradeRefused(t *testing.T) {
	plain := newRecorder(t, false, serveLine)
	_, plainPort, _ := net.SplitHostPort(strings.TrimPrefix(plain.URL, "http://"))
	base := newRecorder(t, true, func(w http.ResponseWriter, r *http.Request) {
		// The same host, downgraded to http.
		http.Redirect(w, r, "http://127.0.0.1:"+plainPort+"/Patient.ndjson", http.StatusFound)
	})
	c := tlsClient(t, base.URL)
	_, err := c.Open(t.Context(), base.URL+"/Patient.ndjson", true, 0)
	wantErr(t, err, "refusing the redirect from "+base.URL+"/Patient.ndjson to http://127.0.0.1:"+plainPort+"/Patient.ndjson", "leaves https")
	if plain.requests() != 0 {
		t.Errorf("the downgrade was followed: %d requests over http", plain.requests())
	}
	if !base.sawToken() {
		t.Error("the base itself did not get the token")
	}
}

func TestRedirectDropsTokenForGood(t *testing.T) {
	var base *recorder
	other := newRecorder(t, true, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, base.URL+"/back", http.StatusFound) // and back to the base
	})
	base = newRecorder(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/back" {
			serveLine(w, r)
			return
		}
		http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
	})
	c := tlsClient(t, base.URL)
	r, err := c.Open(t.Context(), base.URL+"/Patient.ndjson", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r)
	r.Close()
	if other.sawToken() {
		t.Error("the token followed a redirect to another origin")
	}
	base.mu.Lock()
	defer base.mu.Unlock()
	if len(base.auths) != 2 || base.auths[1] != "" {
		t.Errorf("the token came back after leaving the origin: %q", base.auths)
	}
}

func TestKickoff401ShowsWhy(t *testing.T) {
	base := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", error_description="needs system/*.read"`)
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"security","diagnostics":"scope system/*.rs does not cover Group export"}]}`)
	})
	c := tlsClient(t, base.URL)
	_, err := c.Kickoff(t.Context(), bulk.Request{Base: base.URL})
	wantErr(t, err, "HTTP 401 (security): scope system/*.rs does not cover Group export", `error_description="needs system/*.read"`)
	if n := base.requests(); n != 2 { // the first, and one with a renewed token
		t.Errorf("%d kickoff requests, want 2: a 401 is not retried beyond one token renewal", n)
	}
	plainText := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "client not enabled for bulk export\x1b[31m")
	})
	_, err = tlsClient(t, plainText.URL).Kickoff(t.Context(), bulk.Request{Base: plainText.URL})
	wantErr(t, err, "HTTP 403: client not enabled for bulk export\uFFFD[31m")
}

func TestUnboundedServerStrings(t *testing.T) {
	huge := strings.Repeat("A", 5<<20)
	base := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"transactionTime":"2025-01-01T00:00:00Z","requiresAccessToken":true,"output":[{"type":"%s","url":"https://x/f"}],"error":[]}`, huge)
	})
	_, err := tlsClient(t, base.URL).Wait(t.Context(), base.URL+"/status")
	wantErr(t, err, "output entry 0 has type \"AAAA", "(5242880 bytes)")
	if len(err.Error()) > 1000 {
		t.Errorf("error of %d bytes", len(err.Error()))
	}
	outcome := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"code":"invalid","diagnostics":"%s"}]}`, huge[:60000])
	})
	_, err = tlsClient(t, outcome.URL).Kickoff(t.Context(), bulk.Request{Base: outcome.URL})
	wantErr(t, err, "HTTP 400 (invalid): AAAA", "(60000 bytes)")
	if len(err.Error()) > 1000 {
		t.Errorf("error of %d bytes", len(err.Error()))
	}
}

func TestBodyThatNeverEnds(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	base := newRecorder(t, true, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, ndjsonLine)
		w.(http.Flusher).Flush()
		select { // then nothing, until the client gives up or the test ends
		case <-stall:
		case <-r.Context().Done():
		}
	})
	c := tlsClient(t, base.URL)
	c.IdleTimeout, c.MaxAttempts = 100*time.Millisecond, 2
	r, err := c.Open(t.Context(), base.URL+"/Patient.ndjson", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	r.Close()
	wantErr(t, err, "no data for 100ms", "gave up after 2 attempts")

	endless := newRecorder(t, true, func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			if _, err := io.WriteString(w, ndjsonLine); err != nil {
				return
			}
		}
	})
	c = tlsClient(t, endless.URL)
	c.MaxFileBytes = 1 << 20
	r, err = c.Open(t.Context(), endless.URL+"/Patient.ndjson", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	r.Close()
	wantErr(t, err, "larger than the 1048576-byte cap (--max-file-bytes)")
	if n > 2<<20 {
		t.Errorf("read %d bytes past a 1 MiB cap", n)
	}
}

func TestWaitIsBounded(t *testing.T) {
	forever := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusAccepted)
	})
	c := tlsClient(t, forever.URL)
	c.MaxWait = 200 * time.Millisecond
	_, err := c.Wait(t.Context(), forever.URL+"/status")
	wantErr(t, err, "poll "+forever.URL+"/status: not done within --max-wait 200ms; raise --max-wait")

	long := newRecorder(t, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "36000")
		w.WriteHeader(http.StatusAccepted)
	})
	c = tlsClient(t, long.URL)
	c.MaxWait = time.Hour
	start := time.Now()
	_, err = c.Wait(t.Context(), long.URL+"/status")
	wantErr(t, err, "not done within --max-wait 1h0m0s: the server asks to wait 10h0m0s more (Retry-After: 36000)")
	if time.Since(start) > 30*time.Second {
		t.Error("the client slept before reporting")
	}
}

func TestPermanentFailuresAreNotRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "https://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	c := tlsClient(t, refused)
	c.Backoff = bulk.Backoff{Initial: time.Second, Max: time.Second}
	start := time.Now()
	_, err = c.Kickoff(t.Context(), bulk.Request{Base: refused})
	wantErr(t, err, "connection refused", "nothing listens there")
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("a refused first connection took %s: it was retried", d)
	}
	_, err = c.Open(t.Context(), "ftp://example.org/Patient.ndjson", false, 0)
	wantErr(t, err, `scheme "ftp" is not http or https`)
}

// TestPollingHonoursRateLimit runs an export against a gateway that rate-limits polls:
// after its 429, the client must never poll faster than half the rate that drew it.
func TestPollingHonoursRateLimit(t *testing.T) {
	var mu sync.Mutex
	var polls []time.Time
	limited := false
	srv := newRecorder(t, false, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		polls = append(polls, time.Now())
		switch {
		case len(polls) == 3 && !limited:
			limited = true
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case len(polls) < 7:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusAccepted)
		default:
			io.WriteString(w, `{"transactionTime":"2025-01-01T00:00:00Z","output":[],"error":[]}`)
		}
	})
	c := fastClient()
	c.MinPoll = 20 * time.Millisecond
	if _, err := c.Wait(t.Context(), srv.URL+"/status"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The interval the 429 answered, as the server saw it; the client measures its own,
	// which may differ by scheduling jitter, hence the 10% allowance.
	drew := polls[2].Sub(polls[1])
	least := 2 * drew * 9 / 10
	for i := 3; i < len(polls); i++ {
		if got := polls[i].Sub(polls[i-1]); got < least {
			t.Errorf("poll %d came %s after the one before; after a 429 at %s, want at least %s", i, got, drew, least)
		}
	}
}

func TestRefusalErrorsAreTyped(t *testing.T) {
	p, _ := ehrhttp.NewPolicy("https://ehr.example:8443/fhir", nil)
	err := p.Allows(mustURL(t, "https://files.example/x?sig=1"))
	var re *ehrhttp.RefusedError
	if !errors.As(err, &re) || re.URL != "https://files.example/x" {
		t.Fatalf("refusal %#v", err)
	}
	if err := p.Allows(mustURL(t, "https://EHR.example:8443/other/path")); err != nil {
		t.Errorf("same origin, other path and case: %v", err)
	}
	if err := p.TokenEndpointAllowed("http://auth.example/token"); err == nil || !strings.Contains(err.Error(), "cleartext") {
		t.Errorf("http token endpoint under https: %v", err)
	}
	if err := p.TokenEndpointAllowed("https://auth.example/token"); err != nil {
		t.Errorf("https token endpoint on another origin: %v", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
