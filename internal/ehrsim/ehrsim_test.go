package ehrsim

import (
	"bufio"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

const small = "testdata/small"

// start runs a simulator on testdata/small (4 Patients, 2 Organizations, 20
// Observations) with cfg's other settings.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Dir == "" && cfg.Synth == 0 {
		cfg.Dir = small
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

type testClient struct {
	t     *testing.T
	token string
}

func (c *testClient) do(method, u string, body io.Reader, header map[string]string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// DisableCompression: the tests ask for gzip themselves and look at the raw body.
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var kickoffHeaders = map[string]string{"Accept": "application/fhir+json", "Prefer": "respond-async"}

// kickoff starts an export at path (with its query) and returns the status URL.
func (c *testClient) kickoff(srv *Server, path string) string {
	c.t.Helper()
	resp := c.do(http.MethodGet, srv.URL+path, nil, kickoffHeaders)
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("kickoff %s: HTTP %d: %s", path, resp.StatusCode, readAll(c.t, resp.Body))
	}
	return resp.Header.Get("Content-Location")
}

type manifestPage struct {
	TransactionTime     string
	Request             string
	RequiresAccessToken bool
	Output, Error       []manifestEntry
	Deleted             []manifestEntry
	Link                []struct{ Relation, URL string }
}

// wait polls statusURL until it answers 200 and returns the decoded page.
func (c *testClient) wait(statusURL string) manifestPage {
	c.t.Helper()
	for range 1000 {
		resp := c.do(http.MethodGet, statusURL, nil, nil)
		switch resp.StatusCode {
		case http.StatusAccepted:
			if resp.Header.Get("X-Progress") == "" || resp.Header.Get("Retry-After") == "" {
				c.t.Errorf("202 without X-Progress or Retry-After: %v", resp.Header)
			}
			time.Sleep(time.Millisecond)
			continue
		case http.StatusOK:
			var m manifestPage
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				c.t.Fatal(err)
			}
			return m
		default:
			c.t.Fatalf("status: HTTP %d: %s", resp.StatusCode, readAll(c.t, resp.Body))
		}
	}
	c.t.Fatal("export never completed")
	return manifestPage{}
}

// export runs a whole export and returns every line of every output file by type.
func (c *testClient) export(srv *Server, path string) (manifestPage, map[string][]string) {
	c.t.Helper()
	m := c.wait(c.kickoff(srv, path))
	lines := map[string][]string{}
	for _, o := range m.Output {
		lines[o.Type] = append(lines[o.Type], c.download(o.URL)...)
	}
	return m, lines
}

func (c *testClient) download(u string) []string {
	c.t.Helper()
	resp := c.do(http.MethodGet, u, nil, nil)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("download: HTTP %d", resp.StatusCode)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKickoffLevels(t *testing.T) {
	srv := start(t, Config{GroupIDs: []string{"cohort"}})
	c := &testClient{t: t}
	for path, wantTypes := range map[string]string{
		"/$export":                "Observation Organization Patient",
		"/Patient/$export":        "Observation Patient", // Organization is outside the Patient compartment
		"/Group/cohort/$export":   "Observation Patient",
		"/$export?_type=Patient":  "Patient",
		"/$export?_type=Patient,": "Patient",
	} {
		m, lines := c.export(srv, path)
		if got := typesOf(lines); got != wantTypes {
			t.Errorf("%s: types %q, want %q", path, got, wantTypes)
		}
		if m.Request != srv.URL+path {
			t.Errorf("%s: manifest request %q", path, m.Request)
		}
		for _, o := range m.Output {
			if o.Count == nil || *o.Count != int64(len(c.download(o.URL))) {
				t.Errorf("%s: %s count %v differs from its lines", path, o.Type, o.Count)
			}
		}
	}
	resp := c.do(http.MethodGet, srv.URL+"/Group/unknown/$export", nil, kickoffHeaders)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown group: HTTP %d", resp.StatusCode)
	}
}

func typesOf(lines map[string][]string) string {
	var ts []string
	for typ, ls := range lines {
		if len(ls) > 0 {
			ts = append(ts, typ)
		}
	}
	return strings.Join(sortStrings(ts), " ")
}

func sortStrings(s []string) []string {
	slices.Sort(s)
	return s
}

