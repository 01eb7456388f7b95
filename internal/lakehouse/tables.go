package lakehouse

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// FormatVersion is the Iceberg format version of the tables the lake creates: v2, the
// first with row-level deletes, which every engine listed in docs/lakehouse.md reads.
const FormatVersion = 2

// tableProperties are set on every table the lake creates.
var tableProperties = iceberg.Properties{
	table.PropertyFormatVersion: "2",
	// Writers other than the sink (compaction, Spark) write what the sink writes.
	"write.format.default":                       "parquet",
	"write.parquet.compression-codec":            "zstd",
	"write.metadata.delete-after-commit.enabled": "true",
	"write.metadata.previous-versions-max":       "50",
}

// LoadTable loads the table of layout l.
func (lk *Lake) LoadTable(ctx context.Context, l *Layout) (*table.Table, error) {
	return lk.Catalog.LoadTable(ctx, lk.Ident(l))
}

// EnsureTable loads the table of layout l, creating its namespace and the table when they
// do not exist yet (several processes may race to create it; the loser loads the
// winner's). An existing table must have l's columns with l's field ids and types.
func (lk *Lake) EnsureTable(ctx context.Context, l *Layout) (*table.Table, error) {
	cat, ident := lk.Catalog, lk.Ident(l)
	tbl, err := cat.LoadTable(ctx, ident)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		// Every level of the namespace, outermost first (a REST catalog wants parents).
		ns := ident[:len(ident)-1]
		for i := range ns {
			if err := cat.CreateNamespace(ctx, ns[:i+1], nil); err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
				return nil, fmt.Errorf("lakehouse: create namespace %v: %w", ns[:i+1], err)
			}
		}
		tbl, err = cat.CreateTable(ctx, ident, l.ice,
			catalog.WithPartitionSpec(iceberg.UnpartitionedSpec), catalog.WithProperties(tableProperties))
		if errors.Is(err, catalog.ErrTableAlreadyExists) {
			tbl, err = cat.LoadTable(ctx, ident)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lakehouse: table %v: %w", ident, err)
	}
	if err := l.check(tbl.Schema()); err != nil {
		return nil, err
	}
	if tbl.Metadata().Version() < FormatVersion {
		return nil, fmt.Errorf("lakehouse: table %s is format v%d; row-level deletes need v%d", l, tbl.Metadata().Version(), FormatVersion)
	}
	if !tbl.Spec().IsUnpartitioned() {
		return nil, fmt.Errorf("lakehouse: table %s is partitioned; the sink writes unpartitioned tables (equality deletes of iceberg-go need them)", l)
	}
	return tbl, nil
}

// check reports whether s has the layout's columns with its field ids and types.
func (l *Layout) check(s *iceberg.Schema) error {
	for i, c := range l.Columns {
		f, ok := s.FindFieldByName(c.Name)
		if !ok {
			return fmt.Errorf("lakehouse: table %s has no column %s: it was created by another version; migrate it or write to a new lake", l, c.Name)
		}
		if f.ID != i+1 || !f.Type.Equals(c.Type) {
			return fmt.Errorf("lakehouse: table %s column %s is %s with id %d, want %s with id %d", l, c.Name, f.Type, f.ID, c.Type, i+1)
		}
	}
	return nil
}
