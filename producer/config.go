package producer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/producer/bulk"
)

// Config is one fetch. Fields left zero take the documented defaults.
type Config struct {
	Kafka kafkaclient.Config
	// Partitions and ReplicationFactor of topics the fetcher creates; default 6 and the
	// broker's default.
	Partitions        int32
	ReplicationFactor int16

	// From lists local NDJSON files or directories (plain or .gz) to publish instead of
	// running an export; the type comes from the file name (Patient.ndjson, Patient.000.ndjson.gz).
	From []string

	// Export is the kickoff (Base, Level, parameters). Since is overridden by SinceAuto.
	Export bulk.Request
	// SinceAuto uses the transactionTime of the last complete export of the same request
	// (kept in the state topic) as _since; the first run exports everything.
	SinceAuto bool
	// Resume picks up an export already started at this status URL instead of kicking off.
	Resume string
	// Cancel sends DELETE to the status URL (Resume, or the one in progress) and returns.
	Cancel bool
	// KeepExport leaves the export on the server after a complete download; by default
	// its status URL is DELETEd so the server can release the files.
	KeepExport bool

	// Auth: a SMART Backend Services client. TokenURL "" discovers it from
	// <base>/.well-known/smart-configuration; "none" means an open server.
	ClientID string
	// AuthMethod is how the client authenticates at the token endpoint
	// (smart.AuthMethod); default private_key_jwt, or the one the credentials imply.
	AuthMethod string
	KeyFile    string
	KeyID      string // for PEM keys, or to pick a key from a JWKS
	KeyAlg     string // RS384 or ES384; default from the key
	JKU        string
	// ClientSecret (from the environment, ClientSecretEnv) or ClientSecretFile is the
	// secret of client_secret_basic and client_secret_post. Never a flag: flag values
	// show in process listings.
	ClientSecret     string
	ClientSecretFile string
	// BearerTokenFile holds an access token obtained elsewhere, used instead of a token
	// endpoint; it is read again when the server rejects the token.
	BearerTokenFile string
	TokenURL        string
	Scope           string // default system/*.rs

	// TrustOrigins are origins besides the FHIR base's that may receive the access token
	// (file or status URLs on another host); see producer/ehrhttp.
	TrustOrigins []string
	// CAFile adds PEM certificates to trust besides the system's (a private CA).
	CAFile string

	// Workers is the number of files downloaded and published in parallel; default 5.
	Workers int
	// MaxLineBytes guards against unbounded lines; longer ones are dead-lettered by
	// reference. Default 64 MiB.
	MaxLineBytes int
	// CommitBytes and CommitInterval set how often a transaction with checkpoints is
	// committed; defaults 32 MiB and 5s.
	CommitBytes    int64
	CommitInterval time.Duration
	// ManifestDir receives a copy of each manifest, for audit; "" keeps none.
	ManifestDir string

	// Poll tuning of the Bulk Data client (tests shorten these); zero = bulk defaults.
	MinPoll time.Duration
	Backoff bulk.Backoff
	// MaxWait bounds the wait for an export, from kickoff (or resume) to its whole
	// manifest; default 12 hours (bulk.Client.MaxWait).
	MaxWait time.Duration
	// IdleTimeout fails a request or download that receives nothing for this long (a
	// download then resumes where it stopped); default 2 minutes.
	IdleTimeout time.Duration
	// MaxFileBytes fails a file larger than this; 0 sets no cap.
	MaxFileBytes int64
	// Accept lists the server quirks (bulk.Quirk) the operator accepts: they become
	// warnings instead of failing the run.
	Accept bulk.Quirks

	Log *slog.Logger
	// Progress receives the live progress line (a terminal) or periodic log lines; nil: none.
	Progress io.Writer
	// ProgressTTY redraws one line in place instead of printing log lines.
	ProgressTTY bool
}

func (c *Config) defaults() error {
	if c.Workers <= 0 {
		c.Workers = 5
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = 64 << 20
	}
	if c.CommitBytes <= 0 {
		c.CommitBytes = 32 << 20
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 5 * time.Second
	}
	if c.Partitions <= 0 {
		c.Partitions = 6
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if len(c.From) == 0 && c.Export.Base == "" && c.Resume == "" {
		return errors.New("fetch: give a FHIR base URL or --from files")
	}
	if len(c.From) > 0 && (c.Export.Base != "" || c.Resume != "") {
		return errors.New("fetch: --from and an export are exclusive")
	}
	if c.SinceAuto && !c.Export.Since.IsZero() {
		return errors.New("fetch: --since auto and an explicit --since are exclusive")
	}
	if c.KeyFile != "" && c.ClientID == "" {
		return fmt.Errorf("fetch: --key needs --smart-client-id")
	}
	if c.BearerTokenFile != "" && (c.KeyFile != "" || c.ClientSecret != "" || c.ClientSecretFile != "") {
		return errors.New("fetch: --bearer-token-file and client credentials (--key, a client secret) are exclusive")
	}
	return nil
}

// ClientSecretEnv is the environment variable the fetch command reads a client secret
// from (or --smart-client-secret-file).
const ClientSecretEnv = "FHIRSTREAM_SMART_CLIENT_SECRET"
