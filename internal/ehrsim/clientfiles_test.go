package ehrsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// A client registered from a secret file gets a token with that secret (trimmed of the
// file's newline) and not with another; malformed specs and unreadable files are errors
// naming the flag.
func TestRegisterSecretClientFiles(t *testing.T) {
	srv := start(t, Config{Auth: true})
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.RegisterSecretClientFiles([]string{"svc=" + file}); err != nil {
		t.Fatal(err)
	}
	token := func(secret string) int {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/auth/token", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := token("s3cret"); got != http.StatusOK {
		t.Errorf("the file's secret: HTTP %d", got)
	}
	if got := token("s3cret\n"); got == http.StatusOK {
		t.Error("the untrimmed secret was accepted")
	}
	for spec, want := range map[string]string{
		"svc":                               `--secret-client "svc": want ID=SECRET_FILE`,
		"svc=" + filepath.Join(dir, "nope"): "--secret-client svc: open ",
	} {
		if err := srv.RegisterSecretClientFiles([]string{spec}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", spec, err, want)
		}
	}
}

func TestRegisterClientFiles(t *testing.T) {
	srv := start(t, Config{Auth: true})
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES384"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwks, set, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.RegisterClientFiles([]string{"app=" + jwks}); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	c := srv.clients["app"]
	srv.mu.Unlock()
	if c == nil || len(c.keys) != 1 {
		t.Fatalf("client app registered as %+v", c)
	}
	for spec, want := range map[string]string{
		"app":                               "--client \"app\": want ID=JWKS_FILE",
		"app=" + filepath.Join(dir, "nope"): "--client app: open ",
	} {
		if err := srv.RegisterClientFiles([]string{spec}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", spec, err, want)
		}
	}
}
