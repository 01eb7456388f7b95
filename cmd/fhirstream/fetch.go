package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
)

// fetchArgs are the fetch flags that are not producer.Config fields as they stand.
type fetchArgs struct {
	level, since, until     string
	noDelete, post, lenient bool
	quirks                  []string
}

func newFetchCmd() *cobra.Command {
	var (
		cfg producer.Config
		a   fetchArgs
	)
	cmd := &cobra.Command{
		Use:   "fetch [FHIR-base-URL]",
		Short: "Run a FHIR Bulk Data export (or publish local NDJSON) into the raw Kafka topics",
		Long: `Fetch runs a Bulk Data $export against the FHIR server at the base URL, authenticating
with SMART Backend Services when --smart-client-id and --key are given, and publishes every
resource to <prefix>.raw.<Type>, keyed <Type>/<id>. With --from it publishes local NDJSON
files (plain or .gz) instead. Bad lines, export errors and oversized resources go to the
dead-letter topic; deleted resources become tombstones.

It checkpoints in Kafka transactions: killed and restarted with the same command, it
resumes where it stopped and publishes no line twice. --since auto exports only what
changed since the last complete export of the same request.

The access token goes only to the FHIR base's origin and the --trust-origin ones, never
over http when the base is https, never across a redirect that leaves the origin. Other
SMART credentials: --smart-auth client_secret_basic or client_secret_post with the secret
in --smart-client-secret-file or the environment variable ` + producer.ClientSecretEnv + `,
or an access token obtained elsewhere in --bearer-token-file.

A run that does not reconcile (counts that disagree, files not read to the end) prints
FAILED, exits 1 and leaves the export unfinished: run the same command again to retry.
Known server quirks fail the run too, unless accepted with --accept-quirk, which turns
each into a warning:
  ` + bulk.KnownQuirkNames() + `
See docs/security.md.`,
		Args: cobra.MaximumNArgs(1),
	}
	kc := kafkaFlags(cmd)
	mf := metricsFlag(cmd, "off")
	addFetchFlags(cmd.Flags(), &cfg, &a)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 {
			cfg.Export.Base = args[0]
		}
		cfg.Kafka = *kc
		if err := a.apply(&cfg); err != nil {
			return err
		}
		return runFetch(cmd, cfg, mf)
	}
	return cmd
}

