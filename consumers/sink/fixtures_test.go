package sink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/schemas"
)

// syntheticRow fills every column of table with a value derived from i, so a row read
// back can be checked against the row produced. Optional columns are null for odd i.
// The first column (the table's id) is i+1; person_id, where the table has one, is
// i%persons+1.
func syntheticRow(t *schemas.Table, i, persons int) map[string]any {
	row := map[string]any{}
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for ci, c := range t.Columns {
		if !c.Required && i%2 == 1 && ci != 0 {
			continue
		}
		switch {
		case ci == 0 && c.Type == schemas.TypeLong:
			row[c.Name] = int64(i + 1)
			continue
		case c.Name == "person_id":
			row[c.Name] = int64(i%persons + 1)
			continue
		case c.Name == schemas.ColFHIRKey:
			row[c.Name] = fmt.Sprintf("Resource/%s-%d", t.Name, i)
			continue
		case c.Name == schemas.ColFHIRVersion:
			row[c.Name] = "1"
			continue
		case c.Name == schemas.ColFHIRDeleted:
			row[c.Name] = false
			continue
		case c.Name == schemas.ColFHIRComponent:
			row[c.Name] = int32(0)
			continue
		}
		switch c.Type {
		case schemas.TypeInt:
			row[c.Name] = int32(i % 1000)
		case schemas.TypeLong:
			row[c.Name] = int64(i) * 3
		case schemas.TypeDouble:
			row[c.Name] = float64(i) / 4
		case schemas.TypeString:
			s := fmt.Sprintf("v%d", i)
			if c.MaxLength > 0 && len(s) > c.MaxLength {
				s = s[:c.MaxLength]
			}
			row[c.Name] = s
		case schemas.TypeBoolean:
			row[c.Name] = i%3 == 0
		case schemas.TypeDate:
			row[c.Name] = base.AddDate(0, 0, i%3000)
		case schemas.TypeTimestamp, schemas.TypeLocalTimestamp:
			row[c.Name] = base.Add(time.Duration(i) * time.Minute)
		}
	}
	return row
}

// omopRecords encodes n synthetic rows of table as records of its topic, all stamped
// with ts (so they land in one date partition).
func omopRecords(tb testing.TB, codec *schemas.Codec, topics schemas.Topics, table string, n, persons int, ts time.Time) []*kgo.Record {
	tb.Helper()
	t, err := schemas.OMOPTable(table)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]*kgo.Record, 0, n)
	for i := range n {
		row := syntheticRow(t, i, persons)
		v, err := codec.Encode(context.Background(), table, row)
		if err != nil {
			tb.Fatalf("encode %s row %d: %v", table, i, err)
		}
		out = append(out, &kgo.Record{Topic: topics.OMOP(table), Key: []byte(row[schemas.ColFHIRKey].(string)), Value: v, Timestamp: ts})
	}
	return out
}

// lakeFiles lists the data files under dir (recursively), excluding schema files.
func lakeFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") && !strings.HasSuffix(p, schemaFileName) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// readParquet reads every row of a file as a map from column name to value (nil for
// null), with parquet-go as an independent reader of what the sink wrote.
func readParquet(tb testing.TB, p string) (*parquet.Schema, []map[string]parquet.Value) {
	tb.Helper()
	f, err := os.Open(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	pf, err := parquet.OpenFile(f, info.Size())
	if err != nil {
		tb.Fatalf("open %s: %v", p, err)
	}
	fields := pf.Schema().Fields()
	r := parquet.NewReader(pf)
	defer r.Close()
	var out []map[string]parquet.Value
	buf := make([]parquet.Row, 128)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			m := map[string]parquet.Value{}
			for _, v := range row {
				m[fields[v.Column()].Name()] = v.Clone()
			}
			out = append(out, m)
		}
		if err != nil {
			break
		}
	}
	return pf.Schema(), out
}
