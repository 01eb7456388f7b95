package sink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/lakeops"
)

// BenchmarkCommitBySnapshotsKept times one table commit of a sink batch (reload the
// table, then commitOnce: a RowDelta of one data file with the sink's summary
// properties) on a table that already keeps a number of snapshots, and on one whose
// 1,000 snapshots were expired to 10 (lakeops.Expire, as `lake expire` does). Every
// snapshot kept is about 1 KB of metadata that each commit reads and rewrites
// (docs/capacity.md, "Lake maintenance"). Building the tables takes about ten minutes:
//
//	go test -run '^$' -bench CommitBySnapshotsKept -benchtime 20x ./consumers/sink
func BenchmarkCommitBySnapshotsKept(b *testing.B) {
	for _, c := range []struct {
		kept, expireTo int
	}{{1, 0}, {100, 0}, {1000, 0}, {2000, 0}, {1000, 10}} {
		name := fmt.Sprintf("kept=%d", c.kept)
		if c.expireTo > 0 {
			name += fmt.Sprintf(",expired-to=%d", c.expireTo)
		}
		b.Run(name, func(b *testing.B) { benchCommitBySnapshotsKept(b, c.kept, c.expireTo) })
	}
}

func benchCommitBySnapshotsKept(b *testing.B, kept, expireTo int) {
	ctx := context.Background()
	lake, err := lakehouse.Open(ctx, lakehouse.Config{Out: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer lake.Close()
	l, _ := lakehouse.OMOPLayout("location")
	tbl, err := lake.EnsureTable(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	fsys, err := tbl.FS(ctx)
	if err != nil {
		b.Fatal(err)
	}
	wfs := fsys.(iceio.WriteFileIO)
	loc, err := tbl.LocationProvider()
	if err != nil {
		b.Fatal(err)
	}
	const group = "fhirstream-sink-omop"
	offsets := lakehouse.Offsets{Topic: "fhir.omop.location", Offsets: map[int32]int64{}}
	s := &Sink{}
	n := 0
	// commit commits the next batch's file (a file of no rows, as for a batch that was
	// all dead letters: the metadata, not the data, is what grows) with the partition
	// offsets advanced, timing only the reload and the commit.
	commit := func() {
		b.StopTimer()
		n++
		df, err := l.WriteData(wfs, loc.NewDataLocation(fmt.Sprintf("batch-%d.parquet", n)), nil, lakehouse.FileOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for p := range int32(6) {
			offsets.Offsets[p] = int64(n * 1000)
		}
		props := iceberg.Properties{lakehouse.OffsetsKey(group): offsets.Encode(), lakehouse.SummaryCommitID: fmt.Sprintf("batch-%d/omop.location", n)}
		b.StartTimer()
		cur, err := lake.LoadTable(ctx, l)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.commitOnce(ctx, cur, df, nil, props); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for range kept {
		commit()
	}
	if expireTo > 0 {
		time.Sleep(10 * time.Millisecond) // every snapshot so far is older than OlderThan
		res, err := lakeops.Expire(ctx, lake.Catalog, lake.Ident(l), lakeops.ExpireOptions{OlderThan: time.Millisecond, RetainLast: expireTo})
		if err != nil {
			b.Fatal(err)
		}
		if res.SnapshotsAfter != expireTo {
			b.Fatalf("expired %d snapshots to %d, want %d", res.SnapshotsBefore, res.SnapshotsAfter, expireTo)
		}
	}
	b.ResetTimer()
	for range b.N {
		commit()
	}
}
