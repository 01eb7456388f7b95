// Package bulk is a FHIR Bulk Data Access (v2, with v3 additions) client: kickoff at
// system, patient or group level, polling the status URL, reading (paginated) manifests,
// and downloading NDJSON files with resumption.
//
// Its rules follow the IG's client guidance. Retry-After is honoured in full (seconds or
// an HTTP date; epoch milliseconds only when that server quirk is accepted), and a wait
// longer than MaxWait leaves is reported, not cut; without Retry-After polls back off
// exponentially with jitter; after a 429 the status is never polled faster again than
// half the rate that drew it. 429, 5xx and OperationOutcomes with issue code "transient"
// or "throttled" are retried; every other failure is permanent and ends the operation at
// once, with the OperationOutcome's text (or the body's), bounded. Requests follow
// producer/ehrhttp's rules: the bearer token goes only where Policy allows and only
// when asked for (the manifest's requiresAccessToken for files), never across a redirect
// that leaves the origin, and nothing received is waited for longer than IdleTimeout.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// TokenSource supplies bearer tokens (producer/smart.Client implements it). Invalidate is
// called with a token the server answered 401 to. Errors with a Permanent() method that
// returns true end the operation without retries.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// Client talks to one Bulk Data server. Fields left zero take the documented defaults.
type Client struct {
	// HTTP is the client used; default ehrhttp.NewClient's.
	HTTP *http.Client
	// Auth supplies tokens; nil for an open server.
	Auth TokenSource
	// Policy says which URLs may receive the token; required when Auth is set.
	Policy *ehrhttp.Policy
	// Log receives protocol events (URLs without queries, statuses, progress); never
	// tokens or content.
	Log *slog.Logger
	// Backoff paces polls without Retry-After and retries of failed requests.
	Backoff Backoff
	// MinPoll is the shortest wait between polls, also used for "Retry-After: 0"; default 1s.
	MinPoll time.Duration
	// MaxWait bounds one operation's waiting: a Wait from its first poll to the whole
	// manifest, a kickoff or a download with its retries. A Retry-After reaching past it
	// is an error that says so. Default 12 hours.
	MaxWait time.Duration
	// MaxAttempts bounds consecutive retries of a failing request; default 10.
	MaxAttempts int
	// IdleTimeout fails a request that receives nothing, headers or body bytes, for this
	// long; a download then resumes from where it stopped. Default 2 minutes.
	IdleTimeout time.Duration
	// MaxFileBytes fails a download whose file grows beyond this many bytes (identity
	// encoding); 0 sets no cap.
	MaxFileBytes int64
	// Accept lists the server quirks to tolerate (see Quirk).
	Accept Quirks
	// OnPoll, when set, is called after each status poll with its HTTP status and the
	// X-Progress text (for metrics and the progress display).
	OnPoll func(status int, progress string)

	initOnce sync.Once
	reached  atomic.Bool // the server has answered at least once
	pace     pacer
}

func (c *Client) init() {
	c.initOnce.Do(func() {
		if c.HTTP == nil {
			c.HTTP = ehrhttp.NewClient(ehrhttp.Options{})
		}
		if c.Log == nil {
			c.Log = slog.New(slog.DiscardHandler)
		}
		if c.MinPoll <= 0 {
			c.MinPoll = time.Second
		}
		if c.MaxWait <= 0 {
			c.MaxWait = 12 * time.Hour
		}
		if c.MaxAttempts <= 0 {
			c.MaxAttempts = 10
		}
		if c.IdleTimeout <= 0 {
			c.IdleTimeout = 2 * time.Minute
		}
	})
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

// maxLearnedInterval caps the poll interval learned from 429s.
const maxLearnedInterval = 5 * time.Minute

// pacer remembers the slowest poll rate a server has asked for by answering 429.
type pacer struct {
	mu       sync.Mutex
	lastPoll time.Time
	floor    time.Duration
}

// polled notes a status poll sent now.
func (p *pacer) polled(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var since time.Duration
	if !p.lastPoll.IsZero() {
		since = now.Sub(p.lastPoll)
	}
	p.lastPoll = now
	return since
}

// throttled halves the poll rate that drew a 429: interval is the time since the poll
// before.
func (p *pacer) throttled(interval time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.floor = min(max(p.floor, 2*interval), maxLearnedInterval)
}

func (p *pacer) minInterval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.floor
}

// retryDelay is how long to wait before the next poll or retry: the response's
// Retry-After when it has a readable one, else backoff for attempt; never below MinPoll.
// asked is the Retry-After value when it set the delay.
func (c *Client) retryDelay(resp *http.Response, attempt int) (d time.Duration, asked string, err error) {
	if resp != nil {
		if v := resp.Header.Get("Retry-After"); v != "" {
			d, err := ParseRetryAfter(v, time.Now(), c.Accept.Has(QuirkRetryAfterEpochMillis))
			var unreadable *UnreadableRetryAfterError
			switch {
			case errors.As(err, &unreadable):
				c.Log.Warn("bulk: unreadable Retry-After, backing off instead", "value", ehrhttp.Bound(v, 60))
			case err != nil:
				return 0, "", err
			case d > c.MinPoll:
				return d, ehrhttp.Bound(v, 40), nil
			default:
				return c.MinPoll, "", nil
			}
		}
	}
	return max(c.Backoff.Delay(attempt), c.MinPoll), "", nil
}

