package kafkaclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// DeniedError is a request the broker refused because the client's principal lacks an
// ACL: which operation on which resources, and the broker's error code. Kafka's
// authorization errors name neither (TOPIC_AUTHORIZATION_FAILED says only "a topic");
// the code that sent the request knows both and wraps the error with Denied.
type DeniedError struct {
	// Operation is the ACL operation the request needs, as kafka-acls.sh spells it:
	// Read, Write, Create, Describe, DescribeConfigs, AlterConfigs, ClusterAction.
	Operation string
	// Resource is the resource type: topic, group, transactional-id or cluster.
	Resource string
	// Names are the resources the request was about (none for the cluster).
	Names []string
	// Err is the broker's error (a *kerr.Error).
	Err error
}

func (e *DeniedError) Error() string {
	what := e.Resource
	if len(e.Names) > 0 {
		what += " " + strings.Join(e.Names, ", ")
	}
	return fmt.Sprintf("not authorized: %s on %s (%s)", e.Operation, what, kerrName(e.Err))
}

func (e *DeniedError) Unwrap() error { return e.Err }

// authorizationCodes maps each authorization error to the resource type it is about.
var authorizationCodes = map[*kerr.Error]string{
	kerr.TopicAuthorizationFailed:           "topic",
	kerr.GroupAuthorizationFailed:           "group",
	kerr.TransactionalIDAuthorizationFailed: "transactional-id",
	kerr.ClusterAuthorizationFailed:         "cluster",
}

// authorizationError is the authorization error in err's chain and its resource type.
func authorizationError(err error) (*kerr.Error, string, bool) {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return nil, "", false
	}
	rt, ok := authorizationCodes[ke]
	return ke, rt, ok
}

// Denied returns err as a *DeniedError naming operation on the resources names of type
// resource (topic, group, transactional-id, cluster) when err is the broker refusing that
// resource type; any other error comes back unchanged, so callers wrap every error of a
// request with what it needs. An authorization error about another resource type than
// the one named (a transactional produce refused for its transactional id, not its
// topic) is wrapped with that type, without names, rather than misattributed.
func Denied(err error, operation, resource string, names ...string) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*DeniedError](err); ok {
		return err
	}
	ke, rt, ok := authorizationError(err)
	if !ok {
		return err
	}
	if rt != resource {
		return &DeniedError{Operation: defaultOperation[rt], Resource: rt, Err: ke}
	}
	return &DeniedError{Operation: operation, Resource: resource, Names: names, Err: ke}
}

// defaultOperation is the operation a request most likely lacked when only the
// resource type is known: a group is read (joined, committed to), a transactional id
// written (a transaction begun), the cluster acted on.
var defaultOperation = map[string]string{
	"topic":            "Describe",
	"group":            "Read",
	"transactional-id": "Write",
	"cluster":          "ClusterAction",
}

// Explain rewrites the connection and permission failures of a command run with c into
// messages that say what is wrong and what to change: a wrong SASL password, a broker
// certificate from an untrusted CA or for another host name, a client certificate the
// broker refused, plaintext spoken to a TLS listener, a missing ACL (with the principal
// that lacked it). Other errors come back unchanged. The original error stays in the
// chain (errors.Is and errors.As still find it); secrets are never part of the message.
func (c *Config) Explain(err error) error {
	if err == nil {
		return nil
	}
	if hint := c.explain(err); hint != "" {
		return &explainedError{hint: hint, err: err}
	}
	return err
}

type explainedError struct {
	hint string
	err  error
}

func (e *explainedError) Error() string { return e.err.Error() + "\n  " + e.hint }
func (e *explainedError) Unwrap() error { return e.err }

