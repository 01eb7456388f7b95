package kafkaclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		errHas string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "no Kafka brokers"},
		{"unknown sasl", func(c *Config) { c.SASLMechanism = "GSSAPI" }, "unknown SASL mechanism"},
		{"sasl without user", func(c *Config) { c.SASLMechanism = "SCRAM-SHA-512" }, "needs --sasl-user"},
		{"scram ok", func(c *Config) { c.SASLMechanism = "scram-sha-256"; c.SASLUser = "u" }, ""},
		{"cert without key", func(c *Config) { c.TLSCertFile = "c.pem" }, "go together"},
		{"tiny records", func(c *Config) { c.MaxRecordBytes = 10 }, "too small"},
	}
	for _, tc := range cases {
		c := Defaults()
		tc.mutate(&c)
		err := c.Validate()
		if tc.errHas == "" && err != nil {
			t.Errorf("%s: unexpected error %v", tc.name, err)
		}
		if tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.errHas)
		}
	}
}

func TestRedactedHidesPassword(t *testing.T) {
	c := Defaults()
	c.SASLPassword = "s3cret"
	if r := c.Redacted(); strings.Contains(r.SASLPassword, "s3cret") {
		t.Fatal("Redacted kept the password")
	}
	if c.SASLPassword != "s3cret" {
		t.Fatal("Redacted changed the original")
	}
}

func TestTLSConfigLoadsCAAndClientCert(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	ca := filepath.Join(dir, "ca.pem")
	cert := filepath.Join(dir, "cert.pem")
	key := filepath.Join(dir, "key.pem")
	for p, b := range map[string][]byte{ca: certPEM, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := Defaults()
	c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, c.TLSServerName = ca, cert, key, "kafka.internal"
	tc, err := c.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	if tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "kafka.internal" || tc.InsecureSkipVerify {
		t.Fatalf("tls config not as asked: %+v", tc)
	}
	if _, err := c.Opts(); err != nil {
		t.Fatalf("Opts with TLS: %v", err)
	}

	c.TLSCAFile = key // a key is not a certificate
	if _, err := c.tlsConfig(); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Fatalf("CA file without certificates: err = %v", err)
	}
	off := Defaults()
	if tc, err := off.tlsConfig(); err != nil || tc != nil {
		t.Fatalf("TLS off: %v %v", tc, err)
	}
}

func TestSASLMechanisms(t *testing.T) {
	for mech, name := range map[string]string{"PLAIN": "PLAIN", "SCRAM-SHA-256": "SCRAM-SHA-256", "scram-sha-512": "SCRAM-SHA-512"} {
		c := Defaults()
		c.SASLMechanism, c.SASLUser, c.SASLPassword = mech, "u", "p"
		m, err := c.saslMechanism()
		if err != nil || m == nil || m.Name() != name {
			t.Errorf("%s: mechanism %v, err %v", mech, m, err)
		}
	}
}

func TestBindFlags(t *testing.T) {
	c := Defaults()
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse([]string{"--brokers", "a:1,b:2", "--topic-prefix", "site", "--tls"}); err != nil {
		t.Fatal(err)
	}
	if len(c.Brokers) != 2 || c.Brokers[1] != "b:2" || c.TopicPrefix != "site" || !c.TLS {
		t.Fatalf("flags not bound: %+v", c)
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kafka.internal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"kafka.internal"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}