func TestKickoffRejects(t *testing.T) {
	srv := start(t, Config{})
	c := &testClient{t: t}
	for name, tc := range map[string]struct {
		path   string
		header map[string]string
		want   string
	}{
		"no Accept":       {"/$export", map[string]string{"Prefer": "respond-async"}, "Accept"},
		"no Prefer":       {"/$export", map[string]string{"Accept": "application/fhir+json"}, "respond-async"},
		"bad _since":      {"/$export?_since=yesterday", kickoffHeaders, "_since"},
		"bad _until":      {"/$export?_until=2024", kickoffHeaders, "_until"},
		"until<since":     {"/$export?_since=2024-05-01T00:00:00Z&_until=2024-01-01T00:00:00Z", kickoffHeaders, "not after"},
		"bad format":      {"/$export?_outputFormat=text/csv", kickoffHeaders, "_outputFormat"},
		"bad _typeFilter": {"/$export?_typeFilter=Observation", kickoffHeaders, "Type?search"},
		"nested element":  {"/$export?_elements=Observation.code.coding", kickoffHeaders, "root elements"},
		"system patient":  {"/$export", nil, ""}, // replaced below: POST body
	} {
		if name == "system patient" {
			continue
		}
		resp := c.do(http.MethodGet, srv.URL+tc.path, nil, tc.header)
		body := readAll(t, resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.want) || !strings.Contains(body, "OperationOutcome") {
			t.Errorf("%s: HTTP %d %s", name, resp.StatusCode, body)
		}
	}
	body := `{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/p1"}}]}`
	resp := c.do(http.MethodPost, srv.URL+"/$export", strings.NewReader(body), kickoffHeaders)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("patient parameter at system level: HTTP %d", resp.StatusCode)
	}
}

func TestKickoffPOSTParameters(t *testing.T) {
	srv := start(t, Config{})
	c := &testClient{t: t}
	body := `{"resourceType":"Parameters","parameter":[
		{"name":"_type","valueString":"Patient,Observation"},
		{"name":"patient","valueReference":{"reference":"Patient/p2"}},
		{"name":"patient","valueReference":{"reference":"Patient/p3"}}]}`
	resp := c.do(http.MethodPost, srv.URL+"/Patient/$export", strings.NewReader(body), kickoffHeaders)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST kickoff: HTTP %d: %s", resp.StatusCode, readAll(t, resp.Body))
	}
	m := c.wait(resp.Header.Get("Content-Location"))
	for _, o := range m.Output {
		for _, l := range c.download(o.URL) {
			if !strings.Contains(l, `"p2"`) && !strings.Contains(l, `"p3"`) && !strings.Contains(l, "Patient/p2") && !strings.Contains(l, "Patient/p3") {
				t.Errorf("%s line of another patient: %.90s", o.Type, l)
			}
		}
	}
	if len(m.Output) != 2 {
		t.Errorf("outputs %+v", m.Output)
	}
}

func TestKickoffFilters(t *testing.T) {
	srv := start(t, Config{})
	c := &testClient{t: t}
	count := func(path, typ string) int {
		_, lines := c.export(srv, path)
		return len(lines[typ])
	}
	// Patients were last updated on the first of January to May 2024, one a month.
	for path, want := range map[string]int{
		"/$export?_type=Patient":                                                                             5,
		"/$export?_type=Patient&_since=2024-02-15T00:00:00Z":                                                 3,
		"/$export?_type=Patient&_until=2024-02-15T00:00:00Z":                                                 2,
		"/$export?_type=Patient&_until=2024-03-01T00:00:00Z":                                                 3, // _until is inclusive
		"/$export?_type=Patient&_since=2024-01-15T00:00:00Z&_until=2024-04-15T00:00:00Z":                     3,
		"/$export?_type=Patient&_typeFilter=" + url.QueryEscape("Patient?gender=female"):                     3,
		"/$export?_type=Patient&_typeFilter=" + url.QueryEscape("Patient?gender=male,Patient?gender=female"): 5,
	} {
		if got := count(path, "Patient"); got != want {
			t.Errorf("%s: %d Patients, want %d", path, got, want)
		}
	}
	code := url.QueryEscape("Observation?code=http://loinc.org|8867-4")
	_, all := c.export(srv, "/$export?_type=Observation")
	var withCode int
	for _, l := range all["Observation"] {
		if strings.Contains(l, `"code":"8867-4"`) {
			withCode++
		}
	}
	if got := count("/$export?_type=Observation&_typeFilter="+code, "Observation"); got != withCode || withCode == 0 {
		t.Errorf("token _typeFilter: %d Observations, want %d", got, withCode)
	}
}

