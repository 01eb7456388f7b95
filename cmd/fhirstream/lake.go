package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/lakeops"
)

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

func newLakeCompactCmd() *cobra.Command {
	var target int64
	var cfg *lakehouse.Config
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
			return lakeops.CompactTables(cmd.Context(), *cfg, args, lakeops.CompactOptions{TargetFileSize: target}, cmd.OutOrStdout())
		},
	}
	cfg = lakeFlags(cmd)
	cmd.Flags().Int64Var(&target, "target-file-size", lakeops.DefaultTargetFileSize, "size in bytes of the data files written")
	return cmd
}

func newLakeExpireCmd() *cobra.Command {
	var o lakeops.ExpireOptions
	var allowRecent bool
	var cfg *lakehouse.Config
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
			return lakeops.ExpireTables(cmd.Context(), *cfg, args, o, allowRecent, cmd.OutOrStdout())
		},
	}
	cfg = lakeFlags(cmd)
	cmd.Flags().DurationVar(&o.OlderThan, "older-than", 7*24*time.Hour, "remove snapshots and orphan files older than this")
	cmd.Flags().IntVar(&o.RetainLast, "retain-last", 1, "keep at least this many of the newest snapshots")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "report what would be removed, remove nothing")
	cmd.Flags().BoolVar(&allowRecent, "allow-recent", false, "accept --older-than below an hour (no sink may be writing)")
	return cmd
}

func newLakeHistoryCmd() *cobra.Command {
	var output string
	var cfg *lakehouse.Config
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
			return lakeops.WriteTableHistory(cmd.Context(), *cfg, args[0], output, cmd.OutOrStdout())
		},
	}
	cfg = lakeFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}
