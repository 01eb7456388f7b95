package testlake_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/fhirstream/fhirstream/internal/testlake"
)

// lake is a set of fixture tables written by iceberg-go, each with the rows a
// reader must return for its current state and for one earlier snapshot.
type lake struct {
	spec   testlake.Catalog
	tables []fixtureTable
}

type fixtureTable struct {
	ns, name string
	// features the table's current snapshot holds: "equality-deletes",
	// "position-deletes"; a reader may refuse those (ErrUnsupported).
	features []string
	want     []testlake.Row
	// An earlier snapshot and its rows, for time travel.
	earlier     int64
	wantEarlier []testlake.Row
	earlierFeat []string
}

// writeFixtures writes, in namespace ns of cat:
//   - appends:  three appends (three data files), then time travel to the first;
//   - upserts:  an append, then a RowDelta that replaces some rows and deletes
//     others with equality deletes (what an upserting sink writes);
//   - posdel:   merge-on-read table, an append, then a delete by filter that
//     iceberg-go writes as position deletes.
func writeFixtures(t *testing.T, ctx context.Context, cat catalog.Catalog, spec testlake.Catalog, ns string) lake {
	t.Helper()
	l := lake{spec: spec}
	must := func(tbl *table.Table, err error) *table.Table {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tbl
	}

	// appends
	tbl := must(testlake.CreatePersonTable(ctx, cat, ns, "appends", nil))
	tbl = must(testlake.AppendPeople(ctx, tbl, testlake.People(1, 10, 1), nil))
	first := tbl.CurrentSnapshot().SnapshotID
	tbl = must(testlake.AppendPeople(ctx, tbl, testlake.People(11, 20, 1), nil))
	_ = must(testlake.AppendPeople(ctx, tbl, testlake.People(21, 30, 1), nil))
	l.tables = append(l.tables, fixtureTable{ns: ns, name: "appends",
		want:    testlake.Rows(testlake.People(1, 30, 1)),
		earlier: first, wantEarlier: testlake.Rows(testlake.People(1, 10, 1))})

	// upserts: ids 1..10 v1; then 3,4 become v2, 5 and 6 are deleted, 11 is new.
	tbl = must(testlake.CreatePersonTable(ctx, cat, ns, "upserts", nil))
	tbl = must(testlake.AppendPeople(ctx, tbl, testlake.People(1, 10, 1), nil))
	before := tbl.CurrentSnapshot().SnapshotID
	_ = must(testlake.UpsertPeople(ctx, tbl,
		[]testlake.Person{testlake.PersonAt(3, 2), testlake.PersonAt(4, 2), testlake.PersonAt(11, 2)},
		[]int64{5, 6}, nil))
	want := testlake.Rows(testlake.People(1, 2, 1))
	want = append(want, testlake.PersonAt(3, 2).Row(), testlake.PersonAt(4, 2).Row())
	want = append(want, testlake.Rows(testlake.People(7, 10, 1))...)
	want = append(want, testlake.PersonAt(11, 2).Row())
	l.tables = append(l.tables, fixtureTable{ns: ns, name: "upserts", features: []string{"equality-deletes"},
		want: want, earlier: before, wantEarlier: testlake.Rows(testlake.People(1, 10, 1))})

	// posdel: ids 1..10, then delete id < 4 as position deletes.
	tbl = must(testlake.CreatePersonTable(ctx, cat, ns, "posdel",
		iceberg.Properties{table.WriteDeleteModeKey: table.WriteModeMergeOnRead}))
	tbl = must(testlake.AppendPeople(ctx, tbl, testlake.People(1, 10, 1), nil))
	before = tbl.CurrentSnapshot().SnapshotID
	_ = must(testlake.DeletePeople(ctx, tbl, iceberg.LessThan(iceberg.Reference("id"), int64(4)), nil))
	l.tables = append(l.tables, fixtureTable{ns: ns, name: "posdel", features: []string{"position-deletes"},
		want: testlake.Rows(testlake.People(4, 10, 1)), earlier: before, wantEarlier: testlake.Rows(testlake.People(1, 10, 1))})
	return l
}

// readAll reads every fixture table (current and earlier snapshot) with r and
// returns, per table, what the reader could not read and why.
func checkLake(t *testing.T, r *testlake.Reader, l lake, supports func(feature string) bool) {
	t.Helper()
	for _, ft := range l.tables {
		check := func(what string, features []string, got testlake.Result, err error, want []testlake.Row) {
			t.Helper()
			refuses := false
			for _, f := range features {
				if !supports(f) {
					refuses = true
				}
			}
			switch {
			case refuses && errors.Is(err, testlake.ErrUnsupported):
				t.Logf("%s %s: refused as documented: %v", r.Engine, what, err)
			case refuses && err == nil:
				t.Errorf("%s %s: read a table with %v, which it is documented to refuse: update docs/lakehouse.md and this test", r.Engine, what, features)
			case err != nil:
				t.Errorf("%s %s: %v", r.Engine, what, err)
			default:
				if d := testlake.Diff(want, got.Rows, 5); d != "" {
					t.Errorf("%s %s: %s", r.Engine, what, d)
				}
			}
		}
		got, err := r.Read(l.spec, ft.ns, ft.name)
		check(ft.ns+"."+ft.name, ft.features, got, err, ft.want)
		got, err = r.ReadAt(l.spec, ft.ns, ft.name, ft.earlier)
		check(ft.ns+"."+ft.name+" (time travel)", ft.earlierFeat, got, err, ft.wantEarlier)
	}
}

func TestReadersExplore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cat, spec, err := testlake.OpenSQLCatalog(ctx, "fixtures", dir)
	if err != nil {
		t.Fatal(err)
	}
	l := writeFixtures(t, ctx, cat, spec, "lake")
	for _, e := range testlake.Engines {
		t.Run(string(e), func(t *testing.T) {
			r := testlake.Open(t, e)
			for _, ft := range l.tables {
				got, err := r.Read(spec, ft.ns, ft.name)
				t.Logf("%s %s: err=%v", e, ft.name, err)
				if err == nil {
					if d := testlake.Diff(ft.want, got.Rows, 3); d != "" {
						t.Logf("  diff: %s", d)
					} else {
						t.Logf("  equal (%d rows) cols %v", len(got.Rows), got.Columns)
					}
				}
				got, err = r.ReadAt(spec, ft.ns, ft.name, ft.earlier)
				t.Logf("%s %s @%d: err=%v", e, ft.name, ft.earlier, err)
				if err == nil {
					if d := testlake.Diff(ft.wantEarlier, got.Rows, 3); d != "" {
						t.Logf("  diff: %s", d)
					} else {
						t.Logf("  equal (%d rows)", len(got.Rows))
					}
				}
			}
		})
	}
	_ = os.Getenv
}
