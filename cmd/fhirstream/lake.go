package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/iceberg-go/catalog"
	_ "github.com/apache/iceberg-go/catalog/rest" // registers the "rest" catalog type
	"github.com/spf13/cobra"
	_ "modernc.org/sqlite" // the embedded catalog's pure-Go SQLite driver ("sqlite")

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/lakeops"
)

// minOrphanAge is the least --older-than that expire accepts without
// --allow-recent: a running sink writes its data files before it commits them,
// and a file removed in between breaks that commit.
const minOrphanAge = time.Hour

func newLakeCmd() *cobra.Command {
	lake := &cobra.Command{
		Use:   "lake",
		Short: "Maintain the Iceberg lake: compact, expire, history",
		Long: `Maintenance of the lake's Apache Iceberg tables, in the embedded catalog under --out
(the default) or in a REST catalog (--catalog rest --catalog-uri URL).

  compact   rewrite small data files into target-sized ones and fold delete files in,
            so that every reader (pyiceberg, DuckDB included) reads the tables right
  expire    remove snapshots and orphan files older than --older-than, keeping the
            snapshot each sink resumes from
  history   a table's snapshots with their Kafka offsets and row and file counts

docs/lakehouse.md says which readers need 'lake compact' after updates and deletes.`,
	}
	lake.AddCommand(newLakeCompactCmd(), newLakeExpireCmd(), newLakeHistoryCmd())
	return lake
}

// lakeCatalogConfig says which catalog the lake commands open: the sinks' flags
// (lakeFlags), opened by the same code (internal/lakehouse).
type lakeCatalogConfig = lakehouse.Config

func lakeCatalogFlags(cmd *cobra.Command) *lakeCatalogConfig { return lakeFlags(cmd) }

// openLakeCatalog opens the catalog as the sinks do (lakehouse.OpenCatalog). An embedded
// catalog must exist already: a maintenance command never creates an empty lake.
func openLakeCatalog(ctx context.Context, c *lakeCatalogConfig) (catalog.Catalog, func(), error) {
	noop := func() {}
	if c.Kind == "" || c.Kind == lakehouse.CatalogEmbedded {
		if c.Out == "" || strings.Contains(c.Out, "://") {
			return nil, noop, fmt.Errorf("the embedded catalog lives in a local directory (--out), not %q", c.Out)
		}
		db := filepath.Join(c.Out, lakehouse.CatalogFile)
		if _, err := os.Stat(db); err != nil {
			return nil, noop, fmt.Errorf("no lake catalog at %s (--out names the lake directory): %w", db, err)
		}
	}
	cat, err := lakehouse.OpenCatalog(ctx, *c)
	if err != nil {
		return nil, noop, err
	}
	return cat, func() { _ = lakehouse.Close(cat) }, nil
}

