package lakeops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// MinOrphanAge is the least ExpireOptions.OlderThan that ExpireTables accepts unless
// recent files are allowed: a running sink writes its data files before it commits
// them, and a file removed in between breaks that commit.
const MinOrphanAge = time.Hour

// CompactTables compacts the named tables ("namespace.table"; none: every table) of the
// existing lake c names, as 'fhirstream lake compact' does, writing a line per table to w.
func CompactTables(ctx context.Context, c lakehouse.Config, names []string, o CompactOptions, w io.Writer) error {
	return onTables(ctx, c, names, func(cat catalog.Catalog, ids []table.Identifier) error {
		return CompactAll(ctx, cat, ids, o, w)
	})
}

// ExpireTables expires the named tables (none: every table) of the existing lake c
// names, as 'fhirstream lake expire' does, writing a line per table to w. An
// o.OlderThan under MinOrphanAge is refused unless allowRecent (no sink writes to the lake).
func ExpireTables(ctx context.Context, c lakehouse.Config, names []string, o ExpireOptions, allowRecent bool, w io.Writer) error {
	if o.OlderThan < MinOrphanAge && !allowRecent {
		return fmt.Errorf("lake expire: --older-than %s would remove files a running sink has written but not yet committed; use at least %s, or --allow-recent when no sink writes to the lake", o.OlderThan, MinOrphanAge)
	}
	return onTables(ctx, c, names, func(cat catalog.Catalog, ids []table.Identifier) error {
		return ExpireAll(ctx, cat, ids, o, w)
	})
}

// onTables opens the existing lake c names and runs do on the named tables (none:
// every table).
func onTables(ctx context.Context, c lakehouse.Config, names []string, do func(catalog.Catalog, []table.Identifier) error) error {
	cat, closeCat, err := lakehouse.OpenExisting(ctx, c)
	if err != nil {
		return err
	}
	defer closeCat()
	ids, err := Resolve(ctx, cat, names)
	if err != nil {
		return err
	}
	return do(cat, ids)
}

// WriteTableHistory writes the history of the table name ("namespace.table") of the
// existing lake c names to w, as text (WriteHistory) or json, as 'fhirstream lake
// history' does.
func WriteTableHistory(ctx context.Context, c lakehouse.Config, name, format string, w io.Writer) error {
	if format != "text" && format != "json" {
		return fmt.Errorf("lake history: --output %q: want text or json", format)
	}
	id, err := ParseIdentifier(name)
	if err != nil {
		return err
	}
	cat, closeCat, err := lakehouse.OpenExisting(ctx, c)
	if err != nil {
		return err
	}
	defer closeCat()
	h, err := History(ctx, cat, id)
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(h)
	}
	return WriteHistory(w, h)
}
