package kafkaclient

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestDenied(t *testing.T) {
	topic := Denied(fmt.Errorf("produce: %w", kerr.TopicAuthorizationFailed), "Write", "topic", "fhir.valid.Patient")
	var d *DeniedError
	if !errors.As(topic, &d) || d.Operation != "Write" || d.Resource != "topic" || d.Names[0] != "fhir.valid.Patient" {
		t.Fatalf("Denied(topic) = %#v", topic)
	}
	if !errors.Is(topic, kerr.TopicAuthorizationFailed) || !IsDenied(topic) {
		t.Error("the broker's error left the chain")
	}
	if got := topic.Error(); got != "not authorized: Write on topic fhir.valid.Patient (TOPIC_AUTHORIZATION_FAILED)" {
		t.Errorf("message %q", got)
	}
	// A refusal for another resource type is not blamed on the named one.
	other := Denied(kerr.TransactionalIDAuthorizationFailed, "Write", "topic", "fhir.valid.Patient")
	if rt, names := DeniedResource(other); rt != "transactional-id" || len(names) != 0 {
		t.Errorf("misattributed: %v %v", rt, names)
	}
	plain := errors.New("broker gone")
	if Denied(plain, "Write", "topic", "x") != plain || IsDenied(plain) {
		t.Error("a non-authorization error changed")
	}
	if Denied(nil, "Write", "topic") != nil {
		t.Error("nil is not nil")
	}
	// Wrapping twice keeps the first, more specific, names.
	if again := Denied(topic, "Describe", "topic", "y"); again != topic {
		t.Errorf("wrapped twice: %v", again)
	}
}

func TestConsumeAndTransactionDenied(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{ConsumeDenied(kerr.GroupAuthorizationFailed, "", "g"), "Read on group g"},
		{ConsumeDenied(kerr.TopicAuthorizationFailed, "fhir.raw.Patient", "g"), "Read on topic fhir.raw.Patient"},
		{TransactionDenied(kerr.TransactionalIDAuthorizationFailed, "g-1", "g"), "Write on transactional-id g-1"},
		{TransactionDenied(kerr.GroupAuthorizationFailed, "g-1", "g"), "Read on group g"},
		{TransactionDenied(kerr.ClusterAuthorizationFailed, "g-1", "g"), "ClusterAction on cluster"},
	}
	for _, c := range cases {
		if !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%v: want %q", c.err, c.want)
		}
	}
}

func TestExplainConnectionErrors(t *testing.T) {
	c := Defaults()
	c.Brokers = []string{"kafka-1:9093"}
	c.SASLMechanism, c.SASLUser, c.SASLPassword = "SCRAM-SHA-512", "fetch", "hunter2"
	caCert := &x509.Certificate{Issuer: pkix.Name{CommonName: "Hospital CA"}}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"sasl", fmt.Errorf("list topics: %w", kerr.SaslAuthenticationFailed), `SASL SCRAM-SHA-512 authentication as user "fetch" failed at kafka-1:9093`},
		{"mechanism", kerr.UnsupportedSaslMechanism, "does not accept SASL SCRAM-SHA-512"},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{Cert: caCert}}, `signed by "CN=Hospital CA", which the system's CAs does not include`},
		{"host name", &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"kafka-1.internal"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, Host: "kafka-1"}},
			`for kafka-1.internal, 10.0.0.1, not "kafka-1"`},
		{"no client cert", &net.OpError{Op: "remote error", Err: tls.AlertError(42)}, "requires a client certificate"},
		{"plaintext", errors.New("invalid large response size 352518912 > limit; is this a plaintext connection speaking to a tls endpoint?"), "speaks TLS: add --tls"},
		{"denied", fmt.Errorf("stage x: %w", Denied(kerr.GroupAuthorizationFailed, "Read", "group", "g")), "User:fetch lacks the ACL Read on group g"},
		{"unnamed", kerr.TopicAuthorizationFailed, "User:fetch lacks an ACL on a topic"},
	}
	for _, tc := range cases {
		got := c.Explain(tc.err)
		if !strings.Contains(got.Error(), tc.want) {
			t.Errorf("%s: %q lacks %q", tc.name, got, tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: the original error left the chain", tc.name)
		}
		if strings.Contains(got.Error(), "hunter2") {
			t.Errorf("%s: the password is in the message", tc.name)
		}
	}
	if other := errors.New("disk full"); c.Explain(other) != other {
		t.Error("an unrelated error changed")
	}
}

func TestPrincipalOfCertificate(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.TLSCertFile, c.TLSKeyFile = cert, key
	if p := c.Principal(); !strings.Contains(p, "CN=kafka.internal") || !strings.Contains(p, "User:kafka.internal") {
		t.Errorf("principal %q", p)
	}
	if c.principalForACL() != "User:kafka.internal" {
		t.Errorf("ACL principal %q", c.principalForACL())
	}
	if d := Defaults(); d.Principal() != "User:ANONYMOUS" {
		t.Errorf("no credentials: %q", d.Principal())
	}
}