func newLakeCompactCmd() *cobra.Command {
	var target int64
	var cfg *lakeCatalogConfig
	cmd := &cobra.Command{
		Use:   "compact [namespace.table...]",
		Short: "Rewrite small data files into target-sized ones and fold delete files in",
		Long: `Compacts each named table (default: every table): data files smaller than 3/4 of
--target-file-size are bin-packed into files of that size, and every data file that
delete files apply to is rewritten without its deleted rows; delete files no data file
needs any more are dropped in the same commit. Readers see the same rows before and
after; a compacted table has no equality deletes, which pyiceberg cannot read and
DuckDB 1.4.4 reads wrongly past about 20 of them. Old files stay until 'lake expire'.

Safe beside running sinks: when a sink commits deletes to a file being rewritten, the
compaction's commit is refused and changes nothing, and compact plans and rewrites again
from the new state (up to 5 tries).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLakeCompact(cmd, cfg, args, target)
		},
	}
	cfg = lakeCatalogFlags(cmd)
	cmd.Flags().Int64Var(&target, "target-file-size", lakeops.DefaultTargetFileSize, "size in bytes of the data files written")
	return cmd
}

func runLakeCompact(cmd *cobra.Command, cfg *lakeCatalogConfig, args []string, target int64) error {
	ctx := cmd.Context()
	cat, closeCat, err := openLakeCatalog(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeCat()
	ids, err := lakeops.Resolve(ctx, cat, args)
	if err != nil {
		return err
	}
	return lakeops.CompactAll(ctx, cat, ids, lakeops.CompactOptions{TargetFileSize: target}, cmd.OutOrStdout())
}

func newLakeExpireCmd() *cobra.Command {
	var o lakeops.ExpireOptions
	var allowRecent bool
	var cfg *lakeCatalogConfig
	cmd := &cobra.Command{
		Use:   "expire --older-than D [namespace.table...]",
		Short: "Remove snapshots and orphan files older than --older-than",
		Long: `Expires, in each named table (default: every table), the snapshots older than
--older-than together with the data and delete files only they referenced, then removes
the orphan files under the table's location older than --older-than: files no
snapshot references, such as those of sink attempts that crashed before committing.

The newest snapshot carrying each sink group's Kafka offsets is kept, with every
snapshot after it, whatever their age: a sink resumes from it. Time travel reaches the
snapshots that remain.

--older-than must exceed the longest time a running sink takes from writing a file to
committing it; less than an hour is refused unless --allow-recent (for a lake no sink
writes to).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("older-than") {
				return errors.New("lake expire: --older-than is required (e.g. 168h)")
			}
			if o.OlderThan < minOrphanAge && !allowRecent {
				return fmt.Errorf("lake expire: --older-than %s would remove files a running sink has written but not yet committed; use at least %s, or --allow-recent when no sink writes to the lake", o.OlderThan, minOrphanAge)
			}
			return runLakeExpire(cmd, cfg, args, o)
		},
	}
	cfg = lakeCatalogFlags(cmd)
	cmd.Flags().DurationVar(&o.OlderThan, "older-than", 7*24*time.Hour, "remove snapshots and orphan files older than this")
	cmd.Flags().IntVar(&o.RetainLast, "retain-last", 1, "keep at least this many of the newest snapshots")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "report what would be removed, remove nothing")
	cmd.Flags().BoolVar(&allowRecent, "allow-recent", false, "accept --older-than below an hour (no sink may be writing)")
	return cmd
}

func runLakeExpire(cmd *cobra.Command, cfg *lakeCatalogConfig, args []string, o lakeops.ExpireOptions) error {
	ctx := cmd.Context()
	cat, closeCat, err := openLakeCatalog(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeCat()
	ids, err := lakeops.Resolve(ctx, cat, args)
	if err != nil {
		return err
	}
	return lakeops.ExpireAll(ctx, cat, ids, o, cmd.OutOrStdout())
}

func newLakeHistoryCmd() *cobra.Command {
	var output string
	var cfg *lakeCatalogConfig
	cmd := &cobra.Command{
		Use:   "history namespace.table",
		Short: "A table's snapshots: time, operation, Kafka offsets, rows and files",
		Long: `Lists a table's snapshots, oldest first: id, commit time (UTC), operation, the rows and
data/delete files it added and removed, the table's totals after it, and the Kafka
offsets a sink commit recorded (per consumer group). '*' marks the current snapshot;
'-' a snapshot outside the current ancestry (rolled back). Rows are the rows in data
files: delete files (the deletes column) still remove some of them until 'lake compact'.

Any snapshot id listed can be read back with time travel (docs/lakehouse.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLakeHistory(cmd, cfg, args[0], output)
		},
	}
	cfg = lakeCatalogFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

func runLakeHistory(cmd *cobra.Command, cfg *lakeCatalogConfig, name, output string) error {
	if output != "text" && output != "json" {
		return fmt.Errorf("lake history: --output %q: want text or json", output)
	}
	id, err := lakeops.ParseIdentifier(name)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	cat, closeCat, err := openLakeCatalog(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeCat()
	h, err := lakeops.History(ctx, cat, id)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(h)
	}
	return lakeops.WriteHistory(w, h)
}
