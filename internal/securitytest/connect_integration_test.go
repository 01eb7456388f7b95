package securitytest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/acl"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/securitytest"
)

// listTopics connects with c and lists topics: the first request of most commands.
func listTopics(c kafkaclient.Config) error {
	cl, err := c.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).ListTopics(ctx)
	return err
}

// TestIntegrationConnectionErrors checks that each common misconfiguration against a
// secured broker fails at once with a message naming the cause and the setting to fix.
func TestIntegrationConnectionErrors(t *testing.T) {
	b := securitytest.Shared(t)
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	writeSelfSignedCA(t, otherCA)
	cases := []struct {
		name   string
		mutate func(*kafkaclient.Config)
		want   []string
	}{
		{"wrong password", func(c *kafkaclient.Config) { c.SASLPassword = "not-the-password" },
			[]string{"SASL_AUTHENTICATION_FAILED", `SASL SCRAM-SHA-512 authentication as user "admin" failed`, "password is wrong"}},
		{"unknown user", func(c *kafkaclient.Config) { c.SASLUser = "nobody-" + securitytest.Suffix() },
			[]string{"SASL_AUTHENTICATION_FAILED", "does not know this user"}},
		{"untrusted CA", func(c *kafkaclient.Config) { c.TLSCAFile = otherCA },
			[]string{"certificate signed by unknown authority", "fhirstream kafka-local CA", "give the cluster's CA with --tls-ca"}},
		{"system roots", func(c *kafkaclient.Config) { c.TLSCAFile, c.TLS = "", true },
			[]string{"certificate signed by unknown authority", "the system's CAs"}},
		{"host name mismatch", func(c *kafkaclient.Config) { c.TLSServerName = "kafka.example.org" },
			[]string{"certificate is valid for", `not "kafka.example.org"`, "--tls-server-name"}},
		{"plaintext to TLS", func(c *kafkaclient.Config) { c.TLSCAFile, c.SASLMechanism = "", "" },
			[]string{"speaks TLS: add --tls"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := b.AdminConfig(securitytest.SASLSSL)
			tc.mutate(&c)
			start := time.Now()
			err := listTopics(c)
			if err == nil {
				t.Fatal("connected")
			}
			msg := c.Explain(err).Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "not-the-password") {
				t.Errorf("message shows the password:\n%s", msg)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v to fail: retried a permanent error", d)
			}
		})
	}
	t.Run("mTLS without a client certificate", func(t *testing.T) {
		c := b.AdminConfig(securitytest.MTLS)
		c.TLSCertFile, c.TLSKeyFile = "", ""
		err := listTopics(c)
		if err == nil {
			t.Fatal("connected")
		}
		if msg := c.Explain(err).Error(); !strings.Contains(msg, "requires a client certificate") {
			t.Errorf("message: %s", msg)
		}
	})
	t.Run("mTLS with a certificate of another CA", func(t *testing.T) {
		c := b.AdminConfig(securitytest.MTLS)
		c.TLSCertFile, c.TLSKeyFile = writeSelfSignedClient(t, t.TempDir())
		err := listTopics(c)
		if err == nil {
			t.Fatal("connected")
		}
		if msg := c.Explain(err).Error(); !strings.Contains(msg, "refused our client certificate") {
			t.Errorf("message: %s", msg)
		}
	})
}

// TestIntegrationIdempotentProduceNeedsOnlyWrite checks what the derived ACLs rely on
// for the sinks' dead letters: since Kafka 3.0 (KIP-679) an idempotent producer (franz-go's
// default) needs Write on the topic and no IdempotentWrite on the cluster.
func TestIntegrationIdempotentProduceNeedsOnlyWrite(t *testing.T) {
	b := securitytest.Shared(t)
	adm := b.Admin(t)
	ctx := t.Context()
	name := "idem-" + securitytest.Suffix()
	topic := name + ".t"
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	c, err := b.NewPrincipal(ctx, adm, securitytest.SASLSSL, name)
	if err != nil {
		t.Fatal(err)
	}
	produce := func() error {
		cl, err := c.NewClient()
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return cl.ProduceSync(pctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	}
	if err := produce(); !kafkaclient.IsDenied(err) {
		t.Fatalf("produce without any ACL: %v, want an authorization error", err)
	}
	write := acl.Grant{Resource: acl.Topic, Pattern: acl.Literal, Name: topic, Operation: acl.Write}
	securitytest.Grant(t, adm, c, write)
	waitACL(t, adm, securitytest.Principal(c), write, true)
	if err := produce(); err != nil {
		t.Fatalf("idempotent produce with Write on the topic only: %v", err)
	}
}

// TestIntegrationOAuthBearer authenticates with SASL/OAUTHBEARER: tokens come from an
// OIDC client-credentials endpoint (a stub here, signing RS256 JWTs with the key whose
// JWKS the broker was configured with), the broker validates them and takes their sub
// as the principal, which the ACLs then govern.
func TestIntegrationOAuthBearer(t *testing.T) {
	b := securitytest.Shared(t)
	keyPEM, err := os.ReadFile(filepath.Join(b.SecurityDir, "oidc-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	subject := "oauth-" + securitytest.Suffix()
	const clientID, secret = "fhirstream-fetch", "s3cret-client"
	var issued int
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, pw, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || id != clientID || pw != secret || r.PostForm.Get("grant_type") != "client_credentials" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": subject, "iss": "kafka-local",
			"aud": "kafka-local", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "scope": "kafka"})
		tok.Header["kid"] = "kafka-local"
		signed, err := tok.SignedString(key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		issued++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"` + signed + `","token_type":"Bearer","expires_in":600}`))
	}))
	defer idp.Close()

	c := kafkaclient.Defaults()
	c.Brokers, c.TLSCAFile = []string{b.SASLAddr}, filepath.Join(b.SecurityDir, "ca.pem")
	c.SASLMechanism, c.OAuthTokenURL, c.OAuthClientID = kafkaclient.MechanismOAuthBearer, idp.URL, clientID
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.OAuthClientSecretFile = secretFile

	adm := b.Admin(t)
	topic := subject + ".t"
	if _, err := adm.CreateTopics(t.Context(), 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	// Authenticated, but no ACL yet: the broker knows the token's subject.
	cl, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	}
	if err := produce(); !kafkaclient.IsDenied(err) {
		t.Fatalf("produce as %s without ACLs: %v, want an authorization error", subject, err)
	}
	write := acl.Grant{Resource: acl.Topic, Pattern: acl.Literal, Name: topic, Operation: acl.Write}
	if err := acl.Apply(t.Context(), adm, "User:"+subject, []acl.Grant{write}); err != nil {
		t.Fatal(err)
	}
	waitACL(t, adm, "User:"+subject, write, true)
	if err := produce(); err != nil {
		t.Fatalf("produce as %s with Write: %v", subject, err)
	}
	if issued == 0 {
		t.Fatal("no token was fetched from the OIDC endpoint")
	}

	bad := c
	bad.OAuthClientSecretFile = ""
	bad.OAuthClientSecret = "zz-not-the-secret-zz"
	err = listTopics(bad)
	if err == nil || !strings.Contains(err.Error(), "OAUTHBEARER token from") || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("wrong client secret: %v", err)
	}
	if strings.Contains(bad.Explain(err).Error(), "zz-not-the-secret-zz") {
		t.Fatalf("error shows the secret: %v", err)
	}
}

// writeSelfSignedCA writes a CA certificate the broker's certificate does not chain to.
func writeSelfSignedCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "some other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeSelfSignedClient writes a client certificate and key no CA of the broker signed.
func writeSelfSignedClient(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "intruder"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