func TestKickoffElements(t *testing.T) {
	srv := start(t, Config{})
	c := &testClient{t: t}
	_, lines := c.export(srv, "/$export?_type=Observation,Patient&_elements=Observation.subject,gender")
	if len(lines["Observation"]) != 20 || len(lines["Patient"]) != 5 {
		t.Fatalf("got %d Observations, %d Patients", len(lines["Observation"]), len(lines["Patient"]))
	}
	for _, l := range lines["Observation"] {
		var obs map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &obs); err != nil {
			t.Fatal(err)
		}
		// Listed: subject; mandatory: status, code; always: resourceType, id, meta.
		var keys []string
		for k := range obs {
			keys = append(keys, k)
		}
		if got := strings.Join(sortStrings(keys), ","); got != "code,id,meta,resourceType,status,subject" {
			t.Errorf("Observation elements %s", got)
		}
		if !strings.Contains(string(obs["meta"]), `"code":"SUBSETTED"`) || !strings.Contains(string(obs["meta"]), "lastUpdated") {
			t.Errorf("meta %s: want the SUBSETTED tag beside lastUpdated", obs["meta"])
		}
	}
	for _, l := range lines["Patient"] {
		// Patient keeps everything it has (id, meta, gender): nothing removed, no tag.
		if strings.Contains(l, "SUBSETTED") || !strings.Contains(l, `"gender"`) {
			t.Errorf("Patient %s", l)
		}
	}
}

func TestPaginatedManifest(t *testing.T) {
	srv := start(t, Config{ResourcesPerFile: 4, ManifestPageSize: 2})
	c := &testClient{t: t}
	status := c.kickoff(srv, "/$export")
	page := c.wait(status)
	var outputs []manifestEntry
	pages := 1
	for {
		outputs = append(outputs, page.Output...)
		if len(page.Output) > 2 {
			t.Errorf("page %d has %d outputs", pages, len(page.Output))
		}
		var next string
		for _, l := range page.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			break
		}
		page = c.wait(next)
		pages++
	}
	// 5 Patients → 2 files, 20 Observations → 5, 2 Organizations → 1: 8 files, 4 pages.
	if len(outputs) != 8 || pages != 4 {
		t.Fatalf("%d outputs over %d pages", len(outputs), pages)
	}
	total := 0
	for _, o := range outputs {
		n := len(c.download(o.URL))
		if n > 4 || int64(n) != *o.Count {
			t.Errorf("file of %d lines, count %d", n, *o.Count)
		}
		total += n
	}
	if total != 27 {
		t.Errorf("%d lines in all, want 27", total)
	}
}

func TestFileRangeAndGzip(t *testing.T) {
	srv := start(t, Config{})
	c := &testClient{t: t}
	m := c.wait(c.kickoff(srv, "/$export?_type=Observation"))
	u := m.Output[0].URL
	whole := []byte(strings.Join(c.download(u), "\n") + "\n")

	resp := c.do(http.MethodGet, u, nil, map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Accept-Encoding gzip answered with %q", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, zr); got != string(whole) {
		t.Errorf("gzip body differs from the identity body")
	}
	// A source file is served from its precompressed copy, whose length is known.
	if resp.ContentLength <= 0 {
		t.Errorf("gzip download of a source file has Content-Length %d, want its copy's size", resp.ContentLength)
	}

	resp = c.do(http.MethodGet, u, nil, map[string]string{"Range": "bytes=100-"})
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-%d/%d", len(whole)-1, len(whole)) {
		t.Fatalf("Range: HTTP %d, Content-Range %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	if got := readAll(t, resp.Body); got != string(whole[100:]) {
		t.Errorf("Range body differs from the file's tail")
	}
	if srv.Stats().RangeRequests.Load() != 1 {
		t.Errorf("range requests = %d", srv.Stats().RangeRequests.Load())
	}
}

