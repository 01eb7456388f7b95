package ehrsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fhirstream/fhirstream/producer/smart"
)

// client is a registered backend client.
type client struct {
	id   string
	keys map[string]smart.JWK // by kid
}

type token struct {
	client  string
	scope   string
	expires time.Time
}

// RegisterClient registers a backend client with the public keys (a JWKS, as JSON) its
// assertions are signed with. Registering an id again replaces its keys.
func (s *Server) RegisterClient(clientID string, jwks []byte) error {
	var set smart.JWKS
	if err := json.Unmarshal(jwks, &set); err != nil {
		return fmt.Errorf("register client %s: JWKS: %w", clientID, err)
	}
	c := &client{id: clientID, keys: map[string]smart.JWK{}}
	for _, k := range set.Keys {
		if k.D != "" {
			return fmt.Errorf("register client %s: the JWKS holds a private key; register the public one", clientID)
		}
		if _, err := k.PublicKey(); err != nil {
			return fmt.Errorf("register client %s: %w", clientID, err)
		}
		c.keys[k.Kid] = k
	}
	if len(c.keys) == 0 {
		return fmt.Errorf("register client %s: the JWKS has no keys", clientID)
	}
	s.mu.Lock()
	s.clients[clientID] = c
	s.mu.Unlock()
	return nil
}

func (s *Server) tokenURL() string { return s.URL + "/auth/token" }

func (s *Server) handleSmartConfig(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token_endpoint":                                   s.tokenURL(),
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{smart.AlgRS384, smart.AlgES384},
		"grant_types_supported":                            []string{"client_credentials"},
		"scopes_supported":                                 []string{"system/*.rs", "system/*.read"},
		"capabilities":                                     []string{"client-confidential-asymmetric"},
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
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// handleToken implements the client_credentials grant with a private_key_jwt assertion.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "bad form body")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q", g))
		return
	}
	if t := r.PostForm.Get("client_assertion_type"); t != smart.AssertionType {
		tokenError(w, http.StatusBadRequest, "invalid_request", "client_assertion_type must be "+smart.AssertionType)
		return
	}
	scope := r.PostForm.Get("scope")
	if !strings.Contains(scope, "system/") {
		tokenError(w, http.StatusBadRequest, "invalid_scope", "system scopes are required")
		return
	}
	clientID, err := s.verifyAssertion(r.PostForm.Get("client_assertion"))
	if err != nil {
		s.stats.AuthFailures.Add(1)
		s.log.Info("ehrsim: client assertion rejected", "err", err)
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

// verifyAssertion checks signature, algorithm, kid, iss=sub, aud, exp (at most 5
// minutes ahead) and that the jti was not seen before; it returns the client id.
func (s *Server) verifyAssertion(assertion string) (string, error) {
	if assertion == "" {
		return "", fmt.Errorf("no client_assertion")
	}
	var claims jwt.RegisteredClaims
	var c *client
	_, err := jwt.ParseWithClaims(assertion, &claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != "" && typ != "JWT" {
			return nil, fmt.Errorf("typ %q, want JWT", typ)
		}
		s.mu.Lock()
		c = s.clients[claims.Issuer]
		s.mu.Unlock()
		if c == nil {
			return nil, fmt.Errorf("client %q is not registered", claims.Issuer)
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := c.keys[kid]
		if !ok {
			return nil, fmt.Errorf("client %q has no key %q", claims.Issuer, kid)
		}
		if k.Alg != "" && k.Alg != t.Method.Alg() {
			return nil, fmt.Errorf("key %q is registered for %s, the assertion uses %s", kid, k.Alg, t.Method.Alg())
		}
		return k.PublicKey()
	}, jwt.WithValidMethods([]string{smart.AlgRS384, smart.AlgES384}), jwt.WithAudience(s.tokenURL()),
		jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	if claims.Subject != claims.Issuer {
		return "", fmt.Errorf("client assertion: sub %q differs from iss %q", claims.Subject, claims.Issuer)
	}
	if claims.ExpiresAt.After(time.Now().Add(5*time.Minute + 5*time.Second)) {
		return "", fmt.Errorf("client assertion: exp is more than 5 minutes ahead")
	}
	if claims.ID == "" {
		return "", fmt.Errorf("client assertion: no jti")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for j, exp := range s.jtis {
		if now.After(exp) {
			delete(s.jtis, j)
		}
	}
	key := c.id + "\x00" + claims.ID
	if _, seen := s.jtis[key]; seen {
		return "", fmt.Errorf("client assertion: jti replayed")
	}
	s.jtis[key] = claims.ExpiresAt.Add(10 * time.Second)
	return c.id, nil
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

// faultState tracks the server-wide fault counters.
type faultState struct {
	statusFaults int
}

// statusFault answers a status poll with the next scheduled fault, if any.
func (s *Server) statusFault(w http.ResponseWriter) bool {
	f := s.cfg.Faults
	s.mu.Lock()
	n := s.faults.statusFaults
	s.faults.statusFaults++
	s.mu.Unlock()
	switch {
	case n < f.Status429:
		w.Header().Set("Retry-After", retryAfter(s.cfg.RetryAfter))
		writeOutcome(w, http.StatusTooManyRequests, "error", "throttled", "simulated: too many requests")
	case n < f.Status429+f.Status5xx:
		writeOutcome(w, http.StatusServiceUnavailable, "error", "transient", "simulated: service unavailable")
	case n < f.Status429+f.Status5xx+f.TransientOutcome:
		writeOutcome(w, http.StatusInternalServerError, "error", "transient", "simulated: transient failure, retry")
	default:
		return false
	}
	return true
}
