package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// Manifest is a complete export manifest; pages linked with link[relation=next] are merged
// into one (Pages holds the raw JSON of each, for the audit copy).
type Manifest struct {
	TransactionTime     time.Time `json:"transactionTime"`
	Request             string    `json:"request"`
	RequiresAccessToken bool      `json:"requiresAccessToken"`
	// OutputOrganizedBy (v3) is the organizeOutputBy type: output files then mix types in
	// resource blocks, each led by a header Parameters resource, and have no type.
	OutputOrganizedBy string `json:"outputOrganizedBy,omitempty"`
	Output            []File `json:"output"`
	Error             []File `json:"error"`
	Deleted           []File `json:"deleted"`
	Link              []Link `json:"link,omitempty"`

	Pages []json.RawMessage `json:"-"`
}

// File is one manifest entry.
type File struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count *int64 `json:"count,omitempty"`
	// ContinuesInFile (v3) names the file the last resource of this one continues in.
	ContinuesInFile string `json:"continuesInFile,omitempty"`
}

// Link is a manifest link.
type Link struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// resourceTypeShape is what a FHIR resource type name looks like.
var resourceTypeShape = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)

// ParseManifest decodes one manifest page and checks what the fetcher relies on:
// transactionTime, absolute http(s) URLs, and resource types shaped like FHIR's (a
// type becomes a topic name). Everything a failure quotes is bounded.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, ehrhttp.Permanent(fmt.Errorf("manifest: %s", ehrhttp.Bound(err.Error(), maxEcho)))
	}
	if m.TransactionTime.IsZero() {
		return nil, ehrhttp.Permanent(errors.New("manifest: no transactionTime"))
	}
	if m.OutputOrganizedBy != "" && !resourceTypeShape.MatchString(m.OutputOrganizedBy) {
		return nil, ehrhttp.Permanent(fmt.Errorf("manifest: outputOrganizedBy %q is not a FHIR resource type", ehrhttp.Bound(m.OutputOrganizedBy, 64)))
	}
	for kind, fs := range map[string][]File{"output": m.Output, "error": m.Error, "deleted": m.Deleted} {
		for i, f := range fs {
			if err := checkEntry(kind, i, f, kind == "output" && m.OutputOrganizedBy == ""); err != nil {
				return nil, ehrhttp.Permanent(err)
			}
		}
	}
	for _, l := range m.Link {
		if _, err := ehrhttp.ParseHTTPURL(l.URL); err != nil {
			return nil, ehrhttp.Permanent(fmt.Errorf("manifest: link %q: %w", ehrhttp.Bound(l.Relation, 40), err))
		}
	}
	m.Pages = []json.RawMessage{b}
	return &m, nil
}

func checkEntry(kind string, i int, f File, needType bool) error {
	if f.URL == "" {
		return fmt.Errorf("manifest: %s entry %d has no url", kind, i)
	}
	if _, err := ehrhttp.ParseHTTPURL(f.URL); err != nil {
		return fmt.Errorf("manifest: %s entry %d: %w", kind, i, err)
	}
	if f.ContinuesInFile != "" {
		if _, err := ehrhttp.ParseHTTPURL(f.ContinuesInFile); err != nil {
			return fmt.Errorf("manifest: %s entry %d: continuesInFile: %w", kind, i, err)
		}
	}
	switch {
	case f.Type == "" && needType:
		return fmt.Errorf("manifest: %s entry %d has no type (and the manifest no outputOrganizedBy)", kind, i)
	case f.Type != "" && !resourceTypeShape.MatchString(f.Type):
		return fmt.Errorf("manifest: %s entry %d has type %q, not a FHIR resource type", kind, i, ehrhttp.Bound(f.Type, 64))
	case f.Count != nil && *f.Count < 0:
		return fmt.Errorf("manifest: %s entry %d has count %d", kind, i, *f.Count)
	}
	return nil
}

// Wait polls statusURL until the export completes and returns its whole manifest,
// following next links. Transient failures are retried; the first permanent one (an
// *OutcomeError, a refusal of the token policy, a *MaxWaitError) is returned. MaxWait
// bounds the whole wait, every page included.
func (c *Client) Wait(ctx context.Context, statusURL string) (*Manifest, error) {
	op := c.operation("poll", statusURL)
	op.paced = true
	m, err := c.page(ctx, op, statusURL, true)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{statusURL: true}
	next := nextLink(m.Link)
	for next != "" {
		if seen[next] {
			return nil, ehrhttp.Permanent(fmt.Errorf("manifest of %s: next link loops back to a page already read", ehrhttp.Redact(statusURL)))
		}
		seen[next] = true
		p, err := c.page(ctx, op, next, false)
		if err != nil {
			return nil, err
		}
		m.Output = append(m.Output, p.Output...)
		m.Error = append(m.Error, p.Error...)
		m.Deleted = append(m.Deleted, p.Deleted...)
		m.Pages = append(m.Pages, p.Pages...)
		next = nextLink(p.Link)
	}
	m.Link = nil
	return m, nil
}

func nextLink(ls []Link) string {
	for _, l := range ls {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// maxManifestBytes bounds one manifest page.
const maxManifestBytes = 256 << 20

// page polls u until it answers 200 with a manifest page.
func (c *Client) page(ctx context.Context, op *operation, u string, logProgress bool) (*Manifest, error) {
	for polls := 0; ; polls++ {
		since := c.pace.polled(time.Now())
		resp, err := c.do(ctx, func() (*http.Request, error) {
			req, err := http.NewRequest(http.MethodGet, u, nil)
			if err == nil {
				req.Header.Set("Accept", "application/json")
			}
			return req, err
		}, true)
		if err != nil {
			if err := op.retry(ctx, nil, op.wrap(err)); err != nil {
				return nil, err
			}
			continue
		}
		progress := ehrhttp.Bound(resp.Header.Get("X-Progress"), 100)
		if c.OnPoll != nil {
			c.OnPoll(resp.StatusCode, progress)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
			resp.Body.Close()
			if err != nil {
				if err := op.retry(ctx, nil, fmt.Errorf("read manifest %s: %w", ehrhttp.Redact(u), err)); err != nil {
					return nil, err
				}
				continue
			}
			if len(body) > maxManifestBytes {
				return nil, ehrhttp.Permanent(fmt.Errorf("manifest %s: larger than %d MiB", ehrhttp.Redact(u), maxManifestBytes>>20))
			}
			return ParseManifest(body)
		case http.StatusAccepted:
			drain(resp)
			op.failures = 0
			if logProgress {
				c.Log.Info("bulk: export in progress", "progress", progress)
			}
			d, asked, err := c.retryDelay(resp, polls)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", op.name, err)
			}
			if err := op.sleep(ctx, d, asked); err != nil {
				return nil, err
			}
		default:
			oe := outcomeError("poll", u, resp)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests && since > 0 {
				c.pace.throttled(since)
				c.Log.Warn("bulk: the server rate-limits polling; polling slower from now on", "interval", c.pace.minInterval())
			}
			if err := op.retry(ctx, resp, oe); err != nil {
				return nil, err
			}
		}
	}
}