// Files written for one export (here split at 2 resources) have no precompressed copy and
// are compressed as served; the body must be the same either way.
func TestGzipOfJobFile(t *testing.T) {
	srv := start(t, Config{ResourcesPerFile: 2})
	c := &testClient{t: t}
	m := c.wait(c.kickoff(srv, "/$export?_type=Observation"))
	u := m.Output[0].URL
	whole := strings.Join(c.download(u), "\n") + "\n"
	resp := c.do(http.MethodGet, u, nil, map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Accept-Encoding gzip answered with %q", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, zr); got != whole {
		t.Errorf("gzip body differs from the identity body")
	}
}

func TestDeleteReleasesExport(t *testing.T) {
	srv := start(t, Config{})
	c := &testClient{t: t}
	status := c.kickoff(srv, "/$export")
	m := c.wait(status)
	if resp := c.do(http.MethodDelete, status, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: HTTP %d", resp.StatusCode)
	}
	if resp := c.do(http.MethodGet, status, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("status after DELETE: HTTP %d", resp.StatusCode)
	}
	if resp := c.do(http.MethodGet, m.Output[0].URL, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("file after DELETE: HTTP %d", resp.StatusCode)
	}
}

func TestPublicURL(t *testing.T) {
	srv := start(t, Config{PublicURL: "https://ehr.example.test/fhir/"})
	if srv.URL != "https://ehr.example.test/fhir" {
		t.Fatalf("URL = %q", srv.URL)
	}
	// Reach the server at its listen address, as the proxy would.
	resp := (&testClient{t: t}).do(http.MethodGet, "http://"+srv.Addr()+"/$export", nil, kickoffHeaders)
	if loc := resp.Header.Get("Content-Location"); !strings.HasPrefix(loc, "https://ehr.example.test/fhir/status/") {
		t.Errorf("Content-Location %q is not under the public URL", loc)
	}
	if _, err := New(Config{Dir: small, PublicURL: "ftp://x"}); err == nil {
		t.Error("an ftp public URL was accepted")
	}
}

// testKey is a client key made with go-jose, so the simulator's checks are tested
// without the fetcher's SMART client.
type testKey struct {
	priv jose.JSONWebKey
	alg  jose.SignatureAlgorithm
}

func newTestKey(t *testing.T, alg jose.SignatureAlgorithm, kid string) testKey {
	t.Helper()
	var k any
	var err error
	if alg == jose.RS384 {
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: string(alg)}, alg: alg}
}

func (k testKey) publicJWKS(t *testing.T) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.priv.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertion signs claims (iss, sub, aud, exp, jti set by default) with k.
func (k testKey) assertion(t *testing.T, clientID, aud string, edit func(map[string]any)) string {
	t.Helper()
	claims := map[string]any{"iss": clientID, "sub": clientID, "aud": aud,
		"exp": time.Now().Add(4 * time.Minute).Unix(), "jti": newID()}
	if edit != nil {
		edit(claims)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.priv.KeyID))
	if err != nil {
		t.Fatal(err)
	}
	s, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenRequest posts form (plus grant_type and scope) to the token endpoint and returns
// the status and the decoded answer.
func tokenRequest(t *testing.T, srv *Server, form url.Values, basic []string) (int, map[string]any) {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	form.Set("scope", "system/*.rs")
	req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func assertionForm(a string) url.Values {
	return url.Values{"client_assertion_type": {assertionType}, "client_assertion": {a}}
}

func TestAuth(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS384, jose.ES384} {
		t.Run(string(alg), func(t *testing.T) {
			srv := start(t, Config{Auth: true, TokenTTL: time.Minute})
			c := &testClient{t: t}
			if resp := c.do(http.MethodGet, srv.URL+"/$export", nil, kickoffHeaders); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("kickoff without a token: HTTP %d", resp.StatusCode)
			}
			key := newTestKey(t, alg, "k1")
			if err := srv.RegisterClient("app", key.publicJWKS(t)); err != nil {
				t.Fatal(err)
			}
			status, tok := tokenRequest(t, srv, assertionForm(key.assertion(t, "app", srv.TokenURL(), nil)), nil)
			if status != http.StatusOK || tok["token_type"] != "bearer" {
				t.Fatalf("token: HTTP %d %v", status, tok)
			}
			c.token = tok["access_token"].(string)
			m, lines := c.export(srv, "/$export?_type=Patient")
			if !m.RequiresAccessToken || len(lines["Patient"]) != 5 {
				t.Errorf("requiresAccessToken %v, %d Patients", m.RequiresAccessToken, len(lines["Patient"]))
			}
			c.token = ""
			if resp := c.do(http.MethodGet, m.Output[0].URL, nil, nil); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("file without a token: HTTP %d", resp.StatusCode)
			}
		})
	}
	open := start(t, Config{})
	m, _ := (&testClient{t: t}).export(open, "/$export?_type=Patient")
	if m.RequiresAccessToken {
		t.Error("open server: requiresAccessToken")
	}
	var conf map[string]any
	resp := (&testClient{t: t}).do(http.MethodGet, open.URL+"/.well-known/smart-configuration", nil, nil)
	if err := json.NewDecoder(resp.Body).Decode(&conf); err != nil || conf["token_endpoint"] != open.URL+"/auth/token" {
		t.Errorf("smart-configuration %v (%v)", conf, err)
	}
}

