package ehrsim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// The simulator checks clients by the SMART Backend Services and OAuth specifications
// with its own code and go-jose, never with the fetcher's client code: a client bug
// must fail here, not pass on both sides.

// Token endpoint authentication methods (OAuth token_endpoint_auth_method).
const (
	methodPrivateKeyJWT     = "private_key_jwt"
	methodClientSecretBasic = "client_secret_basic"
	methodClientSecretPost  = "client_secret_post"
	assertionType           = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// signingAlgs are the assertion algorithms SMART Backend Services requires servers to
// accept.
var signingAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES384}

// client is a registered backend client: public keys (private_key_jwt) or a secret.
type client struct {
	id     string
	keys   map[string]jose.JSONWebKey // by kid
	secret string
}

type token struct {
	client  string
	scope   string
	expires time.Time
}

// RegisterClient registers a backend client with the public keys (a JWKS, as JSON) its
// assertions are signed with. Registering an id again replaces it.
func (s *Server) RegisterClient(clientID string, jwks []byte) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return fmt.Errorf("register client %s: JWKS: %w", clientID, err)
	}
	c := &client{id: clientID, keys: map[string]jose.JSONWebKey{}}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return fmt.Errorf("register client %s: the JWKS holds a private or symmetric key; register the public one", clientID)
		}
		if k.KeyID == "" {
			return fmt.Errorf("register client %s: a key without kid cannot be chosen by an assertion", clientID)
		}
		c.keys[k.KeyID] = k
	}
	if len(c.keys) == 0 {
		return fmt.Errorf("register client %s: the JWKS has no keys", clientID)
	}
	s.mu.Lock()
	s.clients[clientID] = c
	s.mu.Unlock()
	return nil
}

// RegisterSecretClient registers a client that authenticates with a client secret
// (client_secret_basic or client_secret_post), as OAuth deployments without SMART keys do.
func (s *Server) RegisterSecretClient(clientID, secret string) error {
	if clientID == "" || secret == "" {
		return errors.New("register client: a client id and a secret are required")
	}
	s.mu.Lock()
	s.clients[clientID] = &client{id: clientID, secret: secret}
	s.mu.Unlock()
	return nil
}

// TokenURL is the token endpoint's URL.
func (s *Server) TokenURL() string { return s.URL + "/auth/token" }

