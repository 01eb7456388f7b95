package bulk

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// maxEcho bounds each string a server sent that an error repeats.
const maxEcho = 500

// OutcomeError is a request the server refused: its status, and what it said why (the
// OperationOutcome's issues, or the start of a text or JSON body, and the
// WWW-Authenticate challenge of a 401), bounded and sanitized.
type OutcomeError struct {
	Op        string
	URL       string // redacted
	Status    int
	Code      string // first issue code
	Text      string // diagnostics / details.text of the issues, or the body's start
	Challenge string // WWW-Authenticate, on a 401
	Transient bool
}

func (e *OutcomeError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.Op, e.URL, e.Status)
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.Challenge != "" {
		s += " [WWW-Authenticate: " + e.Challenge + "]"
	}
	return s
}

// Permanent reports whether retrying cannot help.
func (e *OutcomeError) Permanent() bool { return !e.Transient }

// ErrExpired is wrapped by errors for file URLs that are no longer valid (403, 404, 410):
// the caller refreshes the manifest or starts a new export.
var ErrExpired = errors.New("file URL expired")

// outcomeError reads a refusing response: an OperationOutcome's issues, or the start of
// any other text or JSON body.
func outcomeError(op, u string, resp *http.Response) *OutcomeError {
	e := &OutcomeError{Op: op, URL: ehrhttp.Redact(u), Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if v, err := fastjson.ParseBytes(body); err == nil && string(v.GetStringBytes("resourceType")) == "OperationOutcome" {
		var texts []string
		for _, is := range v.GetArray("issue") {
			code := string(is.GetStringBytes("code"))
			if e.Code == "" {
				e.Code = ehrhttp.Bound(code, 40)
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
		e.Text = ehrhttp.Bound(strings.Join(texts, "; "), maxEcho)
	} else if len(body) > 0 && readableBody(resp.Header.Get("Content-Type")) {
		e.Text = ehrhttp.Bound(strings.TrimSpace(string(body)), maxEcho)
	}
	e.Text = scrubQuery(e.Text, u)
	if resp.StatusCode == http.StatusUnauthorized {
		e.Challenge = ehrhttp.Bound(resp.Header.Get("WWW-Authenticate"), 200)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		e.Transient = true
	case resp.StatusCode >= 500 && e.Code != "exception" && e.Code != "fatal":
		e.Transient = e.Transient || e.Code == ""
	}
	return e
}

// scrubQuery removes from text a server echoed the values of u's query parameters (a
// signed URL's signature and credential), which an error must not carry either.
func scrubQuery(text, u string) string {
	p, err := url.Parse(u)
	if err != nil || p.RawQuery == "" || text == "" {
		return text
	}
	for _, vs := range p.Query() {
		for _, v := range vs {
			if len(v) >= 4 { // short values (a page number) are no secret, and too common to cut
				text = strings.ReplaceAll(text, v, "…")
			}
		}
	}
	return text
}

// readableBody reports whether a body of this content type is text a person could read
// (an HTML error page is not worth echoing).
func readableBody(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return contentType == ""
	}
	return mt == "text/plain" || mt == "application/json" || strings.HasSuffix(mt, "+json")
}