// TestAssertionChecks sends assertions that break one rule of SMART Backend Services
// each; every one must be refused with invalid_client and a reason.
func TestAssertionChecks(t *testing.T) {
	srv := start(t, Config{Auth: true})
	key := newTestKey(t, jose.ES384, "k1")
	if err := srv.RegisterClient("app", key.publicJWKS(t)); err != nil {
		t.Fatal(err)
	}
	stranger := newTestKey(t, jose.ES384, "k1") // same kid, another key
	replayed := key.assertion(t, "app", srv.TokenURL(), nil)
	if status, _ := tokenRequest(t, srv, assertionForm(replayed), nil); status != http.StatusOK {
		t.Fatalf("good assertion: HTTP %d", status)
	}
	cases := map[string]struct {
		assertion string
		reason    string
	}{
		"aud array":        {key.assertion(t, "app", "", func(c map[string]any) { c["aud"] = []string{srv.TokenURL()} }), "aud must be a JSON string"},
		"wrong aud":        {key.assertion(t, "app", srv.TokenURL()+"x", nil), "aud"},
		"sub differs":      {key.assertion(t, "app", srv.TokenURL(), func(c map[string]any) { c["sub"] = "other" }), "sub"},
		"no exp":           {key.assertion(t, "app", srv.TokenURL(), func(c map[string]any) { delete(c, "exp") }), "no exp"},
		"expired":          {key.assertion(t, "app", srv.TokenURL(), func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "exp"},
		"exp too far":      {key.assertion(t, "app", srv.TokenURL(), func(c map[string]any) { c["exp"] = time.Now().Add(10 * time.Minute).Unix() }), "5 minutes"},
		"no jti":           {key.assertion(t, "app", srv.TokenURL(), func(c map[string]any) { delete(c, "jti") }), "no jti"},
		"replayed jti":     {replayed, "replayed"},
		"unregistered key": {stranger.assertion(t, "app", srv.TokenURL(), nil), "verify"},
		"unknown client":   {key.assertion(t, "nobody", srv.TokenURL(), nil), "not registered"},
	}
	for name, c := range cases {
		status, out := tokenRequest(t, srv, assertionForm(c.assertion), nil)
		desc, _ := out["error_description"].(string)
		if status != http.StatusUnauthorized || out["error"] != "invalid_client" || !strings.Contains(desc, c.reason) {
			t.Errorf("%s: HTTP %d %v, want 401 invalid_client mentioning %q", name, status, out, c.reason)
		}
	}
}

func TestClientSecret(t *testing.T) {
	srv := start(t, Config{Auth: true})
	if err := srv.RegisterSecretClient("svc", "s3cr&t=x"); err != nil {
		t.Fatal(err)
	}
	if status, out := tokenRequest(t, srv, url.Values{}, []string{"svc", "s3cr&t=x"}); status != http.StatusOK {
		t.Errorf("client_secret_basic: HTTP %d %v", status, out)
	}
	if status, out := tokenRequest(t, srv, url.Values{"client_id": {"svc"}, "client_secret": {"s3cr&t=x"}}, nil); status != http.StatusOK {
		t.Errorf("client_secret_post: HTTP %d %v", status, out)
	}
	if status, out := tokenRequest(t, srv, url.Values{}, []string{"svc", "wrong"}); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("wrong secret: HTTP %d %v", status, out)
	}
	if status, out := tokenRequest(t, srv, url.Values{"client_id": {"svc"}, "client_secret": {"s3cr&t=x"}}, []string{"svc", "s3cr&t=x"}); status != http.StatusUnauthorized {
		t.Errorf("two methods at once: HTTP %d %v", status, out)
	}
}

