package producer_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/smart"
	"github.com/fhirstream/fhirstream/schemas"
)

// The tests here run fetch, as the command does, against hostile or misconfigured EHRs
// on loopback (https, with a CA file for httptest's certificate). Each asserts the
// message the operator reads, and that the token never reached a server it must not.

const leakToken = "tok-never-elsewhere"

// fakeEHR is an https Bulk Data server whose manifest the test writes; every request's
// path and Authorization header are recorded.
type fakeEHR struct {
	*httptest.Server
	statusURL string                                       // Content-Location of the kickoff; default <URL>/status
	manifest  func(base string) string                     // the status answer
	files     func(w http.ResponseWriter, r *http.Request) // default: one Patient line
	mu        sync.Mutex
	seen      []string // "path auth"
}

func newFakeEHR(t *testing.T, tls bool, manifest func(base string) string) *fakeEHR {
	t.Helper()
	e := &fakeEHR{manifest: manifest}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.URL.Path+" "+r.Header.Get("Authorization"))
		e.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/$export"):
			loc := e.statusURL
			if loc == "" {
				loc = e.URL + "/status"
			}
			w.Header().Set("Content-Location", loc)
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/status":
			io.WriteString(w, e.manifest(e.URL))
		case e.files != nil:
			e.files(w, r)
		default:
			io.WriteString(w, `{"resourceType":"Patient","id":"p1"}`+"\n")
		}
	})
	if tls {
		e.Server = httptest.NewTLSServer(h)
	} else {
		e.Server = httptest.NewServer(h)
	}
	t.Cleanup(e.Close)
	return e
}

func (e *fakeEHR) sawToken() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.seen {
		if strings.Contains(s, leakToken) {
			return true
		}
	}
	return false
}

func (e *fakeEHR) requests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

func patientManifest(fileURL string) string {
	return fmt.Sprintf(`{"transactionTime":"2025-01-01T00:00:00Z","request":"x","requiresAccessToken":true,"output":[{"type":"Patient","url":%q}],"error":[]}`, fileURL)
}

// hostileConfig is a fetch of ehr with a bearer token file and a CA file trusting
// httptest's certificate.
func hostileConfig(t *testing.T, c *testkafka.Cluster, ehr *fakeEHR) producer.Config {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ehr.Certificate().Raw}), 0o600)
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte(leakToken), 0o600)
	cfg := fastConfig(c, ehr.URL)
	cfg.CAFile, cfg.BearerTokenFile, cfg.ManifestDir = ca, tok, filepath.Join(dir, "manifests")
	return cfg
}

func TestIntegrationFetchTokenPolicy(t *testing.T) {
	other := newFakeEHR(t, true, nil)  // same host, another port: another origin
	plain := newFakeEHR(t, false, nil) // http
	cases := []struct {
		name     string
		setup    func(ehr *fakeEHR)
		stranger *fakeEHR
		want     string // the error, with BASE, OTHER and PLAIN for the servers' URLs
	}{
		{"file on another origin", func(ehr *fakeEHR) {
			ehr.manifest = func(string) string { return patientManifest(other.URL + "/Patient.ndjson?X-Amz-Signature=SIGNED") }
		}, other, "output file 0 (Patient): download: not sending the access token to OTHER/Patient.ndjson: its origin OTHER is not the FHIR base's (BASE) nor a trusted one; if that server is meant to receive it, add --trust-origin OTHER"},
		{"status URL on another origin", func(ehr *fakeEHR) {
			ehr.statusURL = other.URL + "/status"
		}, other, "poll: not sending the access token to OTHER/status: its origin OTHER is not the FHIR base's (BASE) nor a trusted one; if that server is meant to receive it, add --trust-origin OTHER"},
		{"file over http under https", func(ehr *fakeEHR) {
			ehr.manifest = func(string) string { return patientManifest(plain.URL + "/Patient.ndjson") }
		}, plain, "output file 0 (Patient): download: not sending the access token to PLAIN/Patient.ndjson: it is http, and the FHIR base BASE is https (the token would travel in cleartext); the server must serve it over https"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newFakeEHR(t, true, func(base string) string { return patientManifest(base + "/Patient.ndjson") })
			tc.setup(ehr)
			before := tc.stranger.requests()
			cfg := hostileConfig(t, testkafka.New(t), ehr)
			_, err := producer.Fetch(context.Background(), cfg)
			want := strings.NewReplacer("BASE", ehr.URL, "OTHER", other.URL, "PLAIN", plain.URL).Replace(tc.want)
			if err == nil || err.Error() != want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, want)
			}
			if tc.stranger.sawToken() || tc.stranger.requests() != before {
				t.Errorf("the other server got %d requests (token: %v)", tc.stranger.requests()-before, tc.stranger.sawToken())
			}
			if !ehr.sawToken() {
				t.Error("the FHIR base never got the token")
			}
		})
	}
}

