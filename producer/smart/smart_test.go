package smart_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
	"github.com/fhirstream/fhirstream/producer/smart"
)

func newServer(t *testing.T) *ehrsim.Server {
	t.Helper()
	srv, err := ehrsim.New(ehrsim.Config{Dir: "../../internal/ehrsim/testdata/small", Auth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestBothAlgorithmsAuthenticate registers an RS384 and an ES384 key and checks that
// each obtains a token that the server accepts on a Bulk Data request.
func TestBothAlgorithmsAuthenticate(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	policy, _ := ehrhttp.NewPolicy(srv.URL, nil)
	conf, err := smart.Discover(ctx, http.DefaultClient, srv.URL, policy)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{smart.AlgRS384, smart.AlgES384} {
		t.Run(alg, func(t *testing.T) {
			key, err := smart.GenerateKey(alg, "kid-"+alg)
			if err != nil {
				t.Fatal(err)
			}
			// Round-trip the key through its stored form, as `keys generate` then `fetch` do.
			priv, err := key.PrivateJWK()
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(priv)
			loaded, err := smart.ParseKey(raw, "", "")
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := key.PublicJWKS()
			pubRaw, _ := json.Marshal(pub)
			if strings.Contains(string(pubRaw), `"d"`) {
				t.Fatal("public JWKS contains a private member")
			}
			if err := srv.RegisterClient("client-"+alg, pubRaw); err != nil {
				t.Fatal(err)
			}
			c := &smart.Client{ClientID: "client-" + alg, TokenURL: conf.TokenEndpoint, Key: loaded}
			tok, err := c.Token(ctx)
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/$export", nil)
			req.Header.Set("Accept", "application/fhir+json")
			req.Header.Set("Prefer", "respond-async")
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("kickoff with token: HTTP %d", resp.StatusCode)
			}
			// Cached: a second call makes no new request.
			if tok2, _ := c.Token(ctx); tok2 != tok || c.Renewals != 1 {
				t.Fatalf("token not cached: renewals=%d", c.Renewals)
			}
			c.Invalidate(tok)
			if tok3, err := c.Token(ctx); err != nil || tok3 == tok {
				t.Fatalf("token not renewed after Invalidate: %v", err)
			}
		})
	}
}

func TestAssertionClaims(t *testing.T) {
	key, err := smart.GenerateKey(smart.AlgES384, "k1")
	if err != nil {
		t.Fatal(err)
	}
	key.JKU = "https://client.example/jwks.json"
	c := &smart.Client{ClientID: "cid", TokenURL: "https://ehr.example/token", Key: key}
	a1, err := c.Assertion()
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := c.Assertion()
	var claims jwt.RegisteredClaims
	tok, err := jwt.ParseWithClaims(a1, &claims, func(*jwt.Token) (any, error) { return key.Signer.Public(), nil },
		jwt.WithValidMethods([]string{"ES384"}), jwt.WithAudience("https://ehr.example/token"), jwt.WithIssuer("cid"), jwt.WithSubject("cid"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["kid"] != "k1" || tok.Header["typ"] != "JWT" || tok.Header["jku"] != key.JKU {
		t.Fatalf("header = %v", tok.Header)
	}
	if d := claims.ExpiresAt.Sub(claims.IssuedAt.Time); d <= 0 || d > 300e9 {
		t.Fatalf("exp - iat = %v, want (0, 5m]", d)
	}
	var claims2 jwt.RegisteredClaims
	_, _, _ = jwt.NewParser().ParseUnverified(a2, &claims2)
	if claims.ID == "" || claims.ID == claims2.ID {
		t.Fatalf("jti not unique: %q %q", claims.ID, claims2.ID)
	}
	// SMART defines aud as the token URL: a JSON string, not an array.
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(a1, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatal(err)
	}
	if aud, ok := raw["aud"].(string); !ok || aud != "https://ehr.example/token" {
		t.Fatalf("aud = %#v, want the string %q", raw["aud"], "https://ehr.example/token")
	}
}

// TestThumbprintKid checks a key generated without a kid gets its RFC 7638 thumbprint,
// computed here by the RFC's recipe rather than by go-jose.
func TestThumbprintKid(t *testing.T) {
	key, err := smart.GenerateKey(smart.AlgES384, "")
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Signer.Public().(*ecdsa.PublicKey)
	raw, _ := pub.Bytes() // 0x04 || X || Y
	b64 := base64.RawURLEncoding.EncodeToString
	members := fmt.Sprintf(`{"crv":"P-384","kty":"EC","x":"%s","y":"%s"}`, b64(raw[1:49]), b64(raw[49:]))
	sum := sha256.Sum256([]byte(members))
	if want := b64(sum[:]); key.Kid != want {
		t.Errorf("kid %q, want the thumbprint %q", key.Kid, want)
	}
}

func TestServerRejectsBadAssertions(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	good, _ := smart.GenerateKey(smart.AlgRS384, "good")
	other, _ := smart.GenerateKey(smart.AlgRS384, "good") // same kid, different key
	pub, _ := good.PublicJWKS()
	raw, _ := json.Marshal(pub)
	if err := srv.RegisterClient("c", raw); err != nil {
		t.Fatal(err)
	}
	tokenURL := srv.URL + "/auth/token"
	cases := map[string]*smart.Client{
		"wrong key":      {ClientID: "c", TokenURL: tokenURL, Key: other},
		"unknown client": {ClientID: "nobody", TokenURL: tokenURL, Key: good},
		"wrong audience": {ClientID: "c", TokenURL: tokenURL, Key: good},
	}
	for name, c := range cases {
		if name == "wrong audience" {
			// Sign for another audience but post to the real endpoint.
			c = &smart.Client{ClientID: "c", TokenURL: tokenURL + "x", Key: good}
			c.HTTP = &http.Client{Transport: rewrite{to: tokenURL}}
		}
		if _, err := c.Token(ctx); err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("%s: err = %v, want invalid_client", name, err)
		}
	}
}

type rewrite struct{ to string }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	u, _ := req.URL.Parse(r.to)
	req.URL = u
	return http.DefaultTransport.RoundTrip(req)
}

func TestLoadKeyFormats(t *testing.T) {
	dir := t.TempDir()
	key, _ := smart.GenerateKey(smart.AlgRS384, "k")
	priv, _ := key.PrivateJWK()
	jwk, _ := json.Marshal(priv)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{priv.Public(), priv}})
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key.Signer)
	for name, content := range map[string][]byte{"k.jwk": jwk, "k.jwks": jwks, "k.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o600)
		kid := ""
		if name == "k.pem" {
			kid = "k" // PEM carries none
		}
		k, err := smart.LoadKey(p, kid, "")
		if err != nil || k.Kid != "k" || k.Alg != smart.AlgRS384 {
			t.Fatalf("%s: %v %v", name, k, err)
		}
	}
	if _, err := smart.ParseKey([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "k", ""); err == nil {
		t.Fatal("garbage PEM accepted")
	}
}
