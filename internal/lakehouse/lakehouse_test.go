package lakehouse

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/parquet-go/parquet-go"
)

// personRow is a minimal omop.person row: the required columns, a datetime and lineage.
func personRow(t *testing.T, l *Layout, id int64, key string, birth time.Time) parquet.Row {
	t.Helper()
	row := make(parquet.Row, len(l.Columns))
	for i, c := range l.Columns {
		v := parquet.NullValue()
		switch {
		case c.Name == "person_id":
			v = parquet.Int64Value(id)
		case c.Name == "birth_datetime":
			v = parquet.Int64Value(birth.UnixMicro())
		case c.Name == ColFHIRKey:
			v = parquet.ByteArrayValue([]byte(key))
		case c.Name == ColKafkaOffset:
			v = parquet.Int64Value(id)
		case c.Required && c.Type.Equals(iceberg.PrimitiveTypes.Int32):
			v = parquet.Int32Value(int32(id % 7))
		case c.Required:
			t.Fatalf("test row has no value for required column %s", c.Name)
		}
		def := 0
		if !c.Required && !v.IsNull() {
			def = 1
		}
		row[i] = v.Level(0, def, i)
	}
	return row
}

// scanIDs reads the person ids of the table's current snapshot through iceberg-go's own
// scan (which applies equality deletes), not through anything this package wrote.
func scanIDs(t *testing.T, tbl *table.Table, opts ...table.ScanOption) []int64 {
	t.Helper()
	_, itr, err := tbl.Scan(append(opts, table.WithSelectedFields("person_id"))...).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rec, err := range itr {
		if err != nil {
			t.Fatal(err)
		}
		col := rec.Column(0).(*array.Int64)
		for i := range col.Len() {
			ids = append(ids, col.Value(i))
		}
		rec.Release()
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func TestEmbeddedCatalogRowDeltaWithEqualityDeletes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lake, err := Open(ctx, Config{Out: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	l, err := OMOPLayout("person")
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := lake.EnsureTable(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if ids := tbl.Schema().IdentifierFieldIDs; len(ids) != 1 || ids[0] != 1 {
		t.Errorf("identifier fields %v, want [1] (person_id)", ids)
	}
	fsys, err := tbl.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wfs := fsys.(iceio.WriteFileIO)
	loc, _ := tbl.LocationProvider()
	birth := time.Date(1970, 3, 4, 5, 6, 7, 0, time.UTC)

	commit := func(tbl *table.Table, rows []parquet.Row, deletes []string, props iceberg.Properties) *table.Table {
		t.Helper()
		tx := tbl.NewTransaction()
		rd := tx.NewRowDelta(props)
		if len(rows) > 0 {
			df, err := l.WriteData(wfs, loc.NewDataLocation(fmt.Sprintf("d-%d.parquet", time.Now().UnixNano())), rows, FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if df.Count() != int64(len(rows)) {
				t.Errorf("data file counts %d rows, wrote %d", df.Count(), len(rows))
			}
			if len(df.LowerBoundValues()) == 0 {
				t.Error("data file has no lower bounds")
			}
			rd.AddRows(df)
		}
		if len(deletes) > 0 {
			df, err := l.WriteEqualityDeletes(wfs, loc.NewDataLocation(fmt.Sprintf("e-%d.parquet", time.Now().UnixNano())), deletes, FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			rd.AddDeletes(df)
		}
		if err := rd.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		out, err := tx.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// Initial load: three persons, no deletes.
	tbl = commit(tbl, []parquet.Row{
		personRow(t, l, 1, "Patient/a", birth), personRow(t, l, 2, "Patient/b", birth), personRow(t, l, 3, "Patient/c", birth),
	}, nil, iceberg.Properties{OffsetsKey("g"): Offsets{Topic: "omop.person", Offsets: map[int32]int64{0: 3}}.Encode()})
	first := tbl.CurrentSnapshot().SnapshotID
	// Update b (new id 20 replaces 2) and delete c, in one commit: the deletes must not
	// hit the new row of b written in the same snapshot.
	tbl = commit(tbl, []parquet.Row{personRow(t, l, 20, "Patient/b", birth)}, []string{"Patient/b", "Patient/c"},
		iceberg.Properties{SummaryCommitID: "batch-2"})

	if got := fmt.Sprint(scanIDs(t, tbl)); got != "[1 20]" {
		t.Errorf("current state %s, want [1 20]", got)
	}
	if got := fmt.Sprint(scanIDs(t, tbl, table.WithSnapshotID(first))); got != "[1 2 3]" {
		t.Errorf("time travel to the first snapshot: %s, want [1 2 3]", got)
	}
	// The second snapshot carries no offsets: they are read from its ancestor.
	o, snap, err := TableOffsets(tbl.Metadata(), "g")
	if err != nil || snap != first || o.Offsets[0] != 3 || o.Topic != "omop.person" {
		t.Errorf("TableOffsets = %+v from %d (%v), want partition 0 at 3 from %d", o, snap, err, first)
	}
	if _, ok := FindCommit(tbl.Metadata(), "batch-2", 0); !ok {
		t.Error("FindCommit does not find batch-2")
	}
	if _, ok := FindCommit(tbl.Metadata(), "batch-2", tbl.CurrentSnapshot().SnapshotID); ok {
		t.Error("FindCommit looked past its stop snapshot")
	}
	if got := OffsetSnapshots(tbl.Metadata()); got["g"] != first || len(got) != 1 {
		t.Errorf("OffsetSnapshots = %v, want g: %d", got, first)
	}

	// The datetime column is a timestamp without zone and round-trips its wall clock.
	_, itr, err := tbl.Scan(table.WithSelectedFields("birth_datetime")).ToArrowRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for rec, err := range itr {
		if err != nil {
			t.Fatal(err)
		}
		if typ := rec.Schema().Field(0).Type.String(); typ != "timestamp[us]" {
			t.Errorf("birth_datetime reads as %s, want timestamp[us] (no zone)", typ)
		}
		rec.Release()
	}

	// A second process opening the same lake sees the same table.
	lake2, err := Open(ctx, Config{Out: dir, Namespace: "site.one"})
	if err != nil {
		t.Fatal(err)
	}
	defer lake2.Close()
	if _, err := lake2.EnsureTable(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(lake2.Ident(l)); got != "[site one omop person]" {
		t.Errorf("identifier under a namespace: %s", got)
	}
	lake2.Root = nil
	tbl2, err := lake2.EnsureTable(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if tbl2.CurrentSnapshot().SnapshotID != tbl.CurrentSnapshot().SnapshotID {
		t.Error("second catalog handle sees another snapshot")
	}
}

func TestTableName(t *testing.T) {
	for in, want := range map[string]string{"Patient": "patient", "MedicationRequest": "medication_request",
		"AllergyIntolerance": "allergy_intolerance", "DiagnosticReport": "diagnostic_report"} {
		if got := TableName(in); got != want {
			t.Errorf("TableName(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestOffsetsRoundTrip(t *testing.T) {
	o := Offsets{Topic: "omop.person", Offsets: map[int32]int64{0: 5, 11: 0, 3: 1 << 40}}
	got, err := DecodeOffsets(o.Encode())
	if err != nil || got.Topic != o.Topic || len(got.Offsets) != 3 || got.Offsets[11] != 0 || got.Offsets[3] != 1<<40 {
		t.Errorf("round trip of %+v gave %+v, %v", o, got, err)
	}
	for _, bad := range []string{"", "{", `{"offsets":{"x":1}}`, `{"offsets":{"1":-1}}`} {
		if _, err := DecodeOffsets(bad); err == nil {
			t.Errorf("DecodeOffsets(%q) took it", bad)
		}
	}
}
