package lakeops

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// OffsetsSummaryPrefix starts the snapshot summary keys under which a sink
// commit records, per consumer group, the Kafka offsets the table has absorbed
// (fhirstream.kafka.offsets.<group>; the value is the sink's JSON). It is the
// sink's key (internal/lakehouse.SummaryOffsetsPrefix); this package only
// needs to recognise it.
const OffsetsSummaryPrefix = "fhirstream.kafka.offsets."

// Snapshot is one entry of a table's history.
type Snapshot struct {
	ID        int64
	ParentID  int64 // 0 for the first
	Sequence  int64
	Time      time.Time
	Operation string
	// Current marks the table's current snapshot; InAncestry the snapshots
	// its state is built on (others were rolled back or belong to branches).
	Current, InAncestry bool
	// Offsets maps each consumer group to the offsets the commit recorded (the
	// sink's summary value, as written).
	Offsets map[string]string
	// Summary counts: what this snapshot added and removed, and the table's
	// totals after it. Rows are data-file rows; TotalEqualityDeletes and
	// TotalPositionDeletes say how many of them delete files still remove.
	AddedRows, DeletedRows                      int64
	AddedDataFiles, DeletedDataFiles            int64
	AddedDeleteFiles, RemovedDeleteFiles        int64
	TotalRows, TotalDataFiles, TotalDeleteFiles int64
	TotalEqualityDeletes, TotalPositionDeletes  int64
}

// History lists a table's snapshots, oldest first.
func History(ctx context.Context, cat catalog.Catalog, id table.Identifier) ([]Snapshot, error) {
	tbl, err := cat.LoadTable(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", Name(id), err)
	}
	return history(tbl.Metadata()), nil
}

func history(meta table.Metadata) []Snapshot {
	ancestry := map[int64]bool{}
	var current int64
	if cur := meta.CurrentSnapshot(); cur != nil {
		current = cur.SnapshotID
		for _, s := range table.AncestorsOf(cur.SnapshotID, meta.SnapshotByID) {
			ancestry[s.SnapshotID] = true
		}
	}
	var out []Snapshot
	for _, s := range meta.Snapshots() {
		e := Snapshot{
			ID:         s.SnapshotID,
			Sequence:   s.SequenceNumber,
			Time:       time.UnixMilli(s.TimestampMs).UTC(),
			Current:    s.SnapshotID == current,
			InAncestry: ancestry[s.SnapshotID],
		}
		if s.ParentSnapshotID != nil {
			e.ParentID = *s.ParentSnapshotID
		}
		if s.Summary != nil {
			e.Operation = string(s.Summary.Operation)
			p := s.Summary.Properties
			n := func(k string) int64 {
				v, _ := strconv.ParseInt(p[k], 10, 64)
				return v
			}
			e.AddedRows, e.DeletedRows = n("added-records"), n("deleted-records")
			e.AddedDataFiles, e.DeletedDataFiles = n("added-data-files"), n("deleted-data-files")
			e.AddedDeleteFiles, e.RemovedDeleteFiles = n("added-delete-files"), n("removed-delete-files")
			e.TotalRows, e.TotalDataFiles, e.TotalDeleteFiles = n("total-records"), n("total-data-files"), n("total-delete-files")
			e.TotalEqualityDeletes, e.TotalPositionDeletes = n("total-equality-deletes"), n("total-position-deletes")
			for k, v := range p {
				if g, ok := strings.CutPrefix(k, OffsetsSummaryPrefix); ok {
					if e.Offsets == nil {
						e.Offsets = map[string]string{}
					}
					e.Offsets[g] = v
				}
			}
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b Snapshot) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return int(a.Sequence - b.Sequence)
	})
	return out
}

// Groups lists the consumer groups of a snapshot's offsets, sorted.
func (s Snapshot) Groups() []string {
	return slices.Sorted(maps.Keys(s.Offsets))
}

// offsetSnapshots returns, per consumer group, the newest snapshot in the
// current snapshot's ancestry whose summary carries the group's offsets: the
// snapshot the group's sink resumes from.
func offsetSnapshots(meta table.Metadata) map[string]int64 {
	out := map[string]int64{}
	cur := meta.CurrentSnapshot()
	if cur == nil {
		return out
	}
	for _, s := range table.AncestorsOf(cur.SnapshotID, meta.SnapshotByID) {
		if s.Summary == nil {
			continue
		}
		for k := range s.Summary.Properties {
			if g, ok := strings.CutPrefix(k, OffsetsSummaryPrefix); ok {
				if _, seen := out[g]; !seen {
					out[g] = s.SnapshotID
				}
			}
		}
	}
	return out
}
