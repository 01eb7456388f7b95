package lakeops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// Resolve returns the tables named in names ("namespace.table"), or every table of the
// catalog when there are none.
func Resolve(ctx context.Context, cat catalog.Catalog, names []string) ([]table.Identifier, error) {
	if len(names) == 0 {
		ids, err := Tables(ctx, cat)
		if err == nil && len(ids) == 0 {
			err = errors.New("the catalog has no tables")
		}
		return ids, err
	}
	ids := make([]table.Identifier, 0, len(names))
	for _, a := range names {
		id, err := ParseIdentifier(a)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// CompactAll compacts every table of ids, writing a line per table and a total to w. A
// table that fails is reported and the others go on; the error then says how many failed.
func CompactAll(ctx context.Context, cat catalog.Catalog, ids []table.Identifier, opts CompactOptions, w io.Writer) error {
	var failed int
	var before, after, delBefore, delAfter int
	for _, id := range ids {
		res, err := Compact(ctx, cat, id, opts)
		if err != nil {
			failed++
			fmt.Fprintf(w, "%s: FAILED: %v\n", Name(id), err)
			continue
		}
		before, after = before+res.DataFilesBefore, after+res.DataFilesAfter
		delBefore, delAfter = delBefore+res.DeleteFilesBefore, delAfter+res.DeleteFilesAfter
		what := "nothing to do"
		if res.SnapshotID != 0 {
			what = fmt.Sprintf("snapshot %d", res.SnapshotID)
		}
		fmt.Fprintf(w, "%s: data files %d -> %d, delete files %d -> %d, %s -> %s (%s)\n",
			Name(id), res.DataFilesBefore, res.DataFilesAfter, res.DeleteFilesBefore, res.DeleteFilesAfter,
			humanBytes(res.BytesBefore), humanBytes(res.BytesAfter), what)
	}
	if failed > 0 {
		fmt.Fprintf(w, "compact FAILED on %d of %d tables\n", failed, len(ids))
		return fmt.Errorf("lake compact: %d of %d tables failed", failed, len(ids))
	}
	fmt.Fprintf(w, "compact OK: %d tables, data files %d -> %d, delete files %d -> %d\n",
		len(ids), before, after, delBefore, delAfter)
	return nil
}

// ExpireAll expires every table of ids, writing a line per table and a total to w. A
// table that fails is reported and the others go on; the error then says how many failed.
func ExpireAll(ctx context.Context, cat catalog.Catalog, ids []table.Identifier, opts ExpireOptions, w io.Writer) error {
	verb := "removed"
	if opts.DryRun {
		verb = "would remove"
	}
	var failed, snaps, orphans int
	for _, id := range ids {
		res, err := Expire(ctx, cat, id, opts)
		if err != nil {
			failed++
			fmt.Fprintf(w, "%s: FAILED: %v\n", Name(id), err)
			continue
		}
		snaps += len(res.Expired)
		orphans += len(res.Orphans)
		fmt.Fprintf(w, "%s: snapshots %d -> %d, %s %d orphan files (%s)",
			Name(id), res.SnapshotsBefore, res.SnapshotsAfter, verb, len(res.Orphans), humanBytes(res.OrphanBytes))
		for _, g := range slices.Sorted(maps.Keys(res.Kept)) {
			fmt.Fprintf(w, "; kept %d (offsets of %s)", res.Kept[g], g)
		}
		fmt.Fprintln(w)
	}
	if failed > 0 {
		fmt.Fprintf(w, "expire FAILED on %d of %d tables\n", failed, len(ids))
		return fmt.Errorf("lake expire: %d of %d tables failed", failed, len(ids))
	}
	fmt.Fprintf(w, "expire OK: %d tables, %s %d snapshots and %d orphan files\n", len(ids), verb, snaps, orphans)
	return nil
}

// WriteHistory writes a table's snapshots as a table: '*' marks the current snapshot, '-'
// one outside the current ancestry (rolled back).
func WriteHistory(w io.Writer, h []Snapshot) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tsnapshot\ttime (UTC)\toperation\t+rows\t-rows\t+files\t-files\t+deletes\t-deletes\trows\tfiles\tdeletes\toffsets")
	for _, s := range h {
		mark := ""
		switch {
		case s.Current:
			mark = "*"
		case !s.InAncestry:
			mark = "-"
		}
		var offs []string
		for _, g := range s.Groups() {
			offs = append(offs, g+"="+s.Offsets[g])
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", mark, s.ID,
			s.Time.Format("2006-01-02 15:04:05.000"), s.Operation, s.AddedRows, s.DeletedRows,
			s.AddedDataFiles, s.DeletedDataFiles, s.AddedDeleteFiles, s.RemovedDeleteFiles,
			s.TotalRows, s.TotalDataFiles, s.TotalDeleteFiles, strings.Join(offs, " "))
	}
	return tw.Flush()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
