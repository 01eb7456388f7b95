// Package smart is a SMART Backend Services client (HL7 SMART App Launch 2.x, "Backend
// Services"): it discovers the token endpoint and obtains access tokens with the
// client_credentials grant, authenticating with a signed JWT assertion
// (private_key_jwt, RS384 or ES384, signed with golang-jwt/v5) or, for servers that use
// it, a client secret (client_secret_basic or client_secret_post). Tokens are cached and
// renewed shortly before they expire, or at once when the resource server answers 401
// (Invalidate), so long exports survive short-lived tokens. FileToken serves a token
// obtained elsewhere.
//
// Permanent refusals of the token endpoint (invalid_client, invalid_grant, ...) are
// errors whose Permanent method says so, so callers stop at once rather than retry.
// Nothing here logs or formats a token, an assertion, a secret or key material.
package smart

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// AssertionType is the client_assertion_type of a signed JWT assertion.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// DefaultScope asks for read and search on every resource type (SMART v2 syntax).
const DefaultScope = "system/*.rs"

// AuthMethod is how the client authenticates at the token endpoint (the OAuth
// token_endpoint_auth_method names).
type AuthMethod string

const (
	// PrivateKeyJWT signs a JWT assertion with the client's key: SMART Backend Services.
	PrivateKeyJWT AuthMethod = "private_key_jwt"
	// ClientSecretBasic sends the client id and secret in an HTTP Basic header.
	ClientSecretBasic AuthMethod = "client_secret_basic"
	// ClientSecretPost sends the client id and secret in the form body.
	ClientSecretPost AuthMethod = "client_secret_post"
)

// ParseAuthMethod reads an AuthMethod name.
func ParseAuthMethod(s string) (AuthMethod, error) {
	switch m := AuthMethod(s); m {
	case PrivateKeyJWT, ClientSecretBasic, ClientSecretPost:
		return m, nil
	}
	return "", fmt.Errorf("token endpoint auth method %q: want %s, %s or %s", s, PrivateKeyJWT, ClientSecretBasic, ClientSecretPost)
}

// maxEcho bounds any string a server sent that is repeated in an error.
const maxEcho = 300

// requestIdle fails a discovery or token request that receives nothing for this long.
const requestIdle = time.Minute

// Configuration is the part of .well-known/smart-configuration a backend client uses.
type Configuration struct {
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethods          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValues []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Capabilities                      []string `json:"capabilities"`
}

