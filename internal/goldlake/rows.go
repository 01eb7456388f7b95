package goldlake

import (
	"fmt"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// parquetRow fills dst with the values of a row in the map form (gold.Row; vocabulary
// rows are given by position, see vocabularyRow) in the layout's column order. A
// required column without a value, or a value of the wrong type, is an error naming the
// table and column.
func parquetRow(dst parquet.Row, l *lakehouse.Layout, value func(i int, name string) any) (parquet.Row, error) {
	dst = dst[:0]
	for i, c := range l.Columns {
		v := value(i, c.Name)
		if v == nil {
			if c.Required {
				return dst, fmt.Errorf("%s: required column %s is null", l, c.Name)
			}
			dst = append(dst, parquet.NullValue().Level(0, 0, i))
			continue
		}
		pv, ok := lakehouse.ParquetValue(c.Type, v)
		if !ok {
			return dst, fmt.Errorf("%s: column %s (%s) holds a %T", l, c.Name, c.Type, v)
		}
		def := 0
		if !c.Required {
			def = 1
		}
		dst = append(dst, pv.Level(0, def, i))
	}
	return dst, nil
}
