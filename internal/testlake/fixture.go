package testlake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	_ "github.com/apache/iceberg-go/catalog/rest" // registers the "rest" catalog type
	_ "github.com/apache/iceberg-go/catalog/sql"  // registers the "sql" catalog type
	"github.com/apache/iceberg-go/table"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver ("sqlite"), as the sink uses
)

// Fixture tables: a small "person" table written straight with the iceberg-go
// library (never with fhirstream's sink), so the readers and lake maintenance
// can be tested against files a third party wrote. Each Person has one value of
// every type the lake uses, so a reader that mistypes one is caught.

// Person is one fixture row.
type Person struct {
	ID     int64
	Name   string
	Born   time.Time // a date (UTC midnight)
	Seen   time.Time // timestamp without zone
	At     time.Time // timestamptz
	Score  float64
	Active bool
	Small  int32
}

// PersonSchema is the fixture table's schema; id is its identifier field.
func PersonSchema() *iceberg.Schema {
	return iceberg.NewSchemaWithIdentifiers(0, []int{1},
		iceberg.NestedField{ID: 1, Name: "id", Type: iceberg.PrimitiveTypes.Int64, Required: true},
		iceberg.NestedField{ID: 2, Name: "name", Type: iceberg.PrimitiveTypes.String},
		iceberg.NestedField{ID: 3, Name: "born", Type: iceberg.PrimitiveTypes.Date},
		iceberg.NestedField{ID: 4, Name: "seen", Type: iceberg.PrimitiveTypes.Timestamp},
		iceberg.NestedField{ID: 5, Name: "at", Type: iceberg.PrimitiveTypes.TimestampTz},
		iceberg.NestedField{ID: 6, Name: "score", Type: iceberg.PrimitiveTypes.Float64},
		iceberg.NestedField{ID: 7, Name: "active", Type: iceberg.PrimitiveTypes.Bool},
		iceberg.NestedField{ID: 8, Name: "small", Type: iceberg.PrimitiveTypes.Int32},
	)
}

// PersonAt is a deterministic row for id at a version: a new version changes
// every non-key column, so a reader that returns an old version is caught.
func PersonAt(id int64, version int) Person {
	base := time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)
	return Person{
		ID:     id,
		Name:   fmt.Sprintf("person %d v%d – Zoë", id, version),
		Born:   base.AddDate(0, 0, int(id*37%2_900_000)+version), // wrapped to stay before year 9999, which Python's dates end at
		Seen:   time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(id)*time.Hour + time.Duration(version)*time.Microsecond*1001),
		At:     time.Date(2025, 6, 30, 23, 59, 59, 0, time.UTC).Add(time.Duration(id*1000+int64(version)) * time.Microsecond),
		Score:  float64(id)/8 + float64(version),
		Active: (id+int64(version))%2 == 0,
		Small:  int32(id%1000) - 500 + int32(version),
	}
}

// People is PersonAt for ids from..to (inclusive) at one version.
func People(from, to int64, version int) []Person {
	ps := make([]Person, 0, to-from+1)
	for id := from; id <= to; id++ {
		ps = append(ps, PersonAt(id, version))
	}
	return ps
}

// Row is what every reader must return for p, formatted here by the package's
// own rules (see Row), not by any reader.
func (p Person) Row() Row {
	return Row{
		"id":     p.ID,
		"name":   p.Name,
		"born":   Date(p.Born),
		"seen":   Timestamp(p.Seen),
		"at":     TimestampTZ(p.At),
		"score":  p.Score,
		"active": p.Active,
		"small":  int64(p.Small),
	}
}

// Rows is Row for each person.
func Rows(ps []Person) []Row {
	rows := make([]Row, len(ps))
	for i, p := range ps {
		rows[i] = p.Row()
	}
	return rows
}

// OpenSQLCatalog opens (creating it if needed) an embedded SQLite catalog in
// dir (catalog.db, warehouse/) through iceberg-go's catalog.Load, in WAL mode
// as the sink opens it, and returns it with the Catalog spec a reader needs.
func OpenSQLCatalog(ctx context.Context, name, dir string) (catalog.Catalog, Catalog, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, Catalog{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "warehouse"), 0o755); err != nil {
		return nil, Catalog{}, err
	}
	spec := SQLCatalog(name, filepath.Join(dir, "catalog.db"), filepath.Join(dir, "warehouse"))
	cat, err := catalog.Load(ctx, name, iceberg.Properties{
		"type":                "sql",
		"uri":                 "file:" + spec.URI + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)",
		"sql.driver":          "sqlite",
		"sql.dialect":         "sqlite",
		"warehouse":           spec.Warehouse,
		"init_catalog_tables": "true",
	})
	if err != nil {
		return nil, Catalog{}, fmt.Errorf("open sql catalog %s: %w", spec.URI, err)
	}
	return cat, spec, nil
}

// OpenRESTCatalog opens a REST catalog through iceberg-go's catalog.Load.
func OpenRESTCatalog(ctx context.Context, name, uri string) (catalog.Catalog, Catalog, error) {
	cat, err := catalog.Load(ctx, name, iceberg.Properties{"type": "rest", "uri": uri})
	if err != nil {
		return nil, Catalog{}, fmt.Errorf("open rest catalog %s: %w", uri, err)
	}
	return cat, RESTCatalog(name, uri), nil
}

