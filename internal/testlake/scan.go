package testlake

import (
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go/table"
)

// ScanColumn calls each for every row of a column of tbl's current state, read in this
// process through iceberg-go's scan: Go's own Iceberg reader, which reads the files with
// arrow-go (fhirstream writes them with parquet-go) and applies every delete file. It is
// the quick reader of the Go tests; the engines above are the independent ones.
func ScanColumn(ctx context.Context, tbl *table.Table, column string, each func(col arrow.Array, row int)) error {
	_, itr, err := tbl.Scan(table.WithSelectedFields(column)).ToArrowRecords(ctx)
	if err != nil {
		return fmt.Errorf("scan %v: %w", tbl.Identifier(), err)
	}
	for rec, err := range itr {
		if err != nil {
			return fmt.Errorf("scan %v: %w", tbl.Identifier(), err)
		}
		for i := range int(rec.NumRows()) {
			each(rec.Column(0), i)
		}
		rec.Release()
	}
	return nil
}

// CountRows is the number of rows in tbl's current state, deletes applied, by ScanColumn
// over column.
func CountRows(ctx context.Context, tbl *table.Table, column string) (int64, error) {
	var n int64
	err := ScanColumn(ctx, tbl, column, func(arrow.Array, int) { n++ })
	return n, err
}
