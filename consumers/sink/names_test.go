package sink

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestNamesRoundTrip(t *testing.T) {
	id := fileID{Topic: "omop.person", Partition: 7, Start: 12345}
	if got, want := id.dataName(), "omop.person+7+12345.parquet"; got != want {
		t.Fatalf("dataName = %q, want %q", got, want)
	}
	p, ok := parseName(id.dataName())
	if !ok || p.Pending || p.fileID != id {
		t.Fatalf("parse data name: %+v %v", p, ok)
	}
	p, ok = parseName(id.pendingName("abc123"))
	if !ok || !p.Pending || p.Batch != "abc123" || p.fileID != id {
		t.Fatalf("parse pending name: %+v %v", p, ok)
	}
	if got := partitionDir("omop/person", time.Date(2024, 3, 1, 23, 30, 0, 0, time.FixedZone("x", -5*3600))); got != "omop/person/date=2024-03-02" {
		t.Fatalf("partitionDir uses UTC day, got %s", got)
	}
}

func TestParseNameRejectsForeignFiles(t *testing.T) {
	for _, name := range []string{
		"_schema.parquet", "notes.txt", "a+b+c.parquet", "t+1.parquet", "t+-1+5.parquet",
		"t+1+-5.parquet", ".t+1+5.pending", ".t+1+5+.pending", "+1+5.parquet", ".t+1+5+b.parquet",
		"t+1+5.parquet.tmp", "t+1+5.parquet.XY.tmp", "t+1+5.parquet.1a.tmp.1b.tmp", "notes.1a.tmp",
	} {
		if p, ok := parseName(name); ok {
			t.Errorf("parseName(%q) = %+v, want not ours", name, p)
		}
	}
}

func TestClassify(t *testing.T) {
	data := func(start int64) parsedName { return parsedName{fileID: fileID{"t", 0, start}} }
	pending := func(start int64, batch string) parsedName {
		return parsedName{fileID: fileID{"t", 0, start}, Pending: true, Batch: batch}
	}
	cases := []struct {
		name      string
		file      parsedName
		committed int64
		batch     string
		want      action
	}{
		{"committed data", data(0), 10, "b1", keep},
		{"data just before commit", data(9), 10, "b1", keep},
		{"data at committed offset is a leftover", data(10), 10, "b1", remove},
		{"data after commit is a leftover", data(15), 10, "b1", remove},
		{"no commit: everything is a leftover", data(0), -1, "", remove},
		{"pending of committed batch is published", pending(5, "b1"), 10, "b1", publish},
		{"pending of another batch is removed", pending(5, "b0"), 10, "b1", remove},
		{"pending at or after commit is removed", pending(10, "b1"), 10, "b1", remove},
		{"pending without commit metadata is removed", pending(5, "b1"), 10, "", remove},
		{"pending with no commit is removed", pending(0, "b1"), -1, "", remove},
	}
	for _, c := range cases {
		if got := classify(c.file, c.committed, c.batch); got != c.want {
			t.Errorf("%s: classify = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCommitMetadata(t *testing.T) {
	if got := batchFromMetadata(commitMetadata("feed")); got != "feed" {
		t.Fatalf("round trip gave %q", got)
	}
	if got := batchFromMetadata("member-123"); got != "" {
		t.Fatalf("foreign metadata gave %q", got)
	}
}

// TestRecoverPartition lays out the files a crash can leave and checks recovery keeps
// exactly the committed ones, only touching the partition it recovers.
func TestRecoverPartition(t *testing.T) {
	for name, st := range storages(t) {
		t.Run(name, func(t *testing.T) { testRecoverPartition(t, st) })
	}
}

func testRecoverPartition(t *testing.T, st Storage) {
	ctx := context.Background()
	write := func(p string) { writeStored(t, st, p, p) }
	ds := "omop/person"
	d1, d2 := ds+"/date=2024-01-01", ds+"/date=2024-01-02"
	write(d1 + "/omop.person+0+0.parquet")          // committed, batch b0
	write(d2 + "/omop.person+0+40.parquet")         // committed, batch b1 (published)
	write(d1 + "/.omop.person+0+50+b2.pending")     // committed batch b2, crash before rename
	write(d2 + "/.omop.person+0+60+b2.pending")     // same batch, other day
	write(d1 + "/omop.person+0+100.parquet")        // published by an uncommitted batch (offset reset)
	write(d2 + "/.omop.person+0+100+b3.pending")    // uncommitted batch
	write(d1 + "/.omop.person+0+70+zombie.pending") // a zombie's batch, never committed
	write(d1 + "/omop.person+1+500.parquet")        // another partition: untouched
	write(d1 + "/.omop.person+1+600+b9.pending")    // another partition: untouched
	write(d1 + "/_schema.parquet")                  // not a data file
	// Temporary files of uploads to a file:// lake that a crash abandoned.
	write(d1 + "/.omop.person+0+80+b3.pending.18eb74839fa3741f.tmp")
	write(d1 + "/omop.person+0+50.parquet.18eb74839fa37420.tmp")

	res, err := recoverPartition(ctx, st, ds, "omop.person", 0, 100, "b2")
	if err != nil {
		t.Fatal(err)
	}
	if res.published != 2 || res.removed != 5 {
		t.Fatalf("recovery = %+v, want 2 published, 5 removed", res)
	}
	got, err := st.List(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{
		d1 + "/.omop.person+1+600+b9.pending",
		d1 + "/_schema.parquet",
		d1 + "/omop.person+0+0.parquet",
		d1 + "/omop.person+0+50.parquet",
		d1 + "/omop.person+1+500.parquet",
		d2 + "/omop.person+0+40.parquet",
		d2 + "/omop.person+0+60.parquet",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after recovery:\n got %q\nwant %q", got, want)
	}
	// The published file has the pending file's content.
	b, err := readStored(t, st, d1+"/omop.person+0+50.parquet")
	if err != nil || string(b) != d1+"/.omop.person+0+50+b2.pending" {
		t.Fatalf("published content %q, %v", b, err)
	}
	// Recovery is idempotent: a crash during it and a second run change nothing more.
	res, err = recoverPartition(ctx, st, ds, "omop.person", 0, 100, "b2")
	if err != nil || res != (recovery{}) {
		t.Fatalf("second recovery = %+v, %v", res, err)
	}
}
