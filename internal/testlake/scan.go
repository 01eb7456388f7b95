package testlake

import (
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go/table"
)

// ScanColumns calls each for every row of tbl's current state with the named columns (in
// that order), read in this process through iceberg-go's scan: Go's own Iceberg reader,
// which reads the files with arrow-go (fhirstream writes them with parquet-go) and
// applies every delete file. It is the quick reader of the Go tests; the engines above
// are the independent ones.
func ScanColumns(ctx context.Context, tbl *table.Table, columns []string, each func(cols []arrow.Array, row int)) error {
	_, itr, err := tbl.Scan(table.WithSelectedFields(columns...)).ToArrowRecords(ctx)
	if err != nil {
		return fmt.Errorf("scan %v: %w", tbl.Identifier(), err)
	}
	for rec, err := range itr {
		if err != nil {
			return fmt.Errorf("scan %v: %w", tbl.Identifier(), err)
		}
		cols := make([]arrow.Array, len(columns))
		for i, name := range columns {
			idx := rec.Schema().FieldIndices(name)
			if len(idx) == 0 {
				rec.Release()
				return fmt.Errorf("scan %v: no column %s", tbl.Identifier(), name)
			}
			cols[i] = rec.Column(idx[0])
		}
		for i := range int(rec.NumRows()) {
			each(cols, i)
		}
		rec.Release()
	}
	return nil
}

// ScanColumn is ScanColumns of one column.
func ScanColumn(ctx context.Context, tbl *table.Table, column string, each func(col arrow.Array, row int)) error {
	return ScanColumns(ctx, tbl, []string{column}, func(cols []arrow.Array, row int) { each(cols[0], row) })
}

// CountRows is the number of rows in tbl's current state, deletes applied, by ScanColumn
// over column.
func CountRows(ctx context.Context, tbl *table.Table, column string) (int64, error) {
	var n int64
	err := ScanColumn(ctx, tbl, column, func(arrow.Array, int) { n++ })
	return n, err
}
