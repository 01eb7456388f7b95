package bulk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

const small = "../../internal/ehrsim/testdata/small"

func server(t *testing.T, cfg ehrsim.Config) *ehrsim.Server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = small
	}
	srv, err := ehrsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func fastClient() *bulk.Client {
	return &bulk.Client{MinPoll: 5 * time.Millisecond, Backoff: bulk.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	epochMs := fmt.Sprint(now.Add(42 * time.Second).UnixMilli())
	for _, c := range []struct {
		in          string
		epochMillis bool
		want        time.Duration
		err         string // "" for none; else a word of the error
	}{
		{"3", false, 3 * time.Second, ""},
		{"0", false, 0, ""},
		{"36000", false, 10 * time.Hour, ""},
		{now.Add(90 * time.Second).Format(http.TimeFormat), false, 90 * time.Second, ""},
		{now.Add(-time.Minute).Format(http.TimeFormat), false, 0, ""},
		{epochMs, true, 42 * time.Second, ""},
		{epochMs, false, 0, "--accept-quirk retry-after-epoch-ms"},
		{"", false, 0, "neither"},
		{"soon", false, 0, "neither"},
		{"-1", false, 0, "neither"},
	} {
		got, err := bulk.ParseRetryAfter(c.in, now, c.epochMillis)
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ParseRetryAfter(%q, %v) = %v, %v; want %v, error with %q", c.in, c.epochMillis, got, err, c.want, c.err)
		}
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	b := bulk.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	for n := 0; n < 8; n++ {
		full := min(100*time.Millisecond<<n, time.Second)
		for range 50 {
			d := b.Delay(n)
			if d < full/2 || d > full {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", n, d, full/2, full)
			}
		}
	}
}

func TestManifestParsing(t *testing.T) {
	m, err := bulk.ParseManifest([]byte(`{"transactionTime":"2025-01-02T03:04:05.123Z","request":"x","requiresAccessToken":true,
		"output":[{"type":"Patient","url":"http://h/1","count":5},{"type":"Observation","url":"http://h/2","continuesInFile":"http://h/3"}],
		"error":[{"type":"OperationOutcome","url":"http://h/e"}],"deleted":[{"type":"Bundle","url":"http://h/d"}],
		"link":[{"relation":"next","url":"http://h/status?page=2"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !m.RequiresAccessToken || len(m.Output) != 2 || *m.Output[0].Count != 5 || m.Output[1].Count != nil ||
		m.Output[1].ContinuesInFile == "" || len(m.Error) != 1 || len(m.Deleted) != 1 || m.Link[0].Relation != "next" {
		t.Fatalf("manifest = %+v", m)
	}
	for _, bad := range []string{`{}`, `{"transactionTime":"2025-01-01T00:00:00Z","output":[{"url":"x"}]}`, `[`} {
		if _, err := bulk.ParseManifest([]byte(bad)); err == nil {
			t.Errorf("ParseManifest(%s) accepted", bad)
		}
	}
}

// TestPollingThroughFaults polls through 429s, 503s and transient OperationOutcomes to a
// paginated manifest.
func TestPollingThroughFaults(t *testing.T) {
	srv := server(t, ehrsim.Config{ResourcesPerFile: 4, ManifestPageSize: 2, PollsBeforeReady: 2,
		Faults: ehrsim.Faults{Status429: 2, Status5xx: 2, TransientOutcome: 2}})
	c := fastClient()
	var polls []int
	c.OnPoll = func(status int, _ string) { polls = append(polls, status) }
	ctx := context.Background()
	status, err := c.Kickoff(ctx, bulk.Request{Base: srv.URL, Types: []string{"Patient", "Observation"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Wait(ctx, status)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{429, 429, 503, 503, 500, 500, 202, 202, 200}
	if len(polls) < len(want) || !equal(polls[:len(want)], want) {
		t.Fatalf("polls = %v, want prefix %v", polls, want)
	}
	var total int64
	for _, f := range m.Output {
		total += *f.Count
	}
	// 5 Patients in 2 files, 20 Observations in 5 files; pages of 2 entries.
	if len(m.Output) != 7 || total != 25 || len(m.Pages) != 4 {
		t.Fatalf("output=%d total=%d pages=%d", len(m.Output), total, len(m.Pages))
	}
	if err := c.Delete(ctx, status); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, status); err == nil {
		t.Fatal("status still answers after DELETE")
	}
}

func TestFatalOutcomeText(t *testing.T) {
	srv := server(t, ehrsim.Config{Faults: ehrsim.Faults{FailExport: true}})
	c := fastClient()
	status, err := c.Kickoff(context.Background(), bulk.Request{Base: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Wait(context.Background(), status)
	var oe *bulk.OutcomeError
	if !errors.As(err, &oe) || oe.Transient || !strings.Contains(err.Error(), "will not complete") {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Kickoff(context.Background(), bulk.Request{Base: srv.URL, Level: bulk.LevelGroup, GroupID: "nope"}); err == nil ||
		!strings.Contains(err.Error(), "not known") {
		t.Fatalf("unknown group: %v", err)
	}
}

func TestKickoffParameters(t *testing.T) {
	srv := server(t, ehrsim.Config{})
	c := fastClient()
	ctx := context.Background()
	count := func(r bulk.Request) map[string]int64 {
		t.Helper()
		r.Base = srv.URL
		status, err := c.Kickoff(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.Wait(ctx, status)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, f := range m.Output {
			out[f.Type] += *f.Count
		}
		return out
	}
	if got := count(bulk.Request{}); got["Patient"] != 5 || got["Observation"] != 20 || got["Organization"] != 2 {
		t.Fatalf("system: %v", got)
	}
	if got := count(bulk.Request{Level: bulk.LevelPatient}); got["Organization"] != 0 || got["Patient"] != 5 {
		t.Fatalf("patient level: %v", got)
	}
	if got := count(bulk.Request{Types: []string{"Observation"}, TypeFilters: []string{"Observation?category=laboratory"}}); len(got) != 1 || got["Observation"] != 10 {
		t.Fatalf("_typeFilter: %v", got)
	}
	since := time.Date(2024, 3, 15, 0, 0, 0, 0, time.UTC)
	if got := count(bulk.Request{Types: []string{"Patient"}, Since: since}); got["Patient"] != 2 {
		t.Fatalf("_since: %v", got)
	}
	if got := count(bulk.Request{Level: bulk.LevelGroup, GroupID: "all", Post: true, Patients: []string{"Patient/p1"}, Types: []string{"Patient", "Observation"}}); got["Patient"] != 1 || got["Observation"] != 4 {
		t.Fatalf("POST patient: %v", got)
	}
}

// TestDownloadResumes reads files whose first downloads are cut off halfway, with and
// without gzip, and whose URLs expire; content must arrive whole and in order.
func TestDownloadResumes(t *testing.T) {
	srv := server(t, ehrsim.Config{Faults: ehrsim.Faults{TruncateDownloads: 2, ExpireFileURLs: 1}})
	c := fastClient()
	ctx := context.Background()
	status, _ := c.Kickoff(ctx, bulk.Request{Base: srv.URL, Types: []string{"Observation"}})
	m, err := c.Wait(ctx, status)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, m.Output[0].URL, false, 0); !errors.Is(err, bulk.ErrExpired) {
		t.Fatalf("first request of an expiring URL: %v", err)
	}
	m, _ = c.Wait(ctx, status) // refreshed URLs
	r, err := c.Open(ctx, m.Output[0].URL, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		if !strings.HasPrefix(sc.Text(), `{"resourceType":"Observation","id":"o`) {
			t.Fatalf("line %d corrupt: %.60s", n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 20 || r.Reconnects < 1 || srv.Stats().RangeRequests.Load() < 1 {
		t.Fatalf("lines=%d reconnects=%d ranges=%d", n, r.Reconnects, srv.Stats().RangeRequests.Load())
	}
	// Starting at an offset asks for a range.
	r2, err := c.Open(ctx, m.Output[0].URL, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2)
	r2.Close()
	if !strings.HasSuffix(string(b), "}\n") || len(b) == 0 {
		t.Fatalf("range read: %q", b[:min(len(b), 40)])
	}
}

type fakeAuth struct{ tok string }

func (f *fakeAuth) Token(context.Context) (string, error) { return f.tok, nil }
func (f *fakeAuth) Invalidate(string)                     {}

// TestNoAuthorizationAcrossHosts follows a redirect to another host and checks the bearer
// token did not go with it.
func TestNoAuthorizationAcrossHosts(t *testing.T) {
	got := make(chan string, 1)
	other := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.Write([]byte(`{"resourceType":"Patient","id":"x"}` + "\n"))
	})}
	ln := listen(t)
	go other.Serve(ln)
	t.Cleanup(func() { other.Close() })
	redirect := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+ln.Addr().String()+"/file", http.StatusFound)
	})}
	ln2 := listen(t)
	go redirect.Serve(ln2)
	t.Cleanup(func() { redirect.Close() })
	c := fastClient()
	c.Auth = &fakeAuth{tok: "secret"}
	c.Policy, _ = ehrhttp.NewPolicy("http://"+ln2.Addr().String(), nil)
	r, err := c.Open(context.Background(), "http://"+ln2.Addr().String()+"/f", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r)
	r.Close()
	if h := <-got; h != "" {
		t.Fatalf("Authorization forwarded across hosts: %q", h)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
