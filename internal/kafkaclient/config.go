// Package kafkaclient builds franz-go clients from one configuration shared by every
// command: brokers, client id, SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER with OIDC
// client credentials, AWS_MSK_IAM) and TLS with a custom CA and client certificates.
// Every command that talks to Kafka binds the same flags and FHIRSTREAM_* environment
// variables through BindFlags, so they are spelled once. Connection and permission
// failures are explained once, here (Config.Explain, Denied).
package kafkaclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config is how to reach a Kafka cluster.
type Config struct {
	// Brokers are the seed brokers, host:port. Default 127.0.0.1:9092.
	Brokers []string
	// ClientID identifies this process in broker logs and quotas. Default "fhirstream".
	ClientID string
	// TopicPrefix is the prefix of every topic of the contract. Default "fhir".
	TopicPrefix string

	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"
	// or "AWS_MSK_IAM".
	SASLMechanism string
	SASLUser      string
	// SASLPassword is never logged; Redacted masks it.
	SASLPassword string

	// OAuthTokenURL is the OIDC provider's token endpoint: OAUTHBEARER tokens come
	// from it by the client-credentials grant (RFC 6749 4.4), cached until shortly
	// before they expire. https, except on a loopback address.
	OAuthTokenURL string
	// OAuthClientID and OAuthClientSecret are the client's credentials at the provider.
	// The secret is never logged; OAuthClientSecretFile reads it from a file instead
	// (a mounted Kubernetes secret).
	OAuthClientID         string
	OAuthClientSecret     string
	OAuthClientSecretFile string
	// OAuthScopes are the scopes asked for, if the provider wants any.
	OAuthScopes []string

	// TLS turns on TLS; it is implied by any of the TLS file options.
	TLS bool
	// TLSCAFile is a PEM bundle of CAs to trust instead of the system roots.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a PEM client certificate and key for mutual TLS.
	TLSCertFile string
	TLSKeyFile  string
	// TLSServerName overrides the name verified in the broker certificate.
	TLSServerName string

	// MaxRecordBytes bounds one produced record batch (the producer's max.request.size);
	// topics are created with a matching max.message.bytes. Default 8 MiB so large FHIR
	// resources (inlined attachments, big Bundles) fit.
	MaxRecordBytes int32

	// ClientLogLevel is how much of franz-go's own log to pass on: "error" (the
	// default), "warn", "info" or "debug". The process's --log-level still applies.
	ClientLogLevel string

	// Compression is the codec of the record batches this process produces: "snappy"
	// (the default, franz-go's), "lz4", "zstd", "gzip" or "none". Consumers read any.
	Compression string
}

// SecretFlagAnnotation marks a flag whose value is a credential (pflag annotations):
// 'fhirstream config print' masks it and logs never show it.
const SecretFlagAnnotation = "fhirstream/secret"

// SASL mechanisms beyond PLAIN and SCRAM.
const (
	MechanismOAuthBearer = "OAUTHBEARER"
	MechanismAWSMSKIAM   = "AWS_MSK_IAM"
)

// DefaultMaxRecordBytes is the default for Config.MaxRecordBytes.
const DefaultMaxRecordBytes = 8 << 20

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		Brokers:        []string{"127.0.0.1:9092"},
		ClientID:       "fhirstream",
		TopicPrefix:    "fhir",
		MaxRecordBytes: DefaultMaxRecordBytes,
		Compression:    DefaultCompression,
	}
}

// DefaultCompression is the default for Config.Compression.
const DefaultCompression = "snappy"

// compressionCodec parses Compression; "" is the default.
func (c *Config) compressionCodec() (kgo.CompressionCodec, error) {
	switch strings.ToLower(c.Compression) {
	case "", "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown --compression %q: want snappy, lz4, zstd, gzip or none", c.Compression)
}

