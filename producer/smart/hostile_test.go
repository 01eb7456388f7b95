package smart_test

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
	"github.com/fhirstream/fhirstream/producer/smart"
)

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

func TestClientSecretMethods(t *testing.T) {
	srv := newServer(t)
	const secret = "s3cr&t=with:odd/chars"
	if err := srv.RegisterSecretClient("svc", secret); err != nil {
		t.Fatal(err)
	}
	for _, m := range []smart.AuthMethod{smart.ClientSecretBasic, smart.ClientSecretPost} {
		c := &smart.Client{ClientID: "svc", TokenURL: srv.TokenURL(), Method: m, Secret: secret}
		if _, err := c.Token(t.Context()); err != nil {
			t.Errorf("%s: %v", m, err)
		}
		wrong := &smart.Client{ClientID: "svc", TokenURL: srv.TokenURL(), Method: m, Secret: "Wr0ngS3cret"}
		_, err := wrong.Token(t.Context())
		wantErr(t, err, "HTTP 401 invalid_client: unknown client or wrong secret", "a permanent refusal")
		if !ehrhttp.IsPermanent(err) {
			t.Errorf("%s: a wrong secret is retried", m)
		}
		if strings.Contains(err.Error(), "Wr0ngS3cret") {
			t.Errorf("the secret is echoed: %v", err)
		}
	}
}

// TestOAuthErrors checks which token endpoint answers end the run at once, and that the
// server's error_description is shown bounded and sanitized.
func TestOAuthErrors(t *testing.T) {
	var status atomic.Int64
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, body.Load().(string))
	}))
	t.Cleanup(srv.Close)
	key, _ := smart.GenerateKey(smart.AlgES384, "k")
	long := strings.Repeat("x", 10000)
	for _, c := range []struct {
		status    int
		body      string
		permanent bool
		says      string
	}{
		{400, `{"error":"invalid_grant","error_description":"assertion expired\u001b[2J"}`, true, "HTTP 400 invalid_grant: assertion expired\uFFFD[2J"},
		{401, `{"error":"invalid_client","error_description":"unknown kid"}`, true, "HTTP 401 invalid_client: unknown kid"},
		{400, `{"error":"invalid_scope","error_description":"` + long + `"}`, true, "(10000 bytes)"},
		{400, `{"error":"unauthorized_client"}`, true, "unauthorized_client"},
		{400, `{"error":"unsupported_grant_type"}`, true, "unsupported_grant_type"},
		{403, `<html>forbidden</html>`, true, "HTTP 403"},
		{503, `{"error":"temporarily_unavailable"}`, false, "HTTP 503 temporarily_unavailable"},
		{429, ``, false, "HTTP 429"},
	} {
		status.Store(int64(c.status))
		body.Store(c.body)
		cl := &smart.Client{ClientID: "c", TokenURL: srv.URL + "/token", Key: key}
		_, err := cl.Token(t.Context())
		wantErr(t, err, "token request to "+srv.URL+"/token: ", c.says)
		if ehrhttp.IsPermanent(err) != c.permanent {
			t.Errorf("HTTP %d %s: permanent %v, want %v", c.status, c.body[:min(len(c.body), 40)], !c.permanent, c.permanent)
		}
		if len(err.Error()) > 800 {
			t.Errorf("error of %d bytes", len(err.Error()))
		}
	}
}

func TestDiscoveryRefusesHTTPTokenEndpoint(t *testing.T) {
	var plainHits atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { plainHits.Add(1) }))
	t.Cleanup(plain.Close)
	ehr := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"token_endpoint":%q}`, plain.URL+"/token")
	}))
	t.Cleanup(ehr.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ehr.Certificate())
	policy, _ := ehrhttp.NewPolicy(ehr.URL, nil)
	_, err := smart.Discover(t.Context(), ehrhttp.NewClient(ehrhttp.Options{RootCAs: pool}), ehr.URL, policy)
	wantErr(t, err, "not sending the client credentials to "+plain.URL+"/token", "the token endpoint is http under the https FHIR base")
	if !ehrhttp.IsPermanent(err) || plainHits.Load() != 0 {
		t.Errorf("permanent %v; %d requests reached the http endpoint", ehrhttp.IsPermanent(err), plainHits.Load())
	}
}

func TestTokenEndpointRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/token?x=1", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirecting.Close)
	c := &smart.Client{ClientID: "c", TokenURL: redirecting.URL + "/token", Method: smart.ClientSecretPost, Secret: "s"}
	_, err := c.Token(t.Context())
	wantErr(t, err, "HTTP 307", "redirects to "+other.URL+"/token;", "give the final URL with --token-url")
	if elsewhere.Load() != 0 || !ehrhttp.IsPermanent(err) {
		t.Errorf("the redirect was followed (%d requests), or is retried", elsewhere.Load())
	}
}

func TestFileToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte("first\n"), 0o600)
	ft := &smart.FileToken{Path: p}
	tok, err := ft.Token(t.Context())
	if err != nil || tok != "first" {
		t.Fatalf("token %q, %v", tok, err)
	}
	ft.Invalidate("first") // the server said 401, and the file still holds it
	_, err = ft.Token(t.Context())
	wantErr(t, err, "the server rejected the bearer token in "+p)
	if !ehrhttp.IsPermanent(err) {
		t.Error("a rejected token is retried")
	}
	os.WriteFile(p, []byte("second"), 0o600) // refreshed by another process
	if tok, err := ft.Token(t.Context()); err != nil || tok != "second" {
		t.Errorf("after refresh: %q, %v", tok, err)
	}
	os.WriteFile(p, nil, 0o600)
	ft = &smart.FileToken{Path: p}
	_, err = ft.Token(t.Context())
	wantErr(t, err, "is empty")
}

func TestFileModeProblem(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key.jwk")
	os.WriteFile(p, []byte("{}"), 0o600)
	if msg := smart.FileModeProblem(p); msg != "" {
		t.Errorf("0600: %q", msg)
	}
	os.Chmod(p, 0o644)
	if msg := smart.FileModeProblem(p); !strings.Contains(msg, "mode 0644") || !strings.Contains(msg, "chmod 600") {
		t.Errorf("0644: %q", msg)
	}
}
