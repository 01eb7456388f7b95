package lakehouse

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/apache/iceberg-go/table"
)

// Snapshot summary keys of sink commits (see the package doc).
const (
	// SummaryOffsetsPrefix + <consumer group> holds the offsets the table has absorbed.
	SummaryOffsetsPrefix = "fhirstream.kafka.offsets."
	// SummaryCommitID is the id of the sink batch a snapshot commits, so a commit whose
	// outcome the client did not learn (a timeout) is found in the table's history.
	SummaryCommitID = "fhirstream.kafka.commit-id"
)

// Offsets are the Kafka offsets a table has absorbed from its input topic: per
// partition, the next offset to consume.
type Offsets struct {
	Topic   string
	Offsets map[int32]int64
}

type offsetsJSON struct {
	Topic   string           `json:"topic"`
	Offsets map[string]int64 `json:"offsets"`
}

// OffsetsKey is the snapshot summary key of group's offsets.
func OffsetsKey(group string) string { return SummaryOffsetsPrefix + group }

// Encode is the summary value of o.
func (o Offsets) Encode() string {
	j := offsetsJSON{Topic: o.Topic, Offsets: make(map[string]int64, len(o.Offsets))}
	for p, off := range o.Offsets {
		j.Offsets[strconv.FormatInt(int64(p), 10)] = off
	}
	b, _ := json.Marshal(j) // strings and integers only: cannot fail
	return string(b)
}

// Clone returns a deep copy of o.
func (o Offsets) Clone() Offsets {
	return Offsets{Topic: o.Topic, Offsets: maps.Clone(o.Offsets)}
}

// DecodeOffsets parses a summary value written by Encode.
func DecodeOffsets(s string) (Offsets, error) {
	var j offsetsJSON
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return Offsets{}, fmt.Errorf("offsets summary %q: %w", s, err)
	}
	o := Offsets{Topic: j.Topic, Offsets: make(map[int32]int64, len(j.Offsets))}
	for k, v := range j.Offsets {
		p, err := strconv.ParseInt(k, 10, 32)
		if err != nil || p < 0 || v < 0 {
			return Offsets{}, fmt.Errorf("offsets summary: bad partition offset %q: %d", k, v)
		}
		o.Offsets[int32(p)] = v
	}
	return o, nil
}

// TableOffsets returns the offsets group has committed to the table: those of the newest
// snapshot in the current snapshot's ancestry that carries group's key, and that
// snapshot's id (0 and empty offsets when none does: the table has absorbed nothing of
// this group).
func TableOffsets(meta table.Metadata, group string) (Offsets, int64, error) {
	key := OffsetsKey(group)
	for _, s := range ancestry(meta) {
		if s.Summary == nil {
			continue
		}
		v, ok := s.Summary.Properties[key]
		if !ok {
			continue
		}
		o, err := DecodeOffsets(v)
		if err != nil {
			return Offsets{}, 0, fmt.Errorf("snapshot %d: %w", s.SnapshotID, err)
		}
		return o, s.SnapshotID, nil
	}
	return Offsets{Offsets: map[int32]int64{}}, 0, nil
}

// FindCommit returns the id of the snapshot in the current snapshot's ancestry that
// committed the sink batch commitID, searching back to (not including) snapshot stop
// (0: the whole ancestry).
func FindCommit(meta table.Metadata, commitID string, stop int64) (int64, bool) {
	for _, s := range ancestry(meta) {
		if stop != 0 && s.SnapshotID == stop {
			break
		}
		if s.Summary != nil && s.Summary.Properties[SummaryCommitID] == commitID {
			return s.SnapshotID, true
		}
	}
	return 0, false
}

// OffsetSnapshots returns, for every consumer group whose offsets the table records, the
// newest snapshot in the current snapshot's ancestry that carries them. Snapshot expiry
// must keep these: a sink resumes from them.
func OffsetSnapshots(meta table.Metadata) map[string]int64 {
	out := map[string]int64{}
	for _, s := range ancestry(meta) {
		if s.Summary == nil {
			continue
		}
		for k := range s.Summary.Properties {
			if g, ok := strings.CutPrefix(k, SummaryOffsetsPrefix); ok {
				if _, seen := out[g]; !seen {
					out[g] = s.SnapshotID
				}
			}
		}
	}
	return out
}

// ancestry is the current snapshot and its ancestors, newest first.
func ancestry(meta table.Metadata) []table.Snapshot {
	cur := meta.CurrentSnapshot()
	if cur == nil {
		return nil
	}
	return table.AncestorsOf(cur.SnapshotID, meta.SnapshotByID)
}