// BindFlags registers the connection flags on fs with defaults taken from c. The root
// command maps FHIRSTREAM_<FLAG_NAME> environment variables onto every flag, so that
// flag > env > default.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.Brokers, "brokers", c.Brokers, "Kafka seed brokers, host:port, comma separated (env FHIRSTREAM_BROKERS)")
	fs.StringVar(&c.ClientID, "client-id", c.ClientID, "Kafka client id (env FHIRSTREAM_CLIENT_ID)")
	fs.StringVar(&c.TopicPrefix, "topic-prefix", c.TopicPrefix, "prefix of every topic (env FHIRSTREAM_TOPIC_PREFIX)")
	fs.StringVar(&c.SASLMechanism, "sasl-mechanism", c.SASLMechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM (env FHIRSTREAM_SASL_MECHANISM)")
	fs.StringVar(&c.SASLUser, "sasl-user", c.SASLUser, "SASL user name (env FHIRSTREAM_SASL_USER)")
	fs.StringVar(&c.SASLPassword, "sasl-password", c.SASLPassword, "SASL password; prefer the env FHIRSTREAM_SASL_PASSWORD so it stays out of process listings")
	_ = fs.SetAnnotation("sasl-password", SecretFlagAnnotation, []string{"true"})
	fs.StringVar(&c.OAuthTokenURL, "sasl-oauth-token-url", c.OAuthTokenURL, "OAUTHBEARER: the OIDC token endpoint, for the client-credentials grant (env FHIRSTREAM_SASL_OAUTH_TOKEN_URL)")
	fs.StringVar(&c.OAuthClientID, "sasl-oauth-client-id", c.OAuthClientID, "OAUTHBEARER: the client id at the OIDC provider (env FHIRSTREAM_SASL_OAUTH_CLIENT_ID)")
	fs.StringVar(&c.OAuthClientSecret, "sasl-oauth-client-secret", c.OAuthClientSecret, "OAUTHBEARER: the client secret; prefer the env FHIRSTREAM_SASL_OAUTH_CLIENT_SECRET or --sasl-oauth-client-secret-file")
	_ = fs.SetAnnotation("sasl-oauth-client-secret", SecretFlagAnnotation, []string{"true"})
	fs.StringVar(&c.OAuthClientSecretFile, "sasl-oauth-client-secret-file", c.OAuthClientSecretFile, "OAUTHBEARER: a file holding the client secret (env FHIRSTREAM_SASL_OAUTH_CLIENT_SECRET_FILE)")
	fs.StringSliceVar(&c.OAuthScopes, "sasl-oauth-scopes", c.OAuthScopes, "OAUTHBEARER: scopes to ask the OIDC provider for, comma separated (env FHIRSTREAM_SASL_OAUTH_SCOPES)")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "connect with TLS, verifying the broker certificate (env FHIRSTREAM_TLS)")
	fs.StringVar(&c.TLSCAFile, "tls-ca", c.TLSCAFile, "PEM file of CAs to trust for the brokers (env FHIRSTREAM_TLS_CA)")
	fs.StringVar(&c.TLSCertFile, "tls-cert", c.TLSCertFile, "PEM client certificate for mutual TLS (env FHIRSTREAM_TLS_CERT)")
	fs.StringVar(&c.TLSKeyFile, "tls-key", c.TLSKeyFile, "PEM client key for mutual TLS (env FHIRSTREAM_TLS_KEY)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", c.TLSServerName, "name to verify in the broker certificate (env FHIRSTREAM_TLS_SERVER_NAME)")
	fs.Int32Var(&c.MaxRecordBytes, "max-record-bytes", c.MaxRecordBytes, "largest record produced; topics are created to accept it (env FHIRSTREAM_MAX_RECORD_BYTES)")
	fs.StringVar(&c.Compression, "compression", c.Compression, "codec of the record batches produced: snappy, lz4, zstd, gzip or none (env FHIRSTREAM_COMPRESSION)")
	fs.StringVar(&c.ClientLogLevel, "kafka-log-level", c.ClientLogLevel, "how much of the Kafka client's own log to show: error, warn, info or debug; debug also needs --log-level debug (env FHIRSTREAM_KAFKA_LOG_LEVEL)")
}

// clientLogLevel parses ClientLogLevel.
func (c *Config) clientLogLevel() (kgo.LogLevel, error) {
	switch strings.ToLower(c.ClientLogLevel) {
	case "", "error":
		return kgo.LogLevelError, nil
	case "warn":
		return kgo.LogLevelWarn, nil
	case "info":
		return kgo.LogLevelInfo, nil
	case "debug":
		return kgo.LogLevelDebug, nil
	}
	return kgo.LogLevelNone, fmt.Errorf("unknown --kafka-log-level %q: want error, warn, info or debug", c.ClientLogLevel)
}

