package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
)

func newServeEHRCmd() *cobra.Command {
	var (
		cfg           ehrsim.Config
		clients       []string
		secretClients []string
	)
	cmd := &cobra.Command{
		Use:   "serve-ehr",
		Short: "Run the EHR simulator: a FHIR Bulk Data server with optional SMART auth and fault switches",
		Long: `Serve a directory of NDJSON (--dir, files <Type>.ndjson or <Type>.<n>.ndjson) or
--synth N generated patients over the FHIR Bulk Data protocol: system, Patient and
Group/<id> $export (GET or POST), async status, paginated manifests, gzip, Range.
With --auth, clients registered with --client ID=JWKS_FILE authenticate with SMART
Backend Services (RS384 or ES384 assertions), and those registered with
--secret-client ID=SECRET_FILE with a client secret (client_secret_basic or
client_secret_post). Fault flags make it misbehave on purpose, and the quirk flags
the way the reference Bulk Data server deviates from the IG.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = logger
			srv, err := ehrsim.New(cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			if err := srv.RegisterClientFiles(clients); err != nil {
				return err
			}
			if err := srv.RegisterSecretClientFiles(secretClients); err != nil {
				return err
			}
			// The URL goes to stdout so scripts can capture it; everything else is logged.
			fmt.Fprintln(cmd.OutOrStdout(), srv.URL)
			logger.Info("serve-ehr: listening", "addr", srv.Addr(), "url", srv.URL, "auth", cfg.Auth, "types", len(srv.Types()))
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", "", "directory of <Type>.ndjson files to serve")
	f.IntVar(&cfg.Synth, "synth", 0, "generate this many patients instead of --dir")
	f.Uint64Var(&cfg.Seed, "seed", 1, "seed of the generated patients")
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	f.StringVar(&cfg.PublicURL, "public-url", "", "base URL clients reach the server at, behind a proxy or in compose (status, file and token URLs are built from it; default http://<addr>)")
	f.BoolVar(&cfg.Auth, "auth", false, "require SMART Backend Services bearer tokens")
	f.StringArrayVar(&clients, "client", nil, "register a client: ID=JWKS_FILE (repeatable)")
	f.StringArrayVar(&secretClients, "secret-client", nil, "register a client authenticating with a secret: ID=SECRET_FILE (repeatable)")
	f.DurationVar(&cfg.TokenTTL, "token-ttl", 5*time.Minute, "lifetime of issued tokens")
	f.IntVar(&cfg.ResourcesPerFile, "resources-per-file", 0, "split output files at this many resources (0: one file per source file)")
	f.IntVar(&cfg.ManifestPageSize, "manifest-page-size", 0, "output entries per manifest page (0: one page)")
	f.IntVar(&cfg.PollsBeforeReady, "polls-before-ready", 1, "status polls answered 202 before the manifest")
	f.DurationVar(&cfg.RetryAfter, "retry-after", time.Second, "Retry-After sent while the export is in progress")
	f.StringSliceVar(&cfg.GroupIDs, "groups", []string{"all"}, "group ids accepted for Group/<id>/$export")
	f.IntVar(&cfg.Faults.Status429, "fault-429", 0, "answer the first N status polls with 429")
	f.IntVar(&cfg.Faults.Status5xx, "fault-5xx", 0, "answer the next N status polls with 503")
	f.IntVar(&cfg.Faults.TransientOutcome, "fault-transient", 0, "answer the next N status polls with a transient OperationOutcome")
	f.BoolVar(&cfg.Faults.FailExport, "fault-fail-export", false, "fail every export with a fatal OperationOutcome")
	f.IntVar(&cfg.Faults.SlowBytesPerSec, "fault-slow", 0, "throttle downloads to this many bytes/s")
	f.IntVar(&cfg.Faults.TruncateDownloads, "fault-truncate", 0, "drop the connection halfway through the first N downloads of each file")
	f.IntVar(&cfg.Faults.ExpireFileURLs, "fault-expire-urls", 0, "answer the first N requests of each file URL with 410 Gone and rotate the URL")
	f.IntVar(&cfg.Faults.ExpireTokensAfterFiles, "fault-expire-tokens-after", 0, "revoke all tokens after this many file requests")
	f.IntVar(&cfg.Faults.DropExportAfterFiles, "fault-drop-export-after", 0, "forget the export (status and files answer 404) at the Nth file request, once")
	f.IntVar(&cfg.Faults.ErrorLines, "fault-error-lines", 0, "add an error file with N OperationOutcomes")
	f.IntVar(&cfg.Faults.DeletedLines, "fault-deleted", 0, "add a deleted file listing N deleted Patients")
	f.IntVar(&cfg.Faults.PollRateLimit, "fault-poll-rate-limit", 0, "answer 429 to status polls beyond N per --fault-poll-rate-window, then block for --fault-poll-rate-block")
	f.DurationVar(&cfg.Faults.PollRateWindow, "fault-poll-rate-window", time.Minute, "window of --fault-poll-rate-limit")
	f.DurationVar(&cfg.Faults.PollRateBlock, "fault-poll-rate-block", 5*time.Minute, "how long a client over the poll rate limit is blocked")
	f.BoolVar(&cfg.Faults.RetryAfterEpochMillis, "quirk-retry-after-epoch-ms", false, "send Retry-After as epoch milliseconds")
	f.BoolVar(&cfg.Faults.ContinuesOffByOne, "quirk-continues-off-by-one", false, "name the file after the right one in continuesInFile")
	f.BoolVar(&cfg.Faults.WrongCount, "quirk-wrong-count", false, "state each output file's count one too high")
	f.BoolVar(&cfg.Faults.OverlappingDeleted, "quirk-overlapping-deleted", false, "serve --fault-deleted as two files listing one deletion twice")
	return cmd
}
