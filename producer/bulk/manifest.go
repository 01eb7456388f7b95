package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
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

// ParseManifest decodes one manifest page.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.TransactionTime.IsZero() {
		return nil, errors.New("manifest: no transactionTime")
	}
	for _, f := range m.Output {
		if f.URL == "" {
			return nil, fmt.Errorf("manifest: output entry without url")
		}
		if f.Type == "" && m.OutputOrganizedBy == "" {
			return nil, fmt.Errorf("manifest: output entry without type (and no outputOrganizedBy)")
		}
	}
	m.Pages = []json.RawMessage{b}
	return &m, nil
}

// Wait polls statusURL until the export completes and returns its whole manifest,
// following next links. Transient failures are retried; fatal ones return an *OutcomeError.
func (c *Client) Wait(ctx context.Context, statusURL string) (*Manifest, error) {
	m, err := c.page(ctx, statusURL, true)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{statusURL: true}
	next := nextLink(m.Link)
	for next != "" {
		if seen[next] {
			return nil, fmt.Errorf("manifest of %s: next link loops back to a page already read", redactURL(statusURL))
		}
		seen[next] = true
		p, err := c.page(ctx, next, false)
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

// page polls u until it answers 200 with a manifest page.
func (c *Client) page(ctx context.Context, u string, logProgress bool) (*Manifest, error) {
	failures := 0
	for polls := 0; ; polls++ {
		resp, err := c.do(ctx, func() (*http.Request, error) {
			req, err := http.NewRequest(http.MethodGet, u, nil)
			if err == nil {
				req.Header.Set("Accept", "application/json")
			}
			return req, err
		}, true)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			failures++
			if failures >= c.maxAttempts() {
				return nil, fmt.Errorf("poll %s: %w", redactURL(u), err)
			}
			c.log().Warn("bulk: status poll failed, retrying", "url", redactURL(u), "err", err)
			if err := sleep(ctx, c.wait(nil, failures)); err != nil {
				return nil, err
			}
			continue
		}
		progress := resp.Header.Get("X-Progress")
		if c.OnPoll != nil {
			c.OnPoll(resp.StatusCode, progress)
		}
		switch {
		case resp.StatusCode == http.StatusOK:
			body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
			resp.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("read manifest %s: %w", redactURL(u), err)
			}
			return ParseManifest(body)
		case resp.StatusCode == http.StatusAccepted:
			drain(resp)
			failures = 0
			if logProgress {
				c.log().Info("bulk: export in progress", "progress", progress)
			}
			if err := sleep(ctx, c.wait(resp, polls)); err != nil {
				return nil, err
			}
		default:
			oe := outcomeError("poll", u, resp)
			resp.Body.Close()
			failures++
			if !oe.Transient || failures >= c.maxAttempts() {
				return nil, oe
			}
			c.log().Warn("bulk: status poll refused, retrying", "status", oe.Status, "code", oe.Code)
			if err := sleep(ctx, c.wait(resp, failures)); err != nil {
				return nil, err
			}
		}
	}
}
