package goldlake

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/fhirstream/fhirstream/internal/gold"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// Source is the current state of the lake's omop.* tables as gold.Source, each table
// pinned at the snapshot that was current when the Source was opened: every pass of a
// refresh reads the same rows, whatever the sinks commit meanwhile. Rows are read
// through iceberg-go's scan, which applies the sinks' equality deletes, one record batch
// at a time.
type Source struct {
	ctx    context.Context
	tables map[string]*table.Table // by CDM table name; absent: no rows
	snaps  map[string]*table.Snapshot
	names  map[string]string // CDM table → its catalog name, e.g. "omop.person"
}

// OpenSource loads the omop tables of lk and pins their current snapshots. A table the
// catalog does not have (nothing mapped to it yet) has no rows. It is an error when the
// lake has no omop table at all.
func OpenSource(ctx context.Context, lk *lakehouse.Lake) (*Source, error) {
	s := &Source{ctx: ctx, tables: map[string]*table.Table{}, snaps: map[string]*table.Snapshot{}, names: map[string]string{}}
	for _, name := range gold.ClinicalTables {
		l, err := lakehouse.OMOPLayout(name)
		if err != nil {
			return nil, err
		}
		ident := lk.Ident(l)
		s.names[name] = joinIdent(ident)
		tbl, err := lk.Catalog.LoadTable(ctx, ident)
		if errors.Is(err, catalog.ErrNoSuchTable) || errors.Is(err, catalog.ErrNoSuchNamespace) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("goldlake: load %s: %w", s.names[name], err)
		}
		s.tables[name] = tbl
		s.snaps[name] = tbl.CurrentSnapshot()
	}
	if len(s.tables) == 0 {
		return nil, fmt.Errorf("goldlake: the lake has no %s tables (namespace %s): the OMOP sink (consume sink-omop) has written nothing yet",
			lakehouse.NamespaceOMOP, joinIdent(lk.Namespace(lakehouse.NamespaceOMOP)))
	}
	return s, nil
}

// Snapshots are the snapshot ids the source reads, by catalog table name; a table
// without a snapshot is 0, one absent from the catalog is not listed.
func (s *Source) Snapshots() map[string]int64 {
	out := map[string]int64{}
	for name := range s.tables {
		var id int64
		if snap := s.snaps[name]; snap != nil {
			id = snap.SnapshotID
		}
		out[s.names[name]] = id
	}
	return out
}

// Newest is the commit time of the newest snapshot the source reads: when the lake last
// took in data.
func (s *Source) Newest() time.Time {
	var ms int64
	for _, snap := range s.snaps {
		if snap != nil && snap.TimestampMs > ms {
			ms = snap.TimestampMs
		}
	}
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// Rows yields the CDM columns of every current row of omop.<table> (and _fhir_key of
// device_exposure, which link resolution reads).
func (s *Source) Rows(tableName string) iter.Seq2[gold.Row, error] {
	cols, err := gold.Columns(tableName)
	if err != nil {
		return func(yield func(gold.Row, error) bool) { yield(nil, err) }
	}
	names := make([]string, 0, len(cols)+1)
	for _, c := range cols {
		names = append(names, c.Name)
	}
	if tableName == "device_exposure" {
		names = append(names, schemas.ColFHIRKey)
	}
	return s.Columns(tableName, names...)
}

// Columns yields the named columns of every current row of omop.<table>.
func (s *Source) Columns(tableName string, columns ...string) iter.Seq2[gold.Row, error] {
	return func(yield func(gold.Row, error) bool) {
		tbl, ok := s.tables[tableName]
		if !ok || s.snaps[tableName] == nil {
			return
		}
		for rec, err := range scan(s.ctx, tbl, s.snaps[tableName].SnapshotID, columns) {
			if err != nil {
				yield(nil, fmt.Errorf("goldlake: read %s: %w", s.names[tableName], err))
				return
			}
			cols, err := columnsOf(rec, columns)
			if err != nil {
				rec.Release()
				yield(nil, fmt.Errorf("goldlake: read %s: %w", s.names[tableName], err))
				return
			}
			for i := range int(rec.NumRows()) {
				r := make(gold.Row, len(columns))
				for j, name := range columns {
					v, err := arrowValue(cols[j], i)
					if err != nil {
						rec.Release()
						yield(nil, fmt.Errorf("goldlake: read %s.%s: %w", s.names[tableName], name, err))
						return
					}
					r[name] = v
				}
				if !yield(r, nil) {
					rec.Release()
					return
				}
			}
			rec.Release()
		}
	}
}

// scan reads the named columns of tbl at a snapshot (0: the current one), one record
// batch at a time.
func scan(ctx context.Context, tbl *table.Table, snapshot int64, columns []string) iter.Seq2[arrow.RecordBatch, error] {
	return func(yield func(arrow.RecordBatch, error) bool) {
		opts := []table.ScanOption{table.WithSelectedFields(columns...)}
		if snapshot != 0 {
			opts = append(opts, table.WithSnapshotID(snapshot))
		}
		_, itr, err := tbl.Scan(opts...).ToArrowRecords(ctx)
		if err != nil {
			yield(nil, err)
			return
		}
		for rec, err := range itr {
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}
}

// columnsOf returns the record's columns called names, in that order.
func columnsOf(rec arrow.RecordBatch, names []string) ([]arrow.Array, error) {
	cols := make([]arrow.Array, len(names))
	for j, name := range names {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) == 0 {
			return nil, fmt.Errorf("no column %s", name)
		}
		cols[j] = rec.Column(idx[0])
	}
	return cols, nil
}

// arrowValue is the value at row i of col in the map form of package gold: int32,
// int64, float64, string, bool, time.Time (dates at 00:00 UTC, timestamps without zone
// as their wall clock in UTC), nil for null.
func arrowValue(col arrow.Array, i int) (any, error) {
	if col.IsNull(i) {
		return nil, nil
	}
	switch c := col.(type) {
	case *array.Int32:
		return c.Value(i), nil
	case *array.Int64:
		return c.Value(i), nil
	case *array.Float64:
		return c.Value(i), nil
	case *array.String:
		return c.Value(i), nil
	case *array.LargeString:
		return c.Value(i), nil
	case *array.Boolean:
		return c.Value(i), nil
	case *array.Date32:
		return c.Value(i).ToTime().UTC(), nil
	case *array.Timestamp:
		unit := c.DataType().(*arrow.TimestampType).Unit
		return c.Value(i).ToTime(unit).UTC(), nil
	}
	return nil, fmt.Errorf("unexpected Arrow type %s", col.DataType())
}

// joinIdent is a catalog identifier as its dotted name ("omop.person").
func joinIdent(ident []string) string { return strings.Join(ident, ".") }