func (s *Server) handleSmartConfig(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token_endpoint":                                   s.TokenURL(),
		"token_endpoint_auth_methods_supported":            []string{methodPrivateKeyJWT, methodClientSecretBasic, methodClientSecretPost},
		"token_endpoint_auth_signing_alg_values_supported": []string{string(jose.RS384), string(jose.ES384)},
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported":                                 []string{"system/*.rs", "system/*.read"},
		"capabilities":                                     []string{"client-confidential-asymmetric", "client-confidential-symmetric"},
	})
}

func (s *Server) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/fhir+json")
	fmt.Fprint(w, `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],`+
		`"instantiates":["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],"rest":[{"mode":"server"}]}`)
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// handleToken implements the client_credentials grant (RFC 6749 §4.4) with the client
// authenticated by a private_key_jwt assertion (RFC 7523, SMART Backend Services) or a
// client secret (RFC 6749 §2.3.1).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		tokenError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "bad form body")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q", g))
		return
	}
	scope := r.PostForm.Get("scope")
	if !strings.Contains(scope, "system/") {
		tokenError(w, http.StatusBadRequest, "invalid_scope", "system scopes are required")
		return
	}
	clientID, err := s.authenticateClient(r)
	if err != nil {
		s.stats.AuthFailures.Add(1)
		s.log.Info("ehrsim: client authentication failed", "err", err)
		tokenError(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	tok := newID() + newID()
	s.mu.Lock()
	s.tokens[tok] = token{client: clientID, scope: scope, expires: time.Now().Add(s.cfg.TokenTTL)}
	s.mu.Unlock()
	s.stats.TokensIssued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer",
		"expires_in": int(s.cfg.TokenTTL.Seconds()), "scope": scope})
}

// authenticateClient finds which of the three methods the request uses (exactly one is
// allowed, RFC 6749 §2.3) and checks it.
func (s *Server) authenticateClient(r *http.Request) (string, error) {
	basicID, basicSecret, hasBasic := r.BasicAuth()
	form := r.PostForm
	hasAssertion := form.Get("client_assertion") != "" || form.Get("client_assertion_type") != ""
	hasPost := form.Get("client_secret") != ""
	n := 0
	for _, b := range []bool{hasBasic, hasAssertion, hasPost} {
		if b {
			n++
		}
	}
	switch {
	case n == 0:
		return "", errors.New("no client authentication (assertion, Basic or client_secret)")
	case n > 1:
		return "", errors.New("more than one client authentication method in one request")
	case hasAssertion:
		if t := form.Get("client_assertion_type"); t != assertionType {
			return "", fmt.Errorf("client_assertion_type must be %s", assertionType)
		}
		return s.verifyAssertion(form.Get("client_assertion"))
	case hasBasic:
		// RFC 6749 §2.3.1: id and secret are form-encoded before the Basic encoding.
		id, err1 := url.QueryUnescape(basicID)
		secret, err2 := url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return "", errors.New("the Basic credentials are not form-encoded")
		}
		return s.checkSecret(id, secret)
	default:
		return s.checkSecret(form.Get("client_id"), form.Get("client_secret"))
	}
}

func (s *Server) checkSecret(id, secret string) (string, error) {
	s.mu.Lock()
	c := s.clients[id]
	s.mu.Unlock()
	if c == nil || c.secret == "" || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return "", fmt.Errorf("unknown client or wrong secret for %q", id)
	}
	return c.id, nil
}

// assertionClaims are the claims checked beyond go-jose's: aud must be one JSON string,
// the token endpoint URL, as SMART Backend Services defines it (the reference server
// fails on an array).
type assertionClaims struct {
	Aud json.RawMessage `json:"aud"`
}

// verifyAssertion checks a client assertion as SMART Backend Services requires: RS384
// or ES384, a kid naming a key registered for the client, typ JWT when given, iss = sub =
// the client id, aud the token URL (a string), exp present and at most five minutes
// ahead, and a jti not seen before. It returns the client id.
func (s *Server) verifyAssertion(assertion string) (string, error) {
	if assertion == "" {
		return "", errors.New("no client_assertion")
	}
	tok, err := josejwt.ParseSigned(assertion, signingAlgs)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	if len(tok.Headers) != 1 {
		return "", errors.New("client assertion: want one signature")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "" && typ != "JWT" {
		return "", fmt.Errorf("client assertion: typ %q, want JWT", typ)
	}
	var unverified josejwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	s.mu.Lock()
	c := s.clients[unverified.Issuer]
	s.mu.Unlock()
	if c == nil || c.keys == nil {
		return "", fmt.Errorf("client assertion: client %q is not registered with keys", unverified.Issuer)
	}
	k, ok := c.keys[h.KeyID]
	if !ok {
		return "", fmt.Errorf("client assertion: client %q has no key %q", c.id, h.KeyID)
	}
	if k.Algorithm != "" && k.Algorithm != h.Algorithm {
		return "", fmt.Errorf("client assertion: key %q is registered for %s, the assertion uses %s", h.KeyID, k.Algorithm, h.Algorithm)
	}
	var claims josejwt.Claims
	var extra assertionClaims
	if err := tok.Claims(k.Key, &claims, &extra); err != nil {
		return "", fmt.Errorf("client assertion: the signature does not verify with key %q of client %q: %w", h.KeyID, c.id, err)
	}
	now := time.Now()
	if err := claims.ValidateWithLeeway(josejwt.Expected{Issuer: c.id, Subject: c.id, AnyAudience: []string{s.TokenURL()}, Time: now}, 5*time.Second); err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	if len(extra.Aud) == 0 || extra.Aud[0] != '"' {
		return "", fmt.Errorf("client assertion: aud must be a JSON string, the token endpoint URL; got %.80s", extra.Aud)
	}
	if claims.Expiry == nil {
		return "", errors.New("client assertion: no exp")
	}
	if claims.Expiry.Time().After(now.Add(5*time.Minute + 5*time.Second)) {
		return "", errors.New("client assertion: exp is more than 5 minutes ahead")
	}
	if claims.ID == "" {
		return "", errors.New("client assertion: no jti")
	}
	return c.id, s.useJTI(c.id, claims.ID, claims.Expiry.Time())
}

// useJTI records a jti until its assertion expires, refusing one seen before.
func (s *Server) useJTI(clientID, jti string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for j, until := range s.jtis {
		if now.After(until) {
			delete(s.jtis, j)
		}
	}
	key := clientID + "\x00" + jti
	if _, seen := s.jtis[key]; seen {
		return errors.New("client assertion: jti replayed")
	}
	s.jtis[key] = exp.Add(10 * time.Second)
	return nil
}

// authed wraps a Bulk Data handler with the bearer-token check when Auth is on.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Auth && !s.checkToken(w, r) {
			return
		}
		h(w, r)
	}
}

func (s *Server) checkToken(w http.ResponseWriter, r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	t, known := s.tokens[tok]
	s.mu.Unlock()
	if ok && known && time.Now().Before(t.expires) {
		return true
	}
	s.stats.AuthFailures.Add(1)
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeOutcome(w, http.StatusUnauthorized, "error", "login", "a valid bearer token is required")
	return false
}

func (s *Server) revokeTokens() {
	s.mu.Lock()
	clear(s.tokens)
	s.mu.Unlock()
}
