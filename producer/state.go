package producer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// Keys of the state topic:
//
//	export/<identity>      exportState: the export in progress or last completed
//	since/<sinceIdentity>  sinceState: transactionTime of the last complete export
//	file/<export>/<file>   checkpoint: how far a file was published
type exportState struct {
	ExportID        string    `json:"export_id"` // status URL, or local run id
	StatusURL       string    `json:"status_url,omitempty"`
	TransactionTime time.Time `json:"transaction_time,omitzero"`
	Complete        bool      `json:"complete"`
	Updated         time.Time `json:"updated"`
}

type sinceState struct {
	TransactionTime time.Time `json:"transaction_time"`
}

// checkpoint is the committed progress of one file.
type checkpoint struct {
	URL       string `json:"url"`
	Line      int64  `json:"line"`   // physical lines consumed (1-based number of the last)
	Offset    int64  `json:"offset"` // identity bytes consumed, at a line boundary
	Read      int64  `json:"read"`   // non-empty lines read
	Published int64  `json:"published"`
	Dead      int64  `json:"dead"`
	Oversize  int64  `json:"oversize"`
	Done      bool   `json:"done"`
	// Duplicates counts deletions of a deleted file already listed before (overlapping
	// deleted files), not published again.
	Duplicates int64 `json:"duplicates,omitempty"`
	// Organized output (organizeOutputBy): header lines read and not published, and the
	// references of the file's first and last headers, which tie a file to the one its
	// last block continues in (continuesInFile) across restarts.
	Headers     int64  `json:"headers,omitempty"`
	FirstHeader string `json:"firstHeader,omitempty"`
	LastHeader  string `json:"lastHeader,omitempty"`
}

func hashID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// identities returns the export identity (what makes "the same command") and the
// since-identity (the same request without its time window).
func (c *Config) identities() (export, since string) {
	r := c.Export
	if len(c.From) > 0 {
		files := append([]string(nil), c.From...)
		sort.Strings(files)
		id := hashID(append([]string{"local"}, files...)...)
		return id, id
	}
	base := []string{strings.TrimRight(r.Base, "/"), string(r.Level), r.GroupID, strings.Join(r.Types, ","),
		strings.Join(r.TypeFilters, "&"), strings.Join(r.Elements, ","), strings.Join(r.Patients, ","),
		strings.Join(r.IncludeAssociatedData, ","), r.OrganizeOutputBy, r.OutputFormat}
	since = hashID(base...)
	window := "auto"
	if !c.SinceAuto {
		window = r.Since.UTC().Format(time.RFC3339Nano)
	}
	export = hashID(append(base, window, r.Until.UTC().Format(time.RFC3339Nano), c.Resume)...)
	return export, since
}

func fileStateKey(exportID, file string) string { return "file/" + hashID(exportID) + "/" + file }

// loadState reads the committed state topic to its end.
func loadState(ctx context.Context, kc kafkaclient.Config, topic string) (map[string][]byte, error) {
	admCl, err := kc.NewClient()
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("state topic %s: list offsets: %w", topic, err)
	}
	remaining := map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = o.Err
			return
		}
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	if lerr != nil {
		return nil, fmt.Errorf("state topic %s: %w", topic, lerr)
	}
	state := map[string][]byte{}
	err = kafkaclient.ReadPartitions(ctx, kc, nil, map[string]map[int32]int64{topic: remaining}, func(r *kgo.Record) (bool, error) {
		if !r.Attrs.IsControl() {
			if r.Value == nil {
				delete(state, string(r.Key))
			} else {
				state[string(r.Key)] = r.Value
			}
		}
		return true, nil
	}, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, fmt.Errorf("state topic %s: %w", topic, err)
	}
	return state, nil
}

func getJSON[T any](state map[string][]byte, key string) (T, bool) {
	var v T
	b, ok := state[key]
	if !ok {
		return v, false
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false
	}
	return v, true
}

func stateRecord(topic, key string, v any) *kgo.Record {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
}
