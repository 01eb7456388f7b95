package sink

import (
	"context"
	"fmt"
	"path"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/fhirstream/fhirstream/schemas"
)

// schemaFileName is a zero-row Parquet file in each OMOP table directory. It carries the
// table's schema so that SQL over the lake (deploy/sql) can bind a view of every CDM table
// even before the table has rows; its name is outside the data-file pattern, so recovery
// never touches it.
const schemaFileName = "_schema.parquet"

// writeSchemaFiles writes the schema file of every OMOP table (pending name, then publish,
// so a reader never sees half a file). Rewriting it is harmless: it has no rows. The
// pending name is this process's own, because every member of the group writes the schema
// files as it starts: with one shared pending name, one member's publication (a rename, or
// a copy and delete) would take the file from under another's. Whoever publishes last
// writes the same bytes.
func writeSchemaFiles(ctx context.Context, st Storage, rowGroupRows int64, c compress.Codec) error {
	writer := newBatchID()
	for _, table := range schemas.OMOPTables() {
		ds, err := omopDatasetOf(table)
		if err != nil {
			return err
		}
		final := path.Join(ds.dir, schemaFileName)
		pending := path.Join(ds.dir, ".schema+"+writer+pendingSuffix)
		out, err := st.Create(ctx, pending)
		if err != nil {
			return err
		}
		w := parquet.NewWriter(out, ds.schema, parquet.Compression(c), parquet.MaxRowsPerRowGroup(rowGroupRows))
		if err := w.Close(); err != nil {
			_ = out.Abort()
			return fmt.Errorf("schema file of %s: %w", table, err)
		}
		if err := out.Commit(); err != nil {
			return err
		}
		if err := st.Publish(ctx, pending, final); err != nil {
			return err
		}
	}
	return nil
}
