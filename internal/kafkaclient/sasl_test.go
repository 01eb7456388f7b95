package kafkaclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateOAuth(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		errHas string
	}{
		{"ok", func(*Config) {}, ""},
		{"loopback http", func(c *Config) { c.OAuthTokenURL = "http://127.0.0.1:8080/token" }, ""},
		{"no url", func(c *Config) { c.OAuthTokenURL = "" }, "needs --sasl-oauth-token-url"},
		{"no client", func(c *Config) { c.OAuthClientID = "" }, "needs --sasl-oauth-token-url and --sasl-oauth-client-id"},
		{"plain http", func(c *Config) { c.OAuthTokenURL = "http://idp.example.org/token" }, "must be https"},
		{"two secrets", func(c *Config) { c.OAuthClientSecret, c.OAuthClientSecretFile = "s", "f" }, "give the OAUTHBEARER client secret once"},
	}
	for _, tc := range cases {
		c := Defaults()
		c.SASLMechanism, c.OAuthTokenURL, c.OAuthClientID = "oauthbearer", "https://idp.example.org/oauth2/token", "fetch"
		tc.mutate(&c)
		err := c.Validate()
		if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.errHas)
		}
	}
}

// TestOAuthBearerToken: the mechanism gets its token by the client-credentials grant
// (RFC 6749 4.4: POST grant_type=client_credentials, client authenticated with HTTP
// Basic) and sends it in the RFC 7628 initial response.
func TestOAuthBearerToken(t *testing.T) {
	var grants int
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		_ = r.ParseForm()
		if r.Method != http.MethodPost || !ok || id != "fetch" || secret != "from-file" ||
			r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "kafka.write" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		grants++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"tok-123","token_type":"Bearer","expires_in":3600}`))
	}))
	defer idp.Close()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.SASLMechanism, c.OAuthTokenURL, c.OAuthClientID = "OAUTHBEARER", idp.URL, "fetch"
	c.OAuthClientSecretFile, c.OAuthScopes = secretFile, []string{"kafka.write"}
	m, err := c.saslMechanism()
	if err != nil || m.Name() != "OAUTHBEARER" {
		t.Fatalf("mechanism %v, %v", m, err)
	}
	for range 2 {
		_, first, err := m.Authenticate(context.Background(), "127.0.0.1:9093")
		if err != nil {
			t.Fatal(err)
		}
		if want := "n,,\x01auth=Bearer tok-123\x01\x01"; string(first) != want {
			t.Fatalf("initial response %q, want %q", first, want)
		}
	}
	if grants != 1 {
		t.Errorf("%d token requests for two connections: the token is not cached", grants)
	}

	c.OAuthClientSecretFile, c.OAuthClientSecret = "", "wrong"
	m, _ = c.saslMechanism()
	_, _, err = m.Authenticate(context.Background(), "127.0.0.1:9093")
	if err == nil || !strings.Contains(err.Error(), "OAUTHBEARER token from") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestAWSMSKIAMMechanism(t *testing.T) {
	c := Defaults()
	c.SASLMechanism = "aws_msk_iam"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := c.saslMechanism()
	if err != nil || m.Name() != "AWS_MSK_IAM" {
		t.Fatalf("mechanism %v, %v", m, err)
	}
}

func TestRedactedHidesClientSecret(t *testing.T) {
	c := Defaults()
	c.OAuthClientSecret = "s3cret"
	if strings.Contains(c.Redacted().OAuthClientSecret, "s3cret") {
		t.Fatal("Redacted kept the client secret")
	}
}