// TestNoFetcherImports keeps the simulator an independent oracle: it must not build on
// the fetcher's code (producer/...), or a client bug would pass on both sides.
func TestNoFetcherImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v: %s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/fhirstream/fhirstream/producer") {
			t.Errorf("internal/ehrsim depends on %s", dep)
		}
	}
}

func TestStatusFaults(t *testing.T) {
	srv := start(t, Config{Faults: Faults{Status429: 2, Status5xx: 1, TransientOutcome: 1}})
	c := &testClient{t: t}
	status := c.kickoff(srv, "/$export")
	var got []string
	for range 4 {
		resp := c.do(http.MethodGet, status, nil, nil)
		body := readAll(t, resp.Body)
		code := ""
		if i := strings.Index(body, `"code":"`); i >= 0 {
			code = strings.SplitN(body[i+8:], `"`, 2)[0]
		}
		got = append(got, fmt.Sprintf("%d/%s", resp.StatusCode, code))
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if want := "429/throttled 429/throttled 503/transient 500/transient"; strings.Join(got, " ") != want {
		t.Errorf("polls answered %s, want %s", strings.Join(got, " "), want)
	}
	if m := c.wait(status); len(m.Output) == 0 {
		t.Error("no output after the faults")
	}

	failing := start(t, Config{Faults: Faults{FailExport: true}})
	resp := c.do(http.MethodGet, c.kickoff(failing, "/$export"), nil, nil)
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, `"exception"`) {
		t.Errorf("failed export: HTTP %d %s", resp.StatusCode, body)
	}
}

func TestDownloadFaults(t *testing.T) {
	t.Run("truncate", func(t *testing.T) {
		srv := start(t, Config{Faults: Faults{TruncateDownloads: 1}})
		c := &testClient{t: t}
		m := c.wait(c.kickoff(srv, "/$export?_type=Observation"))
		resp := c.do(http.MethodGet, m.Output[0].URL, nil, nil)
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("first download was not cut off")
		}
		if n := len(c.download(m.Output[0].URL)); n != 20 {
			t.Errorf("second download: %d lines", n)
		}
	})
	t.Run("expire", func(t *testing.T) {
		srv := start(t, Config{Faults: Faults{ExpireFileURLs: 1}})
		c := &testClient{t: t}
		status := c.kickoff(srv, "/$export?_type=Patient")
		old := c.wait(status).Output[0].URL
		if resp := c.do(http.MethodGet, old, nil, nil); resp.StatusCode != http.StatusGone {
			t.Fatalf("first request: HTTP %d, want 410", resp.StatusCode)
		}
		if resp := c.do(http.MethodGet, old, nil, nil); resp.StatusCode != http.StatusGone {
			t.Errorf("expired URL answered HTTP %d on retry", resp.StatusCode)
		}
		fresh := c.wait(status).Output[0].URL
		if fresh == old || len(c.download(fresh)) != 5 {
			t.Errorf("refreshed manifest URL %s (old %s)", fresh, old)
		}
	})
	t.Run("slow", func(t *testing.T) {
		srv := start(t, Config{Faults: Faults{SlowBytesPerSec: 1 << 20}})
		c := &testClient{t: t}
		m := c.wait(c.kickoff(srv, "/$export?_type=Patient"))
		if n := len(c.download(m.Output[0].URL)); n != 5 {
			t.Errorf("slow download: %d lines", n)
		}
	})
	t.Run("error-and-deleted", func(t *testing.T) {
		srv := start(t, Config{Faults: Faults{ErrorLines: 2, DeletedLines: 3}})
		c := &testClient{t: t}
		m := c.wait(c.kickoff(srv, "/$export"))
		if len(m.Error) != 1 || len(m.Deleted) != 1 {
			t.Fatalf("error %v deleted %v", m.Error, m.Deleted)
		}
		errs := c.download(m.Error[0].URL)
		if len(errs) != 2 || !strings.Contains(errs[0], "OperationOutcome") {
			t.Errorf("error file %v", errs)
		}
		del := c.download(m.Deleted[0].URL)
		if len(del) != 1 || strings.Count(del[0], `"method":"DELETE"`) != 3 {
			t.Errorf("deleted file %v", del)
		}
	})
	t.Run("token-expiry", func(t *testing.T) {
		srv := start(t, Config{Auth: true, Faults: Faults{ExpireTokensAfterFiles: 1}})
		key := newTestKey(t, jose.ES384, "k")
		if err := srv.RegisterClient("app", key.publicJWKS(t)); err != nil {
			t.Fatal(err)
		}
		_, out := tokenRequest(t, srv, assertionForm(key.assertion(t, "app", srv.TokenURL(), nil)), nil)
		tok, _ := out["access_token"].(string)
		c := &testClient{t: t, token: tok}
		m := c.wait(c.kickoff(srv, "/$export"))
		c.download(m.Output[0].URL) // the first file request revokes every token
		if resp := c.do(http.MethodGet, m.Output[1].URL, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("after revocation: HTTP %d, want 401", resp.StatusCode)
		}
	})
}