// Validate checks the configuration without contacting a broker.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("no Kafka brokers: give --brokers or FHIRSTREAM_BROKERS")
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "", MechanismAWSMSKIAM:
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.SASLUser == "" {
			return fmt.Errorf("SASL %s needs --sasl-user", c.SASLMechanism)
		}
	case MechanismOAuthBearer:
		if err := c.validateOAuth(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown SASL mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM", c.SASLMechanism)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.MaxRecordBytes < 1024 {
		return fmt.Errorf("--max-record-bytes %d is too small", c.MaxRecordBytes)
	}
	if _, err := c.clientLogLevel(); err != nil {
		return err
	}
	if _, err := c.compressionCodec(); err != nil {
		return err
	}
	return nil
}

// Redacted returns a copy safe to print: the password and the client secret are masked.
func (c Config) Redacted() Config {
	if c.SASLPassword != "" {
		c.SASLPassword = "********"
	}
	if c.OAuthClientSecret != "" {
		c.OAuthClientSecret = "********"
	}
	return c
}

// Opts returns the franz-go options for the connection part of the configuration.
// Callers append their own producer or consumer options.
func (c *Config) Opts() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	logLevel, _ := c.clientLogLevel() // checked by Validate
	codec, _ := c.compressionCodec()  // checked by Validate
	// 4 MiB a fetch. A stage holds the fetch being processed and one fetched ahead, as
	// decompressed batches (JSON resources are four to five times their snappy size), so
	// the fetch size is most of a stage's memory: in `fhirstream bench --processes`
	// (3,000 patients) 16 MiB fetches had validate and omop peak at 490-500 MB, 4 MiB at
	// 270-300 MB (with 10,000-record batches), at the same CPU per resource. A record
	// batch larger than a fetch still comes whole (KIP-74), so MaxRecordBytes needs no
	// room here.
	const fetchMax = 4 << 20
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.ProducerBatchMaxBytes(c.MaxRecordBytes),
		kgo.ProducerBatchCompression(codec),
		// 256 KiB from a partition per fetch, not MaxRecordBytes: a larger record batch
		// still comes whole (KIP-74), so this only spreads a fetch, and so a stage's batch,
		// over more partitions, which stages process in parallel. With 8 MiB a batch of
		// 20,000 records was one or two partitions, processed by one goroutine. A stage
		// writes each input partition's records to the same output partition, so this also
		// bounds the batches it produces: with 1 MiB (Kafka's default) a partition's share
		// of a 10,000-record batch was up to the 8 MiB batch limit, and franz-go's request
		// and compression buffers, each about a batch, were 30-40 MB of dedupe's live heap.
		// In `fhirstream bench --processes` (3,000 patients, six interleaved pairs)
		// 256 KiB took validate's peak from 257-291 to 214-237 MB, dedupe's from 284-315 to
		// 251-284 and omop's from 271-305 to 224-244, at the same CPU per resource.
		kgo.FetchMaxPartitionBytes(256 << 10),
		kgo.FetchMaxBytes(fetchMax),
		// Only a guard against corrupt sizes; generous so that a command raising its own
		// FetchMaxBytes after these options stays within it.
		kgo.BrokerMaxReadBytes(max(256<<20, 4*fetchMax)),
		kgo.RetryTimeout(2 * time.Minute),
		kgo.WithLogger(newClientLogger(logLevel)),
	}
	if m, err := c.saslMechanism(); err != nil {
		return nil, err
	} else if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	if tc, err := c.tlsConfig(); err != nil {
		return nil, err
	} else if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

// NewClient returns a client with the connection options plus extra.
func (c *Config) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.Opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", strings.Join(c.Brokers, ","), err)
	}
	return cl, nil
}

func (c *Config) saslMechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		return nil, nil
	case "PLAIN":
		return plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism(), nil
	case MechanismOAuthBearer:
		return c.oauthMechanism()
	case MechanismAWSMSKIAM:
		return awsMSKIAMMechanism(), nil
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q", c.SASLMechanism)
}

// tlsConfig returns nil when TLS is off. Certificates are always verified: there is
// deliberately no option to skip verification.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS && c.TLSCAFile == "" && c.TLSCertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificates found", c.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