// TestIntegrationFetchSignedURLs has a file whose signed URL the server refuses: no error,
// table, log, record, checkpoint or audit manifest may show the signature.
func TestIntegrationFetchSignedURLs(t *testing.T) {
	c := testkafka.New(t)
	ehr := newFakeEHR(t, true, nil)
	ehr.manifest = func(base string) string {
		return fmt.Sprintf(`{"transactionTime":"2025-01-01T00:00:00Z","request":"x","requiresAccessToken":false,"output":[`+
			`{"type":"Patient","url":%q},{"type":"Observation","url":%q}],"error":[]}`,
			base+"/Patient.ndjson?X-Amz-Signature=SIGNED1", base+"/Observation.ndjson?X-Amz-Signature=SIGNED2")
	}
	ehr.files = func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/Observation") {
			w.WriteHeader(http.StatusBadGateway) // never recovers
			io.WriteString(w, "upstream "+r.URL.RawQuery)
			return
		}
		io.WriteString(w, `{"resourceType":"Patient","id":"p1"}`+"\n")
	}
	cfg := hostileConfig(t, c, ehr)
	cfg.Workers = 1
	var logs strings.Builder
	cfg.Log = newTextLogger(&logs)
	sum, err := producer.Fetch(context.Background(), cfg)
	want := "output file 1 (Observation): download " + ehr.URL + "/Observation.ndjson: HTTP 502: upstream X-Amz-Signature=… (gave up after 10 attempts)"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	var table strings.Builder
	sum.WriteTable(&table)
	t.Logf("error: %v\n%s", err, table.String())
	if !strings.Contains(table.String(), "reconciliation: FAILED") || strings.Contains(table.String(), "reconciliation: OK") {
		t.Errorf("table of a failed run:\n%s", table.String())
	}
	everything := err.Error() + table.String() + logs.String()
	for _, r := range c.ReadAll(t, schemas.MustTopics(cfg.Kafka.TopicPrefix).Raw("Patient"), schemas.MustTopics(cfg.Kafka.TopicPrefix).State("fetcher")) {
		everything += string(r.Value) + headerValues(r)
	}
	files, _ := filepath.Glob(filepath.Join(cfg.ManifestDir, "*"))
	if len(files) != 1 {
		t.Fatalf("audit manifests %v", files)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		b, _ := os.ReadFile(f)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("audit manifest %s has mode %04o, want 0600", f, st.Mode().Perm())
		}
		if !strings.Contains(string(b), ehr.URL+"/Patient.ndjson") {
			t.Errorf("audit manifest lost the file URL: %s", b)
		}
		everything += string(b)
	}
	for _, sig := range []string{"SIGNED1", "SIGNED2"} {
		if i := strings.Index(everything, sig); i >= 0 {
			t.Errorf("the signature %s shows: …%s…", sig, everything[max(0, i-120):i+10])
		}
	}
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func headerValues(r *kgo.Record) string {
	var b strings.Builder
	for _, h := range r.Headers {
		b.Write(h.Value)
		b.WriteByte(' ')
	}
	return b.String()
}

// TestIntegrationFetchCredentials fetches from the simulator with each kind of SMART
// credential, and checks that a refused one ends the run at once with the server's
// reason, and that credential files open to others draw a warning.
func TestIntegrationFetchCredentials(t *testing.T) {
	srv, err := ehrsim.New(ehrsim.Config{Dir: small, Auth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o644) // readable by others: warned about
	if err := srv.RegisterSecretClient("svc", "s3cret"); err != nil {
		t.Fatal(err)
	}
	keyFile := writeKey(t, srv, "keyed", smart.AlgRS384)
	os.Chmod(keyFile, 0o640)
	tok, err := (&smart.Client{ClientID: "svc", TokenURL: srv.TokenURL(), Method: smart.ClientSecretBasic, Secret: "s3cret"}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(tok), 0o600)

	for name, set := range map[string]func(*producer.Config){
		"client_secret_post, secret file": func(c *producer.Config) {
			c.ClientID, c.AuthMethod, c.ClientSecretFile = "svc", "client_secret_post", secretFile
		},
		"client_secret_basic, secret from the environment": func(c *producer.Config) { c.ClientID, c.ClientSecret = "svc", "s3cret" },
		"private_key_jwt":   func(c *producer.Config) { c.ClientID, c.KeyFile = "keyed", keyFile },
		"bearer token file": func(c *producer.Config) { c.BearerTokenFile = tokenFile },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := fastConfig(testkafka.New(t), srv.URL)
			set(&cfg)
			var logs strings.Builder
			cfg.Log = newTextLogger(&logs)
			sum, err := producer.Fetch(context.Background(), cfg)
			if err != nil || sum.Resources() != 27 {
				t.Fatalf("fetch: %v, %d resources", err, sum.Resources())
			}
			exposed := cfg.ClientSecretFile != "" || cfg.KeyFile != ""
			if warned := strings.Contains(logs.String(), "a credential file is exposed"); warned != exposed {
				t.Errorf("warning about an exposed credential file: %v, want %v\n%s", warned, exposed, logs.String())
			}
		})
	}

	t.Run("refused secret", func(t *testing.T) {
		cfg := fastConfig(testkafka.New(t), srv.URL)
		cfg.ClientID, cfg.ClientSecret = "svc", "wrong"
		cfg.Backoff.Initial, cfg.Backoff.Max = time.Second, time.Second // a retry would show in the time
		before := srv.Stats().AuthFailures.Load()
		start := time.Now()
		_, err := producer.Fetch(context.Background(), cfg)
		want := `kickoff ` + srv.URL + `/$export: token request to ` + srv.TokenURL() + `: HTTP 401 invalid_client: unknown client or wrong secret for "svc" (a permanent refusal: check the client id, key or secret, and scope registered at the EHR)`
		if err == nil || err.Error() != want {
			t.Fatalf("error:\n%v\nwant:\n%s", err, want)
		}
		if n := srv.Stats().AuthFailures.Load() - before; n != 1 || time.Since(start) > 900*time.Millisecond {
			t.Errorf("%d refused token requests in %s: a permanent refusal was retried", n, time.Since(start))
		}
	})
}