func (c *Config) explain(err error) string {
	brokers := strings.Join(c.Brokers, ",")
	if errors.Is(err, kerr.SaslAuthenticationFailed) {
		return fmt.Sprintf("SASL %s authentication as user %q failed at %s: the broker does not know this user for %s, or the password is wrong (check --sasl-user, --sasl-mechanism and the password in FHIRSTREAM_SASL_PASSWORD)",
			strings.ToUpper(c.SASLMechanism), c.SASLUser, brokers, strings.ToUpper(c.SASLMechanism))
	}
	if errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.IllegalSaslState) {
		return fmt.Sprintf("the broker at %s does not accept SASL %s on this listener: ask the cluster's operator which mechanism it enables (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)", brokers, strings.ToUpper(c.SASLMechanism))
	}
	if ua, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		trusted := "the system's CAs"
		if c.TLSCAFile != "" {
			trusted = c.TLSCAFile
		}
		issuer := "an unknown issuer"
		if ua.Cert != nil {
			issuer = fmt.Sprintf("%q", ua.Cert.Issuer.String())
		}
		return fmt.Sprintf("the TLS certificate of the broker at %s is signed by %s, which %s does not include: give the cluster's CA with --tls-ca (env FHIRSTREAM_TLS_CA)", brokers, issuer, trusted)
	}
	if he, ok := errors.AsType[x509.HostnameError](err); ok {
		var names []string
		if he.Certificate != nil {
			names = append(names, he.Certificate.DNSNames...)
			for _, ip := range he.Certificate.IPAddresses {
				names = append(names, ip.String())
			}
		}
		return fmt.Sprintf("the broker's TLS certificate is for %s, not %q, the name we verified: connect by a name the certificate has (the broker's advertised listener), or set --tls-server-name to one of them",
			strings.Join(names, ", "), he.Host)
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return fmt.Sprintf("the broker's TLS certificate is not valid: %v", ci)
	}
	var alert tls.AlertError
	if errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls: ") {
		if c.TLSCertFile == "" {
			return fmt.Sprintf("the broker at %s refused the TLS handshake: this listener requires a client certificate (mutual TLS); give one signed by a CA the broker trusts with --tls-cert and --tls-key", brokers)
		}
		return fmt.Sprintf("the broker at %s refused our client certificate %s: it must be signed by a CA the broker trusts, be valid now, and allow client authentication", brokers, c.TLSCertFile)
	}
	if strings.Contains(err.Error(), "is this a plaintext connection speaking to a tls endpoint") {
		return fmt.Sprintf("the listener at %s speaks TLS: add --tls and the cluster's CA with --tls-ca", brokers)
	}
	if d, ok := errors.AsType[*DeniedError](err); ok {
		return fmt.Sprintf("%s lacks the ACL %s; 'fhirstream acls <command> --principal %s' prints what each command needs", c.Principal(), d.grant(), c.principalForACL())
	}
	if ke, rt, ok := authorizationError(err); ok {
		return fmt.Sprintf("%s lacks an ACL on a %s (%s); 'fhirstream acls <command> --principal %s' prints what each command needs", c.Principal(), rt, ke.Message, c.principalForACL())
	}
	return ""
}

// grant is the missing ACL in the words of kafka-acls.sh.
func (e *DeniedError) grant() string {
	if e.Resource == "cluster" {
		return e.Operation + " on the cluster"
	}
	if len(e.Names) == 0 {
		return e.Operation + " on a " + e.Resource
	}
	return e.Operation + " on " + e.Resource + " " + strings.Join(e.Names, ", ")
}

// Principal describes who the broker takes this client for: the SASL user, the subject
// of the client certificate (which the broker's ssl.principal.mapping.rules turn into a
// principal, often User:<CN>), or ANONYMOUS.
func (c *Config) Principal() string {
	switch strings.ToUpper(c.SASLMechanism) {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		return "User:" + c.SASLUser
	case MechanismOAuthBearer:
		return fmt.Sprintf("the OAUTHBEARER token's subject (client %s)", c.OAuthClientID)
	case MechanismAWSMSKIAM:
		return "the AWS IAM identity of the environment's credentials"
	}
	if c.TLSCertFile != "" {
		if subject := certSubject(c.TLSCertFile); subject != "" {
			return fmt.Sprintf("the client certificate %s (principal User:%s under the usual CN mapping rule)", subject, certCN(c.TLSCertFile))
		}
		return "the client certificate " + c.TLSCertFile
	}
	return "User:ANONYMOUS"
}

