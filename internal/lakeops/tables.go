package lakeops

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// Tables lists every table of cat, in every namespace (nested ones too),
// sorted by name.
func Tables(ctx context.Context, cat catalog.Catalog) ([]table.Identifier, error) {
	var out []table.Identifier
	var walk func(parent table.Identifier) error
	walk = func(parent table.Identifier) error {
		nss, err := cat.ListNamespaces(ctx, parent)
		if err != nil {
			if parent != nil {
				return nil // a catalog without nested namespaces may refuse the question
			}
			return fmt.Errorf("list namespaces: %w", err)
		}
		for _, ns := range nss {
			if len(ns) <= len(parent) {
				continue // some catalogs answer with the parent itself
			}
			for id, err := range cat.ListTables(ctx, ns) {
				if err != nil {
					return fmt.Errorf("list tables in %s: %w", strings.Join(ns, "."), err)
				}
				out = append(out, id)
			}
			if err := walk(ns); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(nil); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b table.Identifier) int {
		return strings.Compare(strings.Join(a, "."), strings.Join(b, "."))
	})
	return slices.CompactFunc(out, func(a, b table.Identifier) bool { return slices.Equal(a, b) }), nil
}

// ParseIdentifier reads "namespace.table" (the last dot separates the table).
func ParseIdentifier(s string) (table.Identifier, error) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i == len(s)-1 {
		return nil, fmt.Errorf("table %q: want namespace.table", s)
	}
	return append(strings.Split(s[:i], "."), s[i+1:]), nil
}

// Name is an identifier as "namespace.table".
func Name(id table.Identifier) string { return strings.Join(id, ".") }
