package demo

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// demoTable is one table of the demo's lake, as the summary shows it.
type demoTable = lakehouse.TableInfo

// replaceDemoLake removes the lake an earlier demo left in out (its catalog and
// warehouse, nothing else): its tables record offsets of an embedded broker that is gone.
func replaceDemoLake(out string) (bool, error) { return lakehouse.RemoveEmbedded(out) }

// demoTables lists the lake's tables.
func demoTables(ctx context.Context, lake lakehouse.Config) ([]demoTable, error) {
	lk, err := lakehouse.Open(ctx, lake)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	return lakehouse.Inventory(ctx, lk, goldlake.DefaultNamespace, lakehouse.NamespaceOMOP, lakehouse.NamespaceFHIR, lakehouse.NamespaceBronze)
}

// printDemoLake prints the lake's tables and how to query them.
func printDemoLake(w io.Writer, r demoReport) {
	var files, snaps int64
	for _, t := range r.tables {
		files += t.DataFiles + t.DeleteFiles
		snaps += int64(t.Snapshots)
	}
	fmt.Fprintf(w, "\nIceberg lake at %s: %d tables, %d snapshots, %d files (catalog %s, warehouse %s/)\n",
		r.out, len(r.tables), snaps, files, lakehouse.CatalogFile, lakehouse.WarehouseDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TABLE\tROWS\tSNAPSHOTS\tDATA FILES\tDELETE FILES\t")
	var person string
	for _, t := range r.tables {
		fmt.Fprintf(tw, "  %s.%s\t%d\t%d\t%d\t%d\t\n", t.Namespace, t.Name, t.Rows, t.Snapshots, t.DataFiles, t.DeleteFiles)
		if t.Namespace == lakehouse.NamespaceOMOP && t.Name == "person" {
			person = t.MetadataLocation
		}
	}
	_ = tw.Flush()
	db := filepath.Join(r.out, lakehouse.CatalogFile)
	fmt.Fprintf(w, "\nquery it (pip install pyiceberg duckdb; see docs/lakehouse.md for Spark and Trino):\n")
	fmt.Fprintf(w, "  python3 -c \"from pyiceberg.catalog.sql import SqlCatalog; "+
		"c = SqlCatalog('%s', uri='sqlite:///%s'); "+
		"print(c.load_table('omop.person').scan().to_arrow().group_by('gender_source_value').aggregate([('person_id', 'count')]))\"\n",
		lakehouse.EmbeddedCatalogName, db)
	if person != "" {
		fmt.Fprintf(w, "  duckdb -c \"INSTALL iceberg; LOAD iceberg; SELECT gender_source_value, count(*) FROM iceberg_scan('%s') GROUP BY 1\"\n", person)
	}
}
