package testlake_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
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

	// nested: the appends again, in a namespace inside ns (a lake under a
	// parent namespace, as the sink's --catalog-namespace puts it).
	tbl = must(testlake.CreatePersonTable(ctx, cat, ns+".site1", "appends", nil))
	tbl = must(testlake.AppendPeople(ctx, tbl, testlake.People(1, 10, 1), nil))
	first = tbl.CurrentSnapshot().SnapshotID
	_ = must(testlake.AppendPeople(ctx, tbl, testlake.People(11, 12, 1), nil))
	l.tables = append(l.tables, fixtureTable{ns: ns + ".site1", name: "appends",
		want:    testlake.Rows(testlake.People(1, 12, 1)),
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

	// many_upserts: 25 RowDeltas (25 equality-delete files), each replacing
	// two rows and deleting one; many_posdel: 25 position-delete files.
	tbl = must(testlake.CreatePersonTable(ctx, cat, ns, "many_upserts", nil))
	tbl = must(testlake.AppendPeople(ctx, tbl, testlake.People(1, 100, 1), nil))
	before = tbl.CurrentSnapshot().SnapshotID
	current := map[int64]testlake.Person{}
	for _, p := range testlake.People(1, 100, 1) {
		current[p.ID] = p
	}
	for v := 2; v <= 26; v++ {
		a, b, del := int64(v*3%100+1), int64(v*7%100+1), int64(v*11%100+1)
		ups := []testlake.Person{testlake.PersonAt(a, v)}
		if b != a {
			ups = append(ups, testlake.PersonAt(b, v))
		}
		var dels []int64
		if del != a && del != b {
			dels = []int64{del}
			delete(current, del)
		}
		tbl = must(testlake.UpsertPeople(ctx, tbl, ups, dels, nil))
		for _, p := range ups {
			current[p.ID] = p
		}
	}
	var rows []testlake.Row
	for _, p := range current {
		rows = append(rows, p.Row())
	}
	l.tables = append(l.tables, fixtureTable{ns: ns, name: "many_upserts",
		features: []string{"equality-deletes", "many-equality-deletes"},
		want:     rows, earlier: before, wantEarlier: testlake.Rows(testlake.People(1, 100, 1))})

	tbl = must(testlake.CreatePersonTable(ctx, cat, ns, "many_posdel",
		iceberg.Properties{table.WriteDeleteModeKey: table.WriteModeMergeOnRead}))
	tbl = must(testlake.AppendPeople(ctx, tbl, testlake.People(1, 100, 1), nil))
	before = tbl.CurrentSnapshot().SnapshotID
	var kept []testlake.Person
	for _, p := range testlake.People(1, 100, 1) {
		if p.ID%4 != 0 {
			kept = append(kept, p)
			continue
		}
		tbl = must(testlake.DeletePeople(ctx, tbl, iceberg.EqualTo(iceberg.Reference("id"), p.ID), nil))
	}
	l.tables = append(l.tables, fixtureTable{ns: ns, name: "many_posdel",
		features: []string{"position-deletes", "many-position-deletes"},
		want:     testlake.Rows(kept), earlier: before, wantEarlier: testlake.Rows(testlake.People(1, 100, 1))})
	return l
}

// readAll reads every fixture table (current and earlier snapshot) with r and
// returns, per table, what the reader could not read and why.
func checkLake(t *testing.T, r *testlake.Reader, l lake, supports func(feature string) bool) {
	t.Helper()
	for _, ft := range l.tables {
		check := func(what string, features []string, got testlake.Result, err error, want []testlake.Row) {
			t.Helper()
			var unsupported []string
			for _, f := range features {
				if !supports(f) {
					unsupported = append(unsupported, f)
				}
			}
			refuses := len(unsupported) > 0
			if err != nil {
				if refuses && errors.Is(err, testlake.ErrUnsupported) {
					t.Logf("%s %s: refused as documented: %v", r.Engine, what, err)
				} else {
					t.Errorf("%s %s: %v", r.Engine, what, err)
				}
				return
			}
			d := testlake.Diff(want, got.Rows, 5)
			switch {
			case refuses && d != "":
				t.Logf("%s %s: wrong as documented for %v: %s", r.Engine, what, unsupported, strings.SplitN(d, "\n", 2)[0])
			case refuses:
				t.Errorf("%s %s: read a table with %v right, which docs/lakehouse.md says it does not: update the docs and this test", r.Engine, what, unsupported)
			case d != "":
				t.Errorf("%s %s: %s", r.Engine, what, d)
			}
		}
		got, err := r.Read(l.spec, ft.ns, ft.name)
		check(ft.ns+"."+ft.name, ft.features, got, err, ft.want)
		got, err = r.ReadAt(l.spec, ft.ns, ft.name, ft.earlier)
		check(ft.ns+"."+ft.name+" (time travel)", ft.earlierFeat, got, err, ft.wantEarlier)
	}
}

// supports says what each reader reads, as docs/lakehouse.md ("Which reader
// reads what") states it. A reader that starts reading what it refused fails
// the test, so the table is kept true.
var supports = map[testlake.Engine]func(feature string) bool{
	// pyiceberg 0.12: "PyIceberg does not yet support equality deletes".
	testlake.PyIceberg: func(f string) bool { return f != "equality-deletes" },
	// DuckDB 1.4.4 applies equality deletes, but from about 20
	// equality-delete files on it drops live rows too (no error).
	testlake.DuckDB: func(f string) bool { return f != "many-equality-deletes" },
	testlake.Spark:  func(string) bool { return true },
}

// TestReaders writes fixture tables with iceberg-go and with Spark, in the
// embedded SQLite catalog and (when FHIRSTREAM_TEST_ICEBERG_REST names a
// server) in the REST catalog, and reads each with every engine.
func TestReaders(t *testing.T) {
	ctx := context.Background()
	// One process per engine for every subtest: Spark starts once.
	readers := map[testlake.Engine]*testlake.Reader{}
	for _, e := range testlake.Engines {
		r, err := testlake.Start(e)
		if testlake.Skippable(err) {
			t.Logf("not reading with %s: %v", e, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		readers[e] = r
	}

	type catalogCase struct {
		name string
		open func(t *testing.T) (catalog.Catalog, testlake.Catalog, string)
	}
	cases := []catalogCase{
		{"sql", func(t *testing.T) (catalog.Catalog, testlake.Catalog, string) {
			cat, spec, err := testlake.OpenSQLCatalog(ctx, "fixtures", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return cat, spec, "lake"
		}},
		{"rest", func(t *testing.T) (catalog.Catalog, testlake.Catalog, string) {
			uri := os.Getenv("FHIRSTREAM_TEST_ICEBERG_REST")
			if uri == "" {
				t.Skip("FHIRSTREAM_TEST_ICEBERG_REST not set (deploy/iceberg/iceberg-rest-local.sh start prints it)")
			}
			cat, spec, err := testlake.OpenRESTCatalog(ctx, "rest", uri)
			if err != nil {
				t.Fatal(err)
			}
			return cat, spec, uniqueNamespace(t)
		}},
	}
	for _, cc := range cases {
		t.Run(cc.name, func(t *testing.T) {
			cat, spec, ns := cc.open(t)
			l := writeFixtures(t, ctx, cat, spec, ns)
			if spark, ok := readers[testlake.Spark]; ok {
				l.tables = append(l.tables, writeWithSpark(t, ctx, spark, cat, spec, ns))
			}
			for _, e := range testlake.Engines {
				r, ok := readers[e]
				if !ok {
					continue
				}
				t.Run(string(e), func(t *testing.T) { checkLake(t, r, l, supports[e]) })
			}
		})
	}
}

// uniqueNamespace keeps runs against one long-lived REST server apart.
func uniqueNamespace(t *testing.T) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// writeWithSpark writes a table with Spark SQL alone (format v2,
// merge-on-read): an insert, an UPDATE and a DELETE, which Spark writes as a
// new data file and position deletes.
func writeWithSpark(t *testing.T, ctx context.Context, spark *testlake.Reader, cat catalog.Catalog, spec testlake.Catalog, ns string) fixtureTable {
	t.Helper()
	name := fmt.Sprintf("`%s`.`%s`.spark_written", spec.Name, ns)
	if err := spark.Exec(spec,
		fmt.Sprintf("CREATE NAMESPACE IF NOT EXISTS `%s`.`%s`", spec.Name, ns),
		"CREATE TABLE "+name+` (id BIGINT NOT NULL, name STRING, born DATE, seen TIMESTAMP_NTZ,
			at TIMESTAMP, score DOUBLE, active BOOLEAN, small INT) USING iceberg
			TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read',
			'write.update.mode'='merge-on-read', 'write.merge.mode'='merge-on-read')`,
		"INSERT INTO "+name+" VALUES "+sparkValues(testlake.People(1, 10, 1)),
	); err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.LoadTable(ctx, catalog.ToIdentifier(ns, "spark_written"))
	if err != nil {
		t.Fatal(err)
	}
	inserted := tbl.CurrentSnapshot().SnapshotID
	p := testlake.PersonAt(3, 2)
	if err := spark.Exec(spec,
		"UPDATE "+name+" SET "+sparkSet(p)+" WHERE id = 3",
		"DELETE FROM "+name+" WHERE id IN (5, 6)",
	); err != nil {
		t.Fatal(err)
	}
	want := testlake.Rows(testlake.People(1, 2, 1))
	want = append(want, p.Row())
	want = append(want, testlake.Rows(slices.Concat(testlake.People(4, 4, 1), testlake.People(7, 10, 1)))...)
	return fixtureTable{ns: ns, name: "spark_written", features: []string{"position-deletes"},
		want: want, earlier: inserted, wantEarlier: testlake.Rows(testlake.People(1, 10, 1))}
}

func sparkLiterals(p testlake.Person) []string {
	return []string{
		fmt.Sprint(p.ID),
		"'" + strings.ReplaceAll(p.Name, "'", "\\'") + "'",
		"DATE '" + p.Born.Format("2006-01-02") + "'",
		"TIMESTAMP_NTZ '" + p.Seen.Format("2006-01-02 15:04:05.000000") + "'",
		"TIMESTAMP '" + p.At.UTC().Format("2006-01-02 15:04:05.000000") + "'", // session zone is UTC
		fmt.Sprintf("CAST(%v AS DOUBLE)", p.Score),
		fmt.Sprint(p.Active),
		fmt.Sprint(p.Small),
	}
}

func sparkValues(ps []testlake.Person) string {
	var rows []string
	for _, p := range ps {
		rows = append(rows, "("+strings.Join(sparkLiterals(p), ", ")+")")
	}
	return strings.Join(rows, ", ")
}

func sparkSet(p testlake.Person) string {
	cols := []string{"id", "name", "born", "seen", "at", "score", "active", "small"}
	lits := sparkLiterals(p)
	var set []string
	for i := 1; i < len(cols); i++ {
		set = append(set, cols[i]+" = "+lits[i])
	}
	return strings.Join(set, ", ")
}