// Discover reads <base>/.well-known/smart-configuration. The token endpoint it names must
// pass policy (https under an https base).
func Discover(ctx context.Context, hc *http.Client, base string, policy *ehrhttp.Policy) (Configuration, error) {
	var c Configuration
	u := strings.TrimRight(base, "/") + "/.well-known/smart-configuration"
	shown := ehrhttp.Redact(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return c, ehrhttp.Permanent(fmt.Errorf("smart discovery %s: %w", shown, err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ehrhttp.Do(hc, req, requestIdle)
	if err != nil {
		return c, fmt.Errorf("smart discovery %s: %w", shown, ehrhttp.ClassifyNetwork(err, false))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, ehrhttp.Permanent(fmt.Errorf("smart discovery %s: HTTP %d (give --token-url, or --token-url none for an open server)", shown, resp.StatusCode))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&c); err != nil {
		return c, ehrhttp.Permanent(fmt.Errorf("smart discovery %s: %s", shown, ehrhttp.Bound(err.Error(), maxEcho)))
	}
	if c.TokenEndpoint == "" {
		return c, ehrhttp.Permanent(fmt.Errorf("smart discovery %s: no token_endpoint", shown))
	}
	if err := policy.TokenEndpointAllowed(c.TokenEndpoint); err != nil {
		return c, fmt.Errorf("smart discovery %s: %w", shown, err)
	}
	return c, nil
}

// Client obtains and caches access tokens. It is safe for concurrent use.
type Client struct {
	ClientID string
	TokenURL string
	// Method is the token endpoint authentication; default PrivateKeyJWT.
	Method AuthMethod
	Key    *Key   // PrivateKeyJWT
	Secret string // ClientSecretBasic and ClientSecretPost; never logged
	Scope  string // default DefaultScope
	// HTTP is the client used; default one from ehrhttp.NewClient. Redirects of the
	// token endpoint are never followed: they would carry the credentials elsewhere.
	HTTP *http.Client
	// RenewBefore is how long before expiry a token is renewed; default 30s (capped at a
	// third of the token's lifetime so very short tokens are still used).
	RenewBefore time.Duration
	// Now is the clock, for tests; default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
	reached atomic.Bool // the token endpoint has answered at least once
	// Renewals counts token requests, for metrics and tests.
	Renewals int
}

// Token returns a valid access token, requesting a new one when none is cached or the
// cached one is about to expire.
func (c *Client) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.token != "" && now.Before(c.renewAt) {
		return c.token, nil
	}
	tok, ttl, err := c.request(ctx)
	if err != nil {
		return "", err
	}
	before := c.RenewBefore
	if before <= 0 {
		before = 30 * time.Second
	}
	if before > ttl/3 {
		before = ttl / 3
	}
	c.token, c.renewAt = tok, now.Add(ttl-before)
	c.Renewals++
	return tok, nil
}

// Invalidate drops the cached token if it is still tok, so the next Token call gets a new
// one. Call it when the server answered 401 with tok.
func (c *Client) Invalidate(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == tok {
		c.token = ""
	}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Assertion signs a fresh client assertion JWT for the token endpoint. Its aud is the
// token endpoint URL as a JSON string, as SMART Backend Services defines it (an array,
// which RFC 7519 also allows, breaks servers that expect the string).
func (c *Client) Assertion() (string, error) {
	if c.Key == nil {
		return "", errors.New("client assertion: no signing key")
	}
	var method jwt.SigningMethod
	switch c.Key.Alg {
	case AlgRS384:
		method = jwt.SigningMethodRS384
	case AlgES384:
		method = jwt.SigningMethodES384
	default:
		return "", fmt.Errorf("client assertion: algorithm %q is not supported", c.Key.Alg)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("client assertion jti: %w", err)
	}
	now := c.now()
	claims := jwt.MapClaims{
		"iss": c.ClientID,
		"sub": c.ClientID,
		"aud": c.TokenURL,
		"exp": jwt.NewNumericDate(now.Add(4 * time.Minute)), // the spec allows at most 5
		"iat": jwt.NewNumericDate(now),
		"jti": hex.EncodeToString(jti),
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["kid"] = c.Key.Kid
	t.Header["typ"] = "JWT"
	if c.Key.JKU != "" {
		t.Header["jku"] = c.Key.JKU
	}
	s, err := t.SignedString(c.Key.Signer)
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return s, nil
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Error       string `json:"error"`
	ErrorDesc   string `json:"error_description"`
}

// TokenError is a token request the endpoint refused or could not answer.
type TokenError struct {
	URL         string // redacted
	Status      int    // 0 when no response came
	Code        string // the OAuth error code, bounded
	Description string // error_description, bounded and sanitized
	Err         error  // the transport error, when no response came
	permanent   bool
}

func (e *TokenError) Error() string {
	s := "token request to " + e.URL
	if e.Err != nil {
		return s + ": " + e.Err.Error()
	}
	s += fmt.Sprintf(": HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.permanent && e.Err == nil {
		s += " (a permanent refusal: check the client id, key or secret, and scope registered at the EHR)"
	}
	return s
}

func (e *TokenError) Unwrap() error { return e.Err }

// Permanent reports whether asking again cannot succeed.
func (e *TokenError) Permanent() bool { return e.permanent || ehrhttp.IsPermanent(e.Err) }

// permanentOAuthErrors are the RFC 6749 §5.2 codes no retry cures.
var permanentOAuthErrors = map[string]bool{"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true, "invalid_scope": true}

func (c *Client) form() (url.Values, error) {
	scope := c.Scope
	if scope == "" {
		scope = DefaultScope
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	switch c.method() {
	case PrivateKeyJWT:
		assertion, err := c.Assertion()
		if err != nil {
			return nil, err
		}
		form.Set("client_assertion_type", AssertionType)
		form.Set("client_assertion", assertion)
	case ClientSecretPost:
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.Secret)
	case ClientSecretBasic:
	default:
		return nil, fmt.Errorf("token endpoint auth method %q is not supported", c.Method)
	}
	return form, nil
}

func (c *Client) method() AuthMethod {
	if c.Method == "" {
		return PrivateKeyJWT
	}
	return c.Method
}

func (c *Client) request(ctx context.Context) (string, time.Duration, error) {
	form, err := c.form()
	if err != nil {
		return "", 0, err
	}
	shown := ehrhttp.Redact(c.TokenURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, &TokenError{URL: shown, Err: ehrhttp.Permanent(err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.method() == ClientSecretBasic {
		// RFC 6749 §2.3.1: both parts form-encoded before the Basic encoding.
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.Secret))
	}
	hc := c.HTTP
	if hc == nil {
		hc = ehrhttp.NewClient(ehrhttp.Options{})
	}
	noRedirects := *hc
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := ehrhttp.Do(&noRedirects, req, requestIdle)
	if err != nil {
		return "", 0, &TokenError{URL: shown, Err: ehrhttp.ClassifyNetwork(err, c.reached.Load())}
	}
	defer resp.Body.Close()
	c.reached.Store(true)
	return c.readResponse(resp, shown)
}

func (c *Client) readResponse(resp *http.Response, shown string) (string, time.Duration, error) {
	var tr tokenResponse
	decErr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr)
	if resp.StatusCode/100 == 3 {
		return "", 0, &TokenError{URL: shown, Status: resp.StatusCode, permanent: true,
			Description: "the token endpoint redirects to " + ehrhttp.Redact(resp.Header.Get("Location")) + "; the credentials are not sent after it: give the final URL with --token-url"}
	}
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{URL: shown, Status: resp.StatusCode, Code: ehrhttp.Bound(tr.Error, 64), Description: ehrhttp.Bound(tr.ErrorDesc, maxEcho)}
		transientStatus := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		te.permanent = permanentOAuthErrors[tr.Error] || (tr.Error == "" && !transientStatus)
		return "", 0, te
	}
	bad := func(what string) error {
		return &TokenError{URL: shown, Status: resp.StatusCode, permanent: true, Description: "the response " + what}
	}
	if decErr != nil {
		return "", 0, bad("is not JSON: " + ehrhttp.Bound(decErr.Error(), maxEcho))
	}
	if tr.AccessToken == "" {
		return "", 0, bad("has no access_token")
	}
	if !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, bad(fmt.Sprintf("has token_type %q, want bearer", ehrhttp.Bound(tr.TokenType, 40)))
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if ttl <= 0 {
		ttl = 5 * time.Minute // the spec's recommended maximum, when the server does not say
	}
	return tr.AccessToken, ttl, nil
}

// FileToken serves a bearer token obtained elsewhere, read from a file. When the server
// rejects it (Invalidate), the file is read again, so a process that refreshes the file
// keeps a long export going; a rejected token the file still holds is a permanent error.
type FileToken struct {
	Path string

	mu       sync.Mutex
	token    string
	rejected string
}

// Token returns the file's token.
func (f *FileToken) Token(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != "" {
		return f.token, nil
	}
	raw, err := readSecretFile(f.Path)
	if err != nil {
		return "", ehrhttp.Permanent(fmt.Errorf("bearer token: %w", err))
	}
	if raw == f.rejected {
		return "", ehrhttp.Permanent(fmt.Errorf("the server rejected the bearer token in %s (HTTP 401): put a valid one there", f.Path))
	}
	f.token = raw
	return raw, nil
}

// Invalidate notes that the server rejected tok.
func (f *FileToken) Invalidate(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token == tok {
		f.token, f.rejected = "", tok
	}
}

// ReadSecretFile reads a secret (a client secret, a token) from a file: its content with
// surrounding white space trimmed, which must not be empty.
func ReadSecretFile(path string) (string, error) { return readSecretFile(path) }

func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s holds more than one line", path)
	}
	return s, nil
}
