package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// Level is where an export starts.
type Level string

const (
	LevelSystem  Level = "system"  // <base>/$export
	LevelPatient Level = "patient" // <base>/Patient/$export
	LevelGroup   Level = "group"   // <base>/Group/<id>/$export
)

// Request is a kickoff. Empty fields are not sent.
type Request struct {
	Base    string
	Level   Level
	GroupID string
	// Post sends the parameters as a FHIR Parameters body instead of the query.
	Post bool
	// Lenient adds handling=lenient to Prefer, so servers skip unsupported parameters.
	Lenient bool

	Types                 []string
	Since                 time.Time
	Until                 time.Time
	TypeFilters           []string
	Elements              []string
	Patients              []string // patient references, e.g. "Patient/123" (POST only)
	IncludeAssociatedData []string
	OrganizeOutputBy      string
	AllowPartialManifests bool
	OutputFormat          string // default application/fhir+ndjson
}

// URL returns the kickoff endpoint.
func (r Request) URL() (string, error) {
	base := strings.TrimRight(r.Base, "/")
	if base == "" {
		return "", fmt.Errorf("kickoff: no FHIR base URL")
	}
	switch r.Level {
	case LevelSystem, "":
		return base + "/$export", nil
	case LevelPatient:
		return base + "/Patient/$export", nil
	case LevelGroup:
		if r.GroupID == "" {
			return "", fmt.Errorf("kickoff: group level needs a group id")
		}
		return base + "/Group/" + url.PathEscape(r.GroupID) + "/$export", nil
	}
	return "", fmt.Errorf("kickoff: unknown level %q", r.Level)
}

// param is one kickoff parameter, with its FHIR Parameters value type.
type param struct {
	name, kind, value string
}

func (r Request) params() []param {
	var ps []param
	add := func(name, kind, value string) { ps = append(ps, param{name, kind, value}) }
	add("_outputFormat", "valueString", orDefault(r.OutputFormat, "application/fhir+ndjson"))
	if len(r.Types) > 0 {
		add("_type", "valueString", strings.Join(r.Types, ","))
	}
	if !r.Since.IsZero() {
		add("_since", "valueInstant", r.Since.UTC().Format(time.RFC3339Nano))
	}
	if !r.Until.IsZero() {
		add("_until", "valueInstant", r.Until.UTC().Format(time.RFC3339Nano))
	}
	for _, f := range r.TypeFilters {
		add("_typeFilter", "valueString", f)
	}
	if len(r.Elements) > 0 {
		add("_elements", "valueString", strings.Join(r.Elements, ","))
	}
	for _, a := range r.IncludeAssociatedData {
		add("includeAssociatedData", "valueCode", a)
	}
	if r.OrganizeOutputBy != "" {
		add("organizeOutputBy", "valueString", r.OrganizeOutputBy)
	}
	if r.AllowPartialManifests {
		add("allowPartialManifests", "valueBoolean", "true")
	}
	for _, p := range r.Patients {
		add("patient", "valueReference", p)
	}
	return ps
}

// Kickoff starts an export and returns its status URL (the Content-Location).
func (c *Client) Kickoff(ctx context.Context, r Request) (string, error) {
	endpoint, err := r.URL()
	if err != nil {
		return "", ehrhttp.Permanent(err)
	}
	if len(r.Patients) > 0 && !r.Post {
		return "", ehrhttp.Permanent(fmt.Errorf("kickoff: the patient parameter needs POST (--post)"))
	}
	ps := r.params()
	newReq := func() (*http.Request, error) {
		var req *http.Request
		var err error
		if r.Post {
			body, merr := parametersBody(ps)
			if merr != nil {
				return nil, merr
			}
			req, err = http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
			if err == nil {
				req.Header.Set("Content-Type", "application/fhir+json")
			}
		} else {
			q := url.Values{}
			for _, p := range ps {
				q.Add(p.name, p.value)
			}
			req, err = http.NewRequest(http.MethodGet, endpoint+"?"+q.Encode(), nil)
		}
		if err != nil {
			return nil, fmt.Errorf("kickoff: %w", err)
		}
		req.Header.Set("Accept", "application/fhir+json")
		prefer := "respond-async"
		if r.Lenient {
			prefer += ", handling=lenient"
		}
		req.Header.Set("Prefer", prefer)
		return req, nil
	}
	op := c.operation("kickoff", endpoint)
	for {
		resp, err := c.do(ctx, newReq, true)
		if err != nil {
			if err := op.retry(ctx, nil, op.wrap(err)); err != nil {
				return "", err
			}
			continue
		}
		if resp.StatusCode == http.StatusAccepted {
			drain(resp)
			return statusURL(endpoint, resp)
		}
		oe := outcomeError("kickoff", endpoint, resp)
		resp.Body.Close()
		if err := op.retry(ctx, resp, oe); err != nil {
			return "", err
		}
	}
}

// statusURL is the Content-Location of a kickoff's 202, resolved against the request.
func statusURL(endpoint string, resp *http.Response) (string, error) {
	loc := resp.Header.Get("Content-Location")
	if loc == "" {
		return "", ehrhttp.Permanent(fmt.Errorf("kickoff %s: 202 without Content-Location", ehrhttp.Redact(endpoint)))
	}
	u, err := resp.Request.URL.Parse(loc)
	if err == nil {
		_, err = ehrhttp.ParseHTTPURL(u.String())
	}
	if err != nil {
		return "", ehrhttp.Permanent(fmt.Errorf("kickoff %s: bad Content-Location %q", ehrhttp.Redact(endpoint), ehrhttp.Bound(loc, 200)))
	}
	return u.String(), nil
}

func parametersBody(ps []param) ([]byte, error) {
	type entry map[string]any
	out := struct {
		ResourceType string  `json:"resourceType"`
		Parameter    []entry `json:"parameter"`
	}{ResourceType: "Parameters"}
	for _, p := range ps {
		e := entry{"name": p.name}
		switch p.kind {
		case "valueBoolean":
			b, _ := strconv.ParseBool(p.value)
			e[p.kind] = b
		case "valueReference":
			e[p.kind] = map[string]string{"reference": p.value}
		default:
			e[p.kind] = p.value
		}
		out.Parameter = append(out.Parameter, e)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("kickoff Parameters body: %w", err)
	}
	return b, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Delete asks the server to cancel an export or release a completed one's files.
func (c *Client) Delete(ctx context.Context, statusURL string) error {
	resp, err := c.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodDelete, statusURL, nil)
		if err == nil {
			req.Header.Set("Accept", "application/fhir+json")
		}
		return req, err
	}, true)
	if err != nil {
		return fmt.Errorf("delete %s: %w", ehrhttp.Redact(statusURL), err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return outcomeError("delete", statusURL, resp)
	}
	return nil
}
