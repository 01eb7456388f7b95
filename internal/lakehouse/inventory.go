package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/apache/iceberg-go/catalog"
)

// TableInfo describes one table of the lake as its current snapshot has it.
type TableInfo struct {
	Namespace, Name  string
	Snapshots        int
	Rows             int64 // total-records: rows in data files, before deletes apply
	DataFiles        int64
	DeleteFiles      int64
	MetadataLocation string // the current metadata file (what DuckDB's iceberg_scan reads)
}

// Inventory lists the tables of the given namespaces, sorted by namespace and name.
func Inventory(ctx context.Context, lk *Lake, namespaces ...string) ([]TableInfo, error) {
	cat := lk.Catalog
	var out []TableInfo
	for _, ns := range namespaces {
		for ident, err := range cat.ListTables(ctx, lk.Namespace(ns)) {
			if errors.Is(err, catalog.ErrNoSuchNamespace) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("lakehouse: list %s: %w", ns, err)
			}
			tbl, err := cat.LoadTable(ctx, ident)
			if err != nil {
				return nil, fmt.Errorf("lakehouse: load %v: %w", ident, err)
			}
			ti := TableInfo{Namespace: ns, Name: ident[len(ident)-1], Snapshots: len(tbl.Metadata().Snapshots()),
				MetadataLocation: tbl.MetadataLocation()}
			if s := tbl.CurrentSnapshot(); s != nil && s.Summary != nil {
				p := s.Summary.Properties
				ti.Rows, _ = strconv.ParseInt(p["total-records"], 10, 64)
				ti.DataFiles, _ = strconv.ParseInt(p["total-data-files"], 10, 64)
				ti.DeleteFiles, _ = strconv.ParseInt(p["total-delete-files"], 10, 64)
			}
			out = append(out, ti)
		}
	}
	slices.SortFunc(out, func(a, b TableInfo) int {
		if a.Namespace != b.Namespace {
			return cmpString(a.Namespace, b.Namespace)
		}
		return cmpString(a.Name, b.Name)
	})
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// RemoveEmbedded removes the embedded catalog of the lake directory dir and its default
// warehouse, and nothing else in dir. It reports whether there was a catalog to remove.
func RemoveEmbedded(dir string) (bool, error) {
	db := filepath.Join(dir, CatalogFile)
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, fmt.Errorf("lakehouse: %w", err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, WarehouseDir)); err != nil {
		return true, fmt.Errorf("lakehouse: %w", err)
	}
	return true, nil
}