// principalForACL is the principal to print in a kafka-acls hint.
func (c *Config) principalForACL() string {
	switch strings.ToUpper(c.SASLMechanism) {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		return "User:" + c.SASLUser
	}
	if cn := certCN(c.TLSCertFile); cn != "" {
		return "User:" + cn
	}
	return "User:<name>"
}

func readCert(path string) *x509.Certificate {
	if path == "" {
		return nil
	}
	rest, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			return cert
		}
	}
}

func certSubject(path string) string {
	if cert := readCert(path); cert != nil {
		return cert.Subject.String()
	}
	return ""
}

func certCN(path string) string {
	if cert := readCert(path); cert != nil {
		return cert.Subject.CommonName
	}
	return ""
}

// kerrName is the broker's error code name, such as TOPIC_AUTHORIZATION_FAILED.
func kerrName(err error) string {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return err.Error()
}

// IsDenied reports whether err is the broker refusing a request for lack of an ACL,
// wrapped by Denied or not. Such an error does not go away by retrying.
func IsDenied(err error) bool {
	if _, ok := errors.AsType[*DeniedError](err); ok {
		return true
	}
	_, _, ok := authorizationError(err)
	return ok
}

// ConsumeDenied is Denied for what a consumer group member is refused: Read on the topic
// it fetches, or Read on its group (join, offset fetch and commit).
func ConsumeDenied(err error, topic, group string) error {
	_, rt, ok := authorizationError(err)
	switch {
	case !ok:
		return err
	case rt == "group":
		return Denied(err, "Read", "group", group)
	case rt == "topic" && topic != "":
		return Denied(err, "Read", "topic", topic)
	}
	return Denied(err, defaultOperation[rt], rt)
}

// TransactionDenied is Denied for what a transactional producer is refused when it
// begins or ends a transaction: Write on its transactional id, or Read on the group whose
// offsets it commits in the transaction.
func TransactionDenied(err error, transactionalID, group string) error {
	_, rt, ok := authorizationError(err)
	switch {
	case !ok:
		return err
	case rt == "transactional-id":
		return Denied(err, "Write", rt, transactionalID)
	case rt == "group" && group != "":
		return Denied(err, "Read", rt, group)
	}
	return Denied(err, defaultOperation[rt], rt)
}

// CheckInputsVisible fails with a *DeniedError when none of the topics a consumer would
// read through pattern (a regular expression, as ConsumeRegex takes) is visible to this
// client and the broker refuses to describe a name of the pattern's literal prefix.
// Kafka shows a client only the topics it may describe, so a stage subscribed by
// pattern without Read on its input sees no topic and would wait for records forever,
// silently; this turns that into an error naming the missing grant. A pattern whose
// topics do not exist yet, under a prefix the client may read, passes.
func CheckInputsVisible(ctx context.Context, adm *kadm.Client, pattern string) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("input pattern %q: %w", pattern, err)
	}
	prefix, complete := re.LiteralPrefix()
	if prefix == "" {
		return nil
	}
	what := prefix + "*"
	if complete {
		what = prefix // the pattern is one topic
	}
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	for name := range all {
		if re.MatchString(name) {
			return nil
		}
	}
	// Kafka answers TOPIC_AUTHORIZATION_FAILED for a topic the client may not
	// describe whether it exists or not, and UNKNOWN_TOPIC_OR_PARTITION for a missing
	// one it may describe: asking for the prefix itself (a legal topic name) tells a
	// missing grant on the prefix from topics not made yet.
	if _, err := adm.ListTopics(uncached(ctx), prefix); IsDenied(err) {
		return fmt.Errorf("no input topic %s visible: %w", what, Denied(err, "Read", "topic", what))
	}
	return nil
}

// DeniedResource is the resource type an authorization failure in err's chain is about
// and the names the refused request was for (none when only the type is known).
func DeniedResource(err error) (resource string, names []string) {
	if d, ok := errors.AsType[*DeniedError](err); ok {
		return d.Resource, d.Names
	}
	if _, rt, ok := authorizationError(err); ok {
		return rt, nil
	}
	return "", nil
}
