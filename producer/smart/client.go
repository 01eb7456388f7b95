// Package smart is a SMART Backend Services client (HL7 SMART App Launch 2.x, "Backend
// Services"): it discovers the token endpoint, signs client assertions (RS384 or ES384
// JWTs, golang-jwt/v5) and exchanges them for access tokens with the client_credentials
// grant. Tokens are cached and renewed shortly before they expire, or at once when the
// resource server answers 401 (Invalidate), so long exports survive short-lived tokens.
//
// Nothing here logs or formats a token, an assertion or key material.
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
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AssertionType is the client_assertion_type of a signed JWT assertion.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// DefaultScope asks for read and search on every resource type (SMART v2 syntax).
const DefaultScope = "system/*.rs"

// Configuration is the part of .well-known/smart-configuration a backend client uses.
type Configuration struct {
	TokenEndpoint                     string   `json:"token_endpoint"`
	TokenEndpointAuthMethods          []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgValues []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	Capabilities                      []string `json:"capabilities"`
}

// Discover reads <base>/.well-known/smart-configuration.
func Discover(ctx context.Context, hc *http.Client, base string) (Configuration, error) {
	var c Configuration
	u := strings.TrimRight(base, "/") + "/.well-known/smart-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return c, fmt.Errorf("smart discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return c, fmt.Errorf("smart discovery %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("smart discovery %s: HTTP %d (give --token-url, or --token-url none for an open server)", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&c); err != nil {
		return c, fmt.Errorf("smart discovery %s: %w", u, err)
	}
	if c.TokenEndpoint == "" {
		return c, fmt.Errorf("smart discovery %s: no token_endpoint", u)
	}
	return c, nil
}

// Client obtains and caches access tokens. It is safe for concurrent use.
type Client struct {
	ClientID string
	TokenURL string
	Key      *Key
	Scope    string       // default DefaultScope
	HTTP     *http.Client // default http.DefaultClient
	// RenewBefore is how long before expiry a token is renewed; default 30s (capped at a
	// third of the token's lifetime so very short tokens are still used).
	RenewBefore time.Duration
	// Now is the clock, for tests; default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
	renewAt time.Time
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
	c.token, c.expires, c.renewAt = tok, now.Add(ttl), now.Add(ttl-before)
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

// Assertion signs a fresh client assertion JWT for the token endpoint.
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
	claims := jwt.RegisteredClaims{
		Issuer:    c.ClientID,
		Subject:   c.ClientID,
		Audience:  jwt.ClaimStrings{c.TokenURL},
		ExpiresAt: jwt.NewNumericDate(now.Add(4 * time.Minute)), // the spec allows at most 5
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        hex.EncodeToString(jti),
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
	Scope       string `json:"scope"`
	Error       string `json:"error"`
	ErrorDesc   string `json:"error_description"`
}

func (c *Client) request(ctx context.Context) (string, time.Duration, error) {
	assertion, err := c.Assertion()
	if err != nil {
		return "", 0, err
	}
	scope := c.Scope
	if scope == "" {
		scope = DefaultScope
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {scope},
		"client_assertion_type": {AssertionType},
		"client_assertion":      {assertion},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token request to %s: %w", c.TokenURL, err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	decErr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr)
	if resp.StatusCode != http.StatusOK {
		if tr.Error != "" {
			return "", 0, fmt.Errorf("token request to %s: HTTP %d %s: %s", c.TokenURL, resp.StatusCode, tr.Error, tr.ErrorDesc)
		}
		return "", 0, fmt.Errorf("token request to %s: HTTP %d", c.TokenURL, resp.StatusCode)
	}
	if decErr != nil {
		return "", 0, fmt.Errorf("token response from %s: %w", c.TokenURL, decErr)
	}
	if tr.AccessToken == "" {
		return "", 0, fmt.Errorf("token response from %s has no access_token", c.TokenURL)
	}
	if !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, fmt.Errorf("token response from %s: token_type %q, want bearer", c.TokenURL, tr.TokenType)
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if ttl <= 0 {
		ttl = 5 * time.Minute // the spec's recommended maximum, when the server does not say
	}
	return tr.AccessToken, ttl, nil
}

// ScopeAllows reports whether a granted scope string permits reading resourceType at
// system level, in SMART v2 (system/Type.rs, system/*.cruds) or v1 (system/Type.read,
// system/*.*) syntax. Servers (the EHR simulator) use it to check a request.
func ScopeAllows(scopes, resourceType string) bool {
	for _, s := range strings.Fields(scopes) {
		rest, ok := strings.CutPrefix(s, "system/")
		if !ok {
			continue
		}
		typ, perm, ok := strings.Cut(rest, ".")
		if !ok || (typ != "*" && typ != resourceType) {
			continue
		}
		perm, _, _ = strings.Cut(perm, "?")
		if perm == "read" || perm == "*" || (strings.Contains(perm, "r") && strings.Trim(perm, "cruds") == "") {
			return true
		}
	}
	return false
}