func addFetchFlags(f *pflag.FlagSet, cfg *producer.Config, a *fetchArgs) {
	f.StringSliceVar(&cfg.From, "from", nil, "publish local NDJSON files or directories instead of exporting")
	f.StringVar(&a.level, "level", "system", "export level: system, patient or group")
	f.StringVar(&cfg.Export.GroupID, "group", "", "group id for --level group")
	f.StringSliceVar(&cfg.Export.Types, "type", nil, "_type: resource types to export (comma separated)")
	f.StringVar(&a.since, "since", "", `_since: an instant (RFC 3339), or "auto" for the last complete export's transactionTime`)
	f.StringVar(&a.until, "until", "", "_until: an instant (RFC 3339)")
	f.StringArrayVar(&cfg.Export.TypeFilters, "type-filter", nil, "_typeFilter, e.g. Observation?category=laboratory (repeatable)")
	f.StringSliceVar(&cfg.Export.Elements, "elements", nil, "_elements")
	f.StringSliceVar(&cfg.Export.Patients, "patient", nil, "patient references (POST only)")
	f.StringSliceVar(&cfg.Export.IncludeAssociatedData, "include-associated-data", nil, "includeAssociatedData")
	f.StringVar(&cfg.Export.OrganizeOutputBy, "organize-output-by", "", "organizeOutputBy (v3)")
	f.BoolVar(&cfg.Export.AllowPartialManifests, "allow-partial-manifests", false, "allowPartialManifests")
	f.StringVar(&cfg.Export.OutputFormat, "output-format", "", "_outputFormat (default application/fhir+ndjson)")
	f.BoolVar(&a.post, "post", false, "kick off with POST and a Parameters body")
	f.BoolVar(&a.lenient, "lenient", false, "Prefer: handling=lenient")
	f.StringVar(&cfg.Resume, "resume", "", "status URL of an export already started")
	f.BoolVar(&cfg.Cancel, "cancel", false, "cancel the export (DELETE its status URL) and exit")
	f.BoolVar(&a.noDelete, "keep-export", false, "do not DELETE the status URL after a complete download")
	f.StringVar(&cfg.ClientID, "smart-client-id", "", "SMART Backend Services client id (--client-id is the Kafka one)")
	f.StringVar(&cfg.KeyFile, "key", "", "private key: JWK, JWKS or PEM file")
	f.StringVar(&cfg.KeyID, "kid", "", "key id (for PEM keys, or to pick one from a JWKS)")
	f.StringVar(&cfg.KeyAlg, "alg", "", "RS384 or ES384 (default from the key)")
	f.StringVar(&cfg.JKU, "jku", "", "URL of the client's JWKS, sent as the assertion's jku header")
	f.StringVar(&cfg.TokenURL, "token-url", "", `token endpoint (default: discovered; "none" for an open server)`)
	f.StringVar(&cfg.Scope, "scope", "system/*.rs", "requested scopes (v1 system/*.read also accepted)")
	f.StringVar(&cfg.AuthMethod, "smart-auth", "", "token endpoint auth: private_key_jwt (default with --key), client_secret_basic (default with a secret) or client_secret_post")
	f.StringVar(&cfg.ClientSecretFile, "smart-client-secret-file", "", "file holding the client secret (or the environment variable "+producer.ClientSecretEnv+"; never a flag)")
	f.StringVar(&cfg.BearerTokenFile, "bearer-token-file", "", "file holding an access token obtained elsewhere (read again when the server rejects it)")
	f.StringArrayVar(&cfg.TrustOrigins, "trust-origin", nil, "an origin (https://host[:port]) besides the FHIR base's that may receive the access token (repeatable)")
	f.StringVar(&cfg.CAFile, "ca-file", "", "PEM certificates to trust besides the system's (a private CA)")
	f.StringSliceVar(&a.quirks, "accept-quirk", nil, "accept a known server quirk as a warning: "+bulk.KnownQuirkNames()+" (repeatable)")
	f.DurationVar(&cfg.MaxWait, "max-wait", 12*time.Hour, "longest wait for an export, kickoff to complete manifest; a longer Retry-After is reported")
	f.DurationVar(&cfg.IdleTimeout, "download-idle-timeout", 2*time.Minute, "a request or download receiving nothing this long fails (a download resumes)")
	f.Int64Var(&cfg.MaxFileBytes, "max-file-bytes", 0, "fail a file larger than this many bytes (0: no cap)")
	f.IntVar(&cfg.Workers, "workers", 5, "files downloaded and published in parallel")
	f.IntVar(&cfg.MaxLineBytes, "max-line-bytes", 64<<20, "longest NDJSON line read; longer ones are dead-lettered by reference")
	f.Int64Var(&cfg.CommitBytes, "commit-bytes", 32<<20, "commit a transaction (with checkpoints) every this many bytes")
	f.DurationVar(&cfg.CommitInterval, "commit-interval", 5*time.Second, "and at least this often")
	f.StringVar(&cfg.ManifestDir, "manifest-dir", "manifests", `directory receiving each manifest for audit ("" for none)`)
	f.Int32Var(&cfg.Partitions, "partitions", 6, "partitions of topics the fetcher creates")
	// 2s, not 1s: servers that ask for Retry-After: 1 rate-limit at 60 polls a minute.
	f.DurationVar(&cfg.MinPoll, "min-poll", 2*time.Second, "shortest wait between status polls")
}

// apply sets cfg from the flags that need reading.
func (a *fetchArgs) apply(cfg *producer.Config) error {
	cfg.Export.Level = bulk.Level(a.level)
	cfg.Export.Post, cfg.Export.Lenient, cfg.KeepExport = a.post, a.lenient, a.noDelete
	if err := cfg.SetWindow(a.since, a.until); err != nil {
		return err
	}
	var err error
	if cfg.Accept, err = bulk.ParseQuirks(a.quirks); err != nil {
		return fmt.Errorf("--accept-quirk: %w", err)
	}
	cfg.ClientSecret = os.Getenv(producer.ClientSecretEnv)
	return nil
}

// runFetch runs the fetch and prints its summary: the table and the verdict, FAILED
// when the run failed or does not reconcile.
func runFetch(cmd *cobra.Command, cfg producer.Config, mf *observability) error {
	cfg.Log = logger
	cfg.Progress = os.Stderr
	cfg.ProgressTTY = obs.IsTerminal(os.Stderr)
	ctx := cmd.Context()
	if _, err := mf.start(ctx); err != nil {
		return err
	}
	sum, err := producer.Fetch(ctx, cfg)
	return producer.WriteOutcome(cmd.OutOrStdout(), cfg, sum, err)
}