// MaxWaitError is an operation that would wait beyond MaxWait: its server's
// Retry-After reaches past it, or its export is simply not done in time.
type MaxWaitError struct {
	Op      string
	MaxWait time.Duration
	// Asked is the Retry-After that would pass the limit, and Wait what it asks for;
	// "" when no Retry-After did.
	Asked string
	Wait  time.Duration
	Left  time.Duration
}

func (e *MaxWaitError) Error() string {
	s := fmt.Sprintf("%s: not done within --max-wait %s", e.Op, e.MaxWait)
	if e.Asked != "" {
		s += fmt.Sprintf(": the server asks to wait %s more (Retry-After: %s) and %s of it is left", e.Wait.Round(time.Second), e.Asked, e.Left.Round(time.Second))
	}
	return s + "; raise --max-wait or run again later (an export in progress is resumed)"
}

// Permanent reports that retrying within this run cannot help.
func (e *MaxWaitError) Permanent() bool { return true }

// operation tracks one operation's retries against MaxAttempts and its MaxWait deadline.
type operation struct {
	c        *Client
	verb     string // "kickoff", "poll", "download"
	name     string // for messages: the verb and the URL, "poll https://…"
	failures int
	deadline time.Time
	paced    bool // status polls: never sooner than the interval 429s taught (pacer)
}

func (c *Client) operation(verb, u string) *operation {
	c.init()
	return &operation{c: c, verb: verb, name: verb + " " + ehrhttp.Redact(u), deadline: time.Now().Add(c.MaxWait)}
}

// wrap prefixes err with the operation; only with its verb when err names the URL itself
// (a refusal of the token policy).
func (o *operation) wrap(err error) error {
	var refused *ehrhttp.RefusedError
	if errors.As(err, &refused) {
		return fmt.Errorf("%s: %w", o.verb, err)
	}
	return fmt.Errorf("%s: %w", o.name, err)
}

// retry decides after a failure (err, or a refusing resp) whether to try again: it
// returns nil after sleeping the retry delay, or the error that ends the operation.
func (o *operation) retry(ctx context.Context, resp *http.Response, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if ehrhttp.IsPermanent(err) {
		return err
	}
	o.failures++
	if o.failures >= o.c.MaxAttempts {
		return ehrhttp.Permanent(fmt.Errorf("%w (gave up after %d attempts)", err, o.failures))
	}
	d, asked, derr := o.c.retryDelay(resp, o.failures-1)
	if derr != nil {
		return fmt.Errorf("%s: %w", o.name, derr)
	}
	o.c.Log.Warn("bulk: request failed, retrying", "op", o.name, "err", err, "in", d.Round(time.Millisecond))
	return o.sleep(ctx, d, asked)
}

// sleep waits d, unless that would pass the deadline; asked is the Retry-After that set
// d, if one did.
func (o *operation) sleep(ctx context.Context, d time.Duration, asked string) error {
	if o.paced {
		d = max(d, o.c.pace.minInterval())
	}
	if left := time.Until(o.deadline); d > left {
		e := &MaxWaitError{Op: o.name, MaxWait: o.c.MaxWait}
		if asked != "" {
			e.Asked, e.Wait, e.Left = asked, d, max(left, 0)
		}
		return e
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do sends a request built by newReq, with a bearer token when withToken and Policy
// allows its URL, renewing the token once on a 401. Transport errors come classified
// (ehrhttp.ClassifyNetwork).
func (c *Client) do(ctx context.Context, newReq func() (*http.Request, error), withToken bool) (*http.Response, error) {
	c.init()
	for try := 0; ; try++ {
		req, err := newReq()
		if err != nil {
			return nil, ehrhttp.Permanent(err)
		}
		if _, err := ehrhttp.ParseHTTPURL(req.URL.String()); err != nil {
			return nil, err
		}
		req = req.WithContext(ctx)
		var tok string
		if withToken && c.Auth != nil {
			if c.Policy == nil {
				return nil, ehrhttp.Permanent(errors.New("bulk client: a token source without a token policy"))
			}
			if err := c.Policy.Allows(req.URL); err != nil {
				return nil, err
			}
			if tok, err = c.Auth.Token(ctx); err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := ehrhttp.Do(c.HTTP, req, c.IdleTimeout)
		if err != nil {
			return nil, ehrhttp.ClassifyNetwork(err, c.reached.Load())
		}
		c.reached.Store(true)
		if resp.StatusCode == http.StatusUnauthorized && tok != "" && try == 0 {
			drain(resp)
			c.Log.Info("bulk: token rejected, renewing", "url", ehrhttp.RedactURL(req.URL))
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
