// Package bulk is a FHIR Bulk Data Access (v2, with v3 additions) client: kickoff at
// system, patient or group level, polling the status URL, reading (paginated) manifests,
// and downloading NDJSON files with resumption.
//
// Its rules follow the IG's client guidance: Retry-After is honoured (seconds or an HTTP
// date, capped); otherwise polls back off exponentially with jitter; 429, 5xx and
// OperationOutcomes with issue code "transient" are retried; any other error is fatal
// and carries the OperationOutcome's text. The bearer token is sent to file URLs only
// when the manifest says requiresAccessToken, and never across a redirect to another host.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// TokenSource supplies bearer tokens (producer/smart.Client implements it). Invalidate is
// called with a token the server answered 401 to.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// Client talks to one Bulk Data server. Fields left zero take the documented defaults.
type Client struct {
	// HTTP is the client used; default a client that drops Authorization on redirects to
	// another host (see NewHTTPClient).
	HTTP *http.Client
	// Auth supplies tokens; nil for an open server.
	Auth TokenSource
	// Log receives protocol events (URLs, statuses, progress); never tokens or content.
	Log *slog.Logger
	// Backoff paces polls without Retry-After and retries of failed requests.
	Backoff Backoff
	// MaxRetryAfter caps a server's Retry-After; default 2 minutes.
	MaxRetryAfter time.Duration
	// MinPoll is the shortest wait between polls, also used for "Retry-After: 0"; default 1s.
	MinPoll time.Duration
	// MaxAttempts bounds consecutive retries of a failing request; default 10.
	MaxAttempts int
	// OnPoll, when set, is called after each status poll with its HTTP status and the
	// X-Progress text (for metrics and the progress display).
	OnPoll func(status int, progress string)
}

// NewHTTPClient returns an HTTP client that never forwards the Authorization header to
// a host other than the one it was sent to.
func NewHTTPClient() *http.Client {
	return &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if req.URL.Host != via[0].URL.Host {
			req.Header.Del("Authorization")
		}
		return nil
	}}
}

func (c *Client) http() *http.Client {
	if c.HTTP == nil {
		c.HTTP = NewHTTPClient()
	}
	return c.HTTP
}

func (c *Client) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func (c *Client) maxAttempts() int {
	if c.MaxAttempts <= 0 {
		return 10
	}
	return c.MaxAttempts
}

// Backoff is exponential backoff with full jitter: attempt n waits a random duration in
// [Initial·2ⁿ/2, Initial·2ⁿ], capped at Max.
type Backoff struct {
	Initial time.Duration // default 500ms
	Max     time.Duration // default 30s
}

// Delay returns the wait before retry attempt n (0-based).
func (b Backoff) Delay(n int) time.Duration {
	initial, maxd := b.Initial, b.Max
	if initial <= 0 {
		initial = 500 * time.Millisecond
	}
	if maxd <= 0 {
		maxd = 30 * time.Second
	}
	d := initial
	for i := 0; i < n && d < maxd; i++ {
		d *= 2
	}
	d = min(d, maxd)
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date. ok is false
// when the header is absent or unreadable.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// wait is how long to wait before the next poll or retry.
func (c *Client) wait(resp *http.Response, attempt int) time.Duration {
	minPoll := c.MinPoll
	if minPoll <= 0 {
		minPoll = time.Second
	}
	capd := c.MaxRetryAfter
	if capd <= 0 {
		capd = 2 * time.Minute
	}
	if resp != nil {
		if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(max(d, minPoll), capd)
		}
	}
	return max(c.Backoff.Delay(attempt), minPoll)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// OutcomeError is a failed request, with the OperationOutcome's text when there was one.
type OutcomeError struct {
	Op        string
	URL       string
	Status    int
	Code      string // first issue code
	Text      string // diagnostics / details.text of the issues
	Transient bool
}

func (e *OutcomeError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.Op, redactURL(e.URL), e.Status)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// ErrExpired is wrapped by errors for file URLs that are no longer valid (403, 404, 410):
// the caller refreshes the manifest or starts a new export.
var ErrExpired = errors.New("file URL expired")

// outcomeError reads the response body as an OperationOutcome, if it is one.
func outcomeError(op, u string, resp *http.Response) *OutcomeError {
	e := &OutcomeError{Op: op, URL: u, Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if v, err := fastjson.ParseBytes(body); err == nil && string(v.GetStringBytes("resourceType")) == "OperationOutcome" {
		var texts []string
		for _, is := range v.GetArray("issue") {
			code := string(is.GetStringBytes("code"))
			if e.Code == "" {
				e.Code = code
			}
			if code == "transient" || code == "throttled" {
				e.Transient = true
			}
			if t := is.GetStringBytes("diagnostics"); t != nil {
				texts = append(texts, string(t))
			} else if t := is.GetStringBytes("details", "text"); t != nil {
				texts = append(texts, string(t))
			}
		}
		e.Text = strings.Join(texts, "; ")
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 && e.Code != "exception" && e.Code != "fatal" {
		e.Transient = e.Transient || resp.StatusCode == http.StatusTooManyRequests || e.Code == ""
	}
	return e
}

// redactURL drops the query, which may carry signed-URL secrets.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparsable URL>"
	}
	p.RawQuery, p.User = "", nil
	return p.String()
}

// do sends req with a bearer token when withToken, renewing the token once on a 401.
func (c *Client) do(ctx context.Context, newReq func() (*http.Request, error), withToken bool) (*http.Response, error) {
	for try := 0; ; try++ {
		req, err := newReq()
		if err != nil {
			return nil, err
		}
		req = req.WithContext(ctx)
		var tok string
		if withToken && c.Auth != nil {
			tok, err = c.Auth.Token(ctx)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.http().Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusUnauthorized && withToken && c.Auth != nil && try == 0 {
			drain(resp)
			c.log().Info("bulk: token rejected, renewing", "url", redactURL(req.URL.String()))
			c.Auth.Invalidate(tok)
			continue
		}
		return resp, nil
	}
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
