package sink

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// File names. A data file is named after the Kafka partition its rows came from and the
// offset of its first row:
//
//	<dataset>/date=YYYY-MM-DD/<topic>+<partition>+<startOffset>.parquet
//
// and, before it is published, it is written as a pending file beside it, named also after
// the batch that wrote it:
//
//	<dataset>/date=YYYY-MM-DD/.<topic>+<partition>+<startOffset>+<batch>.pending
//
// Kafka topic names cannot contain '+', so the parts split unambiguously. The leading dot
// and the suffix keep pending files out of every reader's "*.parquet" glob (DuckDB, Spark
// and Hive also skip names starting with '.' or '_').
const (
	dataSuffix    = ".parquet"
	pendingPrefix = "."
	pendingSuffix = ".pending"
	datePrefix    = "date="
	dateLayout    = "2006-01-02"
	tempSuffix    = ".tmp"
)

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// fileID identifies a data file: its rows are records of one partition of one topic,
// starting at offset Start.
type fileID struct {
	Topic     string
	Partition int32
	Start     int64
}

func (f fileID) base() string {
	return f.Topic + "+" + strconv.FormatInt(int64(f.Partition), 10) + "+" + strconv.FormatInt(f.Start, 10)
}

// dataName is the published file name.
func (f fileID) dataName() string { return f.base() + dataSuffix }

// pendingName is the name of the file before publication by batch.
func (f fileID) pendingName(batch string) string {
	return pendingPrefix + f.base() + "+" + batch + pendingSuffix
}

// partitionDir is the directory of a dataset's rows for one day (UTC).
func partitionDir(dataset string, day time.Time) string {
	return path.Join(dataset, datePrefix+day.UTC().Format(dateLayout))
}

// parsedName is what a file name in a dataset directory says about the file.
type parsedName struct {
	fileID
	Pending bool
	Batch   string // pending files only
	// Temp marks the temporary file of an upload to a file:// lake (gocloud's fileblob
	// writes "<name>.<hex>.tmp" beside the object and renames it when the upload
	// completes). One that is still there at recovery was abandoned by a crash, or
	// belongs to a member that no longer owns the partition: it is removed.
	Temp bool
}

// parseName reads a base file name. ok is false for names this package did not write,
// which recovery leaves alone.
func parseName(name string) (parsedName, bool) {
	if inner, ok := strings.CutSuffix(name, tempSuffix); ok {
		if i := strings.LastIndexByte(inner, '.'); i > 0 && isHex(inner[i+1:]) {
			p, ok := parseName(inner[:i])
			if ok && !p.Temp {
				p.Temp = true
				return p, true
			}
		}
		return parsedName{}, false
	}
	var p parsedName
	rest := name
	switch {
	case strings.HasPrefix(name, pendingPrefix) && strings.HasSuffix(name, pendingSuffix):
		p.Pending = true
		rest = strings.TrimSuffix(strings.TrimPrefix(name, pendingPrefix), pendingSuffix)
	case strings.HasSuffix(name, dataSuffix) && !strings.HasPrefix(name, pendingPrefix):
		rest = strings.TrimSuffix(name, dataSuffix)
	default:
		return p, false
	}
	parts := strings.Split(rest, "+")
	want := 3
	if p.Pending {
		want = 4
	}
	if len(parts) != want || parts[0] == "" {
		return p, false
	}
	part, err := strconv.ParseInt(parts[1], 10, 32)
	if err != nil || part < 0 {
		return p, false
	}
	start, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || start < 0 {
		return p, false
	}
	p.Topic, p.Partition, p.Start = parts[0], int32(part), start
	if p.Pending {
		if parts[3] == "" {
			return p, false
		}
		p.Batch = parts[3]
	}
	return p, true
}

// Commit metadata: the batch id is stored with each committed offset, so that recovery can
// tell the pending files of the committed batch (to publish) from those of a batch whose
// commit never happened (to delete).
const commitMetaPrefix = "fhirstream-sink/1 batch="

func commitMetadata(batch string) string { return commitMetaPrefix + batch }

func batchFromMetadata(meta string) string {
	b, ok := strings.CutPrefix(meta, commitMetaPrefix)
	if !ok {
		return ""
	}
	return b
}

// action is what recovery does with a file of a newly assigned partition.
type action int

const (
	keep    action = iota // committed data
	remove                // leftover of a batch whose offsets were never committed
	publish               // pending file of the committed batch: finish its publication
)

func (a action) String() string {
	switch a {
	case keep:
		return "keep"
	case remove:
		return "remove"
	case publish:
		return "publish"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// classify decides the fate of a file of a partition whose committed offset is committed
// (-1 when the group has none) with commit metadata naming committedBatch. The reasoning
// is in the package doc; in short:
//
//   - a file whose first row is at or after the committed offset holds rows the group has
//     not committed, so they will be consumed and written again: remove it;
//   - a pending file of the batch the committed offset belongs to was covered by that
//     commit but the writer stopped before publishing it: publish it;
//   - any other pending file belongs to a batch whose commit failed or never happened:
//     remove it;
//   - a published file starting before the committed offset is committed data: keep it.
//   - an upload's temporary file is never data: remove it.
func classify(p parsedName, committed int64, committedBatch string) action {
	if p.Temp || committed < 0 || p.Start >= committed {
		return remove
	}
	if p.Pending {
		if committedBatch != "" && p.Batch == committedBatch {
			return publish
		}
		return remove
	}
	return keep
}