// CreatePersonTable creates namespace ns (dot-separated when nested: every
// level, if missing) and table ns.name with PersonSchema and the given
// properties.
func CreatePersonTable(ctx context.Context, cat catalog.Catalog, ns, name string, props iceberg.Properties) (*table.Table, error) {
	levels := catalog.ToIdentifier(ns) // "a.b" is two levels
	for i := range levels {
		level := levels[:i+1]
		if err := cat.CreateNamespace(ctx, level, nil); err != nil {
			if exists, _ := cat.CheckNamespaceExists(ctx, level); !exists {
				return nil, fmt.Errorf("create namespace %s: %w", ns, err)
			}
		}
	}
	tbl, err := cat.CreateTable(ctx, append(levels, name), PersonSchema(), catalog.WithProperties(props))
	if err != nil {
		return nil, fmt.Errorf("create table %s.%s: %w", ns, name, err)
	}
	return tbl, nil
}

// personRecord builds one Arrow record of ps in tbl's schema.
func personRecord(tbl *table.Table, ps []Person) (arrow.RecordBatch, error) {
	sc, err := table.SchemaToArrowSchema(tbl.Schema(), nil, true, false)
	if err != nil {
		return nil, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for _, p := range ps {
		b.Field(0).(*array.Int64Builder).Append(p.ID)
		b.Field(1).(*array.StringBuilder).Append(p.Name)
		b.Field(2).(*array.Date32Builder).Append(arrow.Date32FromTime(p.Born))
		b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(p.Seen.UnixMicro()))
		b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(p.At.UnixMicro()))
		b.Field(5).(*array.Float64Builder).Append(p.Score)
		b.Field(6).(*array.BooleanBuilder).Append(p.Active)
		b.Field(7).(*array.Int32Builder).Append(p.Small)
	}
	return b.NewRecordBatch(), nil
}

// AppendPeople appends ps in one commit (one data file) with the given snapshot
// summary properties.
func AppendPeople(ctx context.Context, tbl *table.Table, ps []Person, summary iceberg.Properties) (*table.Table, error) {
	rec, err := personRecord(tbl, ps)
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	out, err := tbl.Append(ctx, rdr, summary)
	if err != nil {
		return nil, fmt.Errorf("append %d rows to %s: %w", len(ps), tbl.Identifier(), err)
	}
	return out, nil
}

// UpsertPeople commits one RowDelta: an equality-delete file on id for every
// upserted or deleted id, and a data file with the new versions. Rows added in
// the same snapshot are not hit by its own equality deletes (the spec applies
// them to data of lower sequence numbers only), so this is an upsert.
func UpsertPeople(ctx context.Context, tbl *table.Table, upserts []Person, deleteIDs []int64, summary iceberg.Properties) (*table.Table, error) {
	ids := slices.Clone(deleteIDs)
	for _, p := range upserts {
		ids = append(ids, p.ID)
	}
	idSchema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64,
		Metadata: arrow.NewMetadata([]string{"PARQUET:field_id"}, []string{"1"})}}, nil)
	ib := array.NewRecordBuilder(memory.DefaultAllocator, idSchema)
	defer ib.Release()
	ib.Field(0).(*array.Int64Builder).AppendValues(ids, nil)
	idRec := ib.NewRecordBatch()
	defer idRec.Release()

	tx := tbl.NewTransaction()
	dels, err := tx.WriteEqualityDeletes(ctx, []int{1}, func(yield func(arrow.RecordBatch, error) bool) {
		yield(idRec, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("write equality deletes: %w", err)
	}
	delta := tx.NewRowDelta(summary).AddDeletes(dels...)
	if len(upserts) > 0 {
		rec, err := personRecord(tbl, upserts)
		if err != nil {
			return nil, err
		}
		defer rec.Release()
		for df, err := range table.WriteRecords(ctx, tbl, rec.Schema(), func(yield func(arrow.RecordBatch, error) bool) {
			yield(rec, nil)
		}) {
			if err != nil {
				return nil, fmt.Errorf("write data files: %w", err)
			}
			delta.AddRows(df)
		}
	}
	if err := delta.Commit(ctx); err != nil {
		return nil, fmt.Errorf("row delta: %w", err)
	}
	out, err := tx.Commit(ctx)
	if err != nil {
		return nil, fmt.Errorf("commit upsert to %s: %w", tbl.Identifier(), err)
	}
	return out, nil
}

// DeletePeople deletes the rows matching filter. On a table with
// write.delete.mode=merge-on-read, iceberg-go writes position-delete files.
func DeletePeople(ctx context.Context, tbl *table.Table, filter iceberg.BooleanExpression, summary iceberg.Properties) (*table.Table, error) {
	out, err := tbl.Delete(ctx, filter, summary)
	if err != nil {
		return nil, fmt.Errorf("delete from %s: %w", tbl.Identifier(), err)
	}
	return out, nil
}
