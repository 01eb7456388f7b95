// Package ehrhttp holds the rules every request the fetcher sends to an EHR follows,
// for the Bulk Data client (producer/bulk) and the SMART client (producer/smart) alike:
// which origins may receive the access token, how redirects are followed, TLS and
// timeouts, which failures are permanent, and how what a server sends back is bounded
// and what a URL may reveal is redacted before it reaches a log or an error.
//
// The token policy: the bearer token goes only to the FHIR base's origin (scheme, host
// and port) and to origins the operator trusts (--trust-origin); never over http when the
// base is https; and never across a redirect that leaves the origin of the request it
// was sent with (checked at every hop, scheme and port included). Anything else is
// refused with a *RefusedError that names the URL (its query cut), the reason, and the
// flag that would allow it.
package ehrhttp

import (
	"fmt"
	"net/url"
	"strings"
)

// Origin is a URL's scheme, host and port, the unit browsers and this policy trust.
type Origin struct {
	Scheme, Host string // Host includes the port, always explicit
}

func (o Origin) String() string { return o.Scheme + "://" + o.Host }

// OriginOf returns u's origin, with the scheme's default port made explicit so that
// https://ehr and https://ehr:443 compare equal.
func OriginOf(u *url.URL) Origin {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	return Origin{Scheme: scheme, Host: host + ":" + port}
}

// Policy decides which URLs may receive the access token.
type Policy struct {
	base    Origin
	trusted map[Origin]bool
}

// TrustFlag is the command-line flag that adds a trusted origin; refusals name it.
const TrustFlag = "--trust-origin"

// NewPolicy returns the policy for an export from base, trusting the origins of the
// trusted URLs too. An http origin cannot be trusted when base is https: the token would
// travel in cleartext.
func NewPolicy(base string, trusted []string) (*Policy, error) {
	bu, err := ParseHTTPURL(base)
	if err != nil {
		return nil, fmt.Errorf("FHIR base: %w", err)
	}
	p := &Policy{base: OriginOf(bu), trusted: map[Origin]bool{}}
	for _, t := range trusted {
		tu, err := ParseHTTPURL(t)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", TrustFlag, Bound(t, 200), err)
		}
		o := OriginOf(tu)
		if p.base.Scheme == "https" && o.Scheme != "https" {
			return nil, fmt.Errorf("%s %s: the FHIR base is https, so the access token is never sent over http", TrustFlag, o)
		}
		p.trusted[o] = true
	}
	return p, nil
}

// Base is the FHIR base's origin.
func (p *Policy) Base() Origin { return p.base }

// RefusedError is a request the token policy did not let the token go with.
type RefusedError struct {
	What   string // what was withheld: "the access token", "the client credentials"
	URL    string // redacted
	Reason string
	Allow  string // how to allow it, or "" when nothing may
}

func (e *RefusedError) Error() string {
	s := "not sending " + e.What + " to " + e.URL + ": " + e.Reason
	if e.Allow != "" {
		s += "; " + e.Allow
	}
	return s
}

// Permanent reports that retrying cannot help.
func (e *RefusedError) Permanent() bool { return true }

// Allows returns nil when u may receive the token, else a *RefusedError.
func (p *Policy) Allows(u *url.URL) error {
	o := OriginOf(u)
	if p.base.Scheme == "https" && o.Scheme != "https" {
		return &RefusedError{What: "the access token", URL: RedactURL(u), Reason: fmt.Sprintf("it is %s, and the FHIR base %s is https (the token would travel in cleartext)", o.Scheme, p.base),
			Allow: "the server must serve it over https"}
	}
	if o == p.base || p.trusted[o] {
		return nil
	}
	return &RefusedError{What: "the access token", URL: RedactURL(u), Reason: fmt.Sprintf("its origin %s is not the FHIR base's (%s) nor a trusted one", o, p.base),
		Allow: fmt.Sprintf("if that server is meant to receive it, add %s %s", TrustFlag, o)}
}

// ParseHTTPURL parses an absolute http or https URL; anything else is a permanent error.
func ParseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, Permanent(fmt.Errorf("not a URL: %q", Bound(s, 200)))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, Permanent(fmt.Errorf("URL %s: scheme %q is not http or https", RedactURL(u), Bound(u.Scheme, 20)))
	}
	if u.Host == "" {
		return nil, Permanent(fmt.Errorf("URL %s has no host", RedactURL(u)))
	}
	return u, nil
}

// TokenEndpointAllowed checks a token endpoint (given, or discovered from the server's
// smart-configuration): the client's credentials and the token it is given travel
// there, so under an https base it must be https too. Its origin may differ from the
// base's: authorization servers are often hosts of their own.
func (p *Policy) TokenEndpointAllowed(endpoint string) error {
	u, err := ParseHTTPURL(endpoint)
	if err != nil {
		return fmt.Errorf("token endpoint: %w", err)
	}
	if p.base.Scheme == "https" && u.Scheme != "https" {
		return &RefusedError{What: "the client credentials", URL: RedactURL(u), Reason: fmt.Sprintf("the token endpoint is %s under the https FHIR base %s: the credentials and the token would travel in cleartext", u.Scheme, p.base),
			Allow: "the authorization server must serve it over https"}
	}
	return nil
}