func TestCountLinesSkipsBlank(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/Patient.ndjson"
	if err := os.WriteFile(p, []byte("{\"a\":1}\n\n  \n{\"b\":2}"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, size, err := countLines(p)
	if err != nil || n != 2 || size != int64(len("{\"a\":1}\n\n  \n{\"b\":2}")) {
		t.Errorf("countLines = %d, %d, %v", n, size, err)
	}
}

func TestOrganizeOutputByPatient(t *testing.T) {
	srv := start(t, Config{ResourcesPerFile: 3})
	c := &testClient{t: t}
	resp := c.do(http.MethodGet, srv.URL+"/Patient/$export?organizeOutputBy=Patient", nil, kickoffHeaders)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("kickoff: HTTP %d %s", resp.StatusCode, readAll(t, resp.Body))
	}
	var m struct {
		OutputOrganizedBy string
		Output            []manifestEntry
	}
	status := resp.Header.Get("Content-Location")
	c.wait(status)
	if err := json.NewDecoder(c.do(http.MethodGet, status, nil, nil).Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.OutputOrganizedBy != "Patient" {
		t.Errorf("outputOrganizedBy %q", m.OutputOrganizedBy)
	}
	byURL := map[string]int{}
	for i, o := range m.Output {
		byURL[o.URL] = i
		if o.Type != "" {
			t.Errorf("organized output entry with type %q", o.Type)
		}
	}
	var (
		resources  int
		continued  int
		lastHeader string
	)
	for i, o := range m.Output {
		lines := c.download(o.URL)
		if int64(len(lines)) != *o.Count {
			t.Errorf("file %d: count %d, %d lines", i, *o.Count, len(lines))
		}
		if !strings.Contains(lines[0], `"name":"header"`) {
			t.Fatalf("file %d does not start with a header: %s", i, lines[0])
		}
		if i > 0 && m.Output[i-1].ContinuesInFile == o.URL && lines[0] != lastHeader {
			t.Errorf("file %d continues a block but starts with %s, not %s", i, lines[0], lastHeader)
		}
		inFile := 0
		for _, l := range lines {
			if strings.Contains(l, `"resourceType":"Parameters"`) {
				lastHeader = l
				continue
			}
			inFile++
			pid := strings.TrimSuffix(strings.SplitN(lastHeader, "Patient/", 2)[1], `"}}]}`)
			if !strings.Contains(l, `"id":"`+pid+`"`) && !strings.Contains(l, `"Patient/`+pid+`"`) {
				t.Errorf("resource outside its block (patient %s): %.80s", pid, l)
			}
		}
		if inFile > 3 {
			t.Errorf("file %d holds %d resources, limit 3", i, inFile)
		}
		resources += inFile
		if o.ContinuesInFile != "" {
			continued++
			if j, ok := byURL[o.ContinuesInFile]; !ok || j != i+1 {
				t.Errorf("file %d continuesInFile %s: not the next file", i, o.ContinuesInFile)
			}
		}
	}
	// 5 Patients and their 20 Observations; Organizations are outside the compartment.
	if resources != 25 || continued == 0 {
		t.Errorf("%d resources, %d continued files", resources, continued)
	}
	bad := c.do(http.MethodGet, srv.URL+"/$export?organizeOutputBy=Encounter", nil, kickoffHeaders)
	if bad.StatusCode != http.StatusBadRequest {
		t.Errorf("organizeOutputBy=Encounter: HTTP %d", bad.StatusCode)
	}
}

// TestQuirkFaults checks each reference-server quirk switch does what it says on the wire.
func TestQuirkFaults(t *testing.T) {
	t.Run("retry-after-epoch-ms", func(t *testing.T) {
		srv := start(t, Config{RetryAfter: 3 * time.Second, Faults: Faults{RetryAfterEpochMillis: true}})
		c := &testClient{t: t}
		resp := c.do(http.MethodGet, c.kickoff(srv, "/$export"), nil, nil)
		ms, err := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 64)
		if resp.StatusCode != http.StatusAccepted || err != nil {
			t.Fatalf("HTTP %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if d := time.Until(time.UnixMilli(ms)); d < 2*time.Second || d > 4*time.Second {
			t.Errorf("Retry-After %d is %s from now, want about 3s", ms, d)
		}
	})
	t.Run("wrong-count", func(t *testing.T) {
		srv := start(t, Config{Faults: Faults{WrongCount: true}})
		c := &testClient{t: t}
		m := c.wait(c.kickoff(srv, "/$export?_type=Patient"))
		if got := len(c.download(m.Output[0].URL)); *m.Output[0].Count != int64(got)+1 {
			t.Errorf("count %d for %d lines", *m.Output[0].Count, got)
		}
	})
	t.Run("continues-off-by-one", func(t *testing.T) {
		srv := start(t, Config{ResourcesPerFile: 4, Faults: Faults{ContinuesOffByOne: true}})
		c := &testClient{t: t}
		m := c.wait(c.kickoff(srv, "/$export?organizeOutputBy=Patient"))
		checked := 0
		for i, o := range m.Output {
			if o.ContinuesInFile == "" {
				continue
			}
			// Job files are numbered in manifest order, organized output first: the block
			// of file i continues in file i+1, and the quirk names i+2 (which past the end
			// names no file at all).
			if !strings.HasSuffix(o.ContinuesInFile, fmt.Sprintf("/%d", i+2)) {
				t.Errorf("file %d continues in %s, want the file after the next", i, o.ContinuesInFile)
			}
			checked++
		}
		if checked == 0 {
			t.Fatal("no continued block: the test data needs a block spanning files")
		}
	})
	t.Run("overlapping-deleted", func(t *testing.T) {
		srv := start(t, Config{Faults: Faults{DeletedLines: 3, OverlappingDeleted: true}})
		c := &testClient{t: t}
		m := c.wait(c.kickoff(srv, "/$export?_type=Patient"))
		if len(m.Deleted) != 2 {
			t.Fatalf("%d deleted files, want 2", len(m.Deleted))
		}
		a, b := strings.Join(c.download(m.Deleted[0].URL), ""), strings.Join(c.download(m.Deleted[1].URL), "")
		if !strings.Contains(a, `deleted-2"`) || !strings.Contains(b, `deleted-2"`) || strings.Contains(a, `deleted-3"`) {
			t.Errorf("deleted files %s and %s, want deleted-2 in both", a, b)
		}
	})
}

// TestPollRateLimit checks the rate-limit fault: the poll over the limit and the polls
// during the block answer 429 with the block's remaining time as Retry-After.
func TestPollRateLimit(t *testing.T) {
	srv := start(t, Config{PollsBeforeReady: 10, Faults: Faults{PollRateLimit: 2, PollRateWindow: time.Hour, PollRateBlock: time.Hour}})
	c := &testClient{t: t}
	status := c.kickoff(srv, "/$export")
	var got []int
	for range 4 {
		resp := c.do(http.MethodGet, status, nil, nil)
		got = append(got, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "3600" {
			t.Errorf("Retry-After %q, want 3600", resp.Header.Get("Retry-After"))
		}
	}
	if !slices.Equal(got, []int{202, 202, 429, 429}) || srv.Stats().RateLimited.Load() != 2 {
		t.Errorf("polls answered %v (rate limited %d), want 202 202 429 429", got, srv.Stats().RateLimited.Load())
	}
	if n := len(srv.PollTimes()); n != 4 {
		t.Errorf("%d poll times recorded, want 4", n)
	}
}
