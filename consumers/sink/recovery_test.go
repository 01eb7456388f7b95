package sink

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestRecoveryUsesOffsetsConsumptionStartsFrom makes every committed-offset answer other
// than the consuming client's own fetch disagree with the group's real commits, the two
// ways the kill test once lost an early batch of three tables without a word: a topic
// named only by an id the client cannot resolve (so the partition reads as "no commit"),
// and an older commit. Recovery that trusted such an answer removed committed, published
// files while consumption resumed after them. Recovery must reason about the offsets the
// client consumes from, so the lake keeps every row exactly once, and it must still
// publish the pending file of the committed batch named in the commit's metadata. kfake
// only: it needs to rewrite the broker's answers.
func TestRecoveryUsesOffsetsConsumptionStartsFrom(t *testing.T) {
	cases := []struct {
		name string
		// answer returns the partitions of the distorted answer for topic (id); nil
		// leaves the broker's answers alone.
		answer func(id [16]byte, committed map[int32]int64) kmsg.OffsetFetchResponseGroupTopic
	}{
		{"answers as they are", nil},
		{"topic id the client cannot name", func(_ [16]byte, committed map[int32]int64) kmsg.OffsetFetchResponseGroupTopic {
			t := kmsg.NewOffsetFetchResponseGroupTopic()
			t.TopicID = [16]byte{0xde, 0xad, 0xbe, 0xef}
			for p, off := range committed {
				rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				rp.Partition, rp.Offset = p, off
				t.Partitions = append(t.Partitions, rp)
			}
			return t
		}},
		{"older commit", func(id [16]byte, committed map[int32]int64) kmsg.OffsetFetchResponseGroupTopic {
			t := kmsg.NewOffsetFetchResponseGroupTopic()
			t.TopicID = id
			for p := range committed {
				rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				rp.Partition, rp.Offset = p, 0
				t.Partitions = append(t.Partitions, rp)
			}
			return t
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testkafka.New(t)
			if c.Fake == nil {
				t.Skip("needs kfake to rewrite offset answers")
			}
			topics := schemas.MustTopics(c.Prefix)
			topic := topics.OMOP("person")
			c.CreateTopics(t, 3, topic, topics.DLQ())
			codec, err := schemas.NewCodecs()
			if err != nil {
				t.Fatal(err)
			}
			day := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
			const first, more = 60, 30
			recs := omopRecords(t, codec, topics, "person", first+more, first+more, day)
			cl := c.Client(t)
			produce(t, cl, recs[:first])
			lake := newDirLake(t)
			cfg := lake.config(Config{Layer: LayerOMOP, Group: c.Group("sink"), FlushRows: 1000, FlushInterval: 100 * time.Millisecond})

			s, stop := startSink(t, c, cfg)
			waitFor(t, 30*time.Second, "the first rows committed", func() bool { return s.Stats().TotalRows() == first })
			if err := stop(); err != nil {
				t.Fatal(err)
			}

			adm := c.Admin(t)
			committed := map[int32]int64{}
			offs, err := adm.FetchOffsets(context.Background(), cfg.Group)
			if err != nil {
				t.Fatal(err)
			}
			for p, o := range offs[topic] {
				committed[p] = o.At
			}
			// Undo the publication of partition 0's last file, as a kill between commit and
			// rename leaves it: recovery must publish it, from the commit's batch id.
			dir := filepath.Join(lake.localDir(t), "omop", "person", "date=2024-06-01")
			var last parsedName
			for _, f := range lakeFiles(t, dir) {
				if p, ok := parseName(filepath.Base(f)); ok && p.Topic == topic && p.Partition == 0 && p.Start >= last.Start {
					last = p
				}
			}
			batch := batchFromMetadata(offs[topic][0].Metadata)
			if last.Topic == "" || batch == "" {
				t.Fatalf("no file or no batch id (%q) for partition 0 after the first run", batch)
			}
			if err := os.Rename(filepath.Join(dir, last.dataName()), filepath.Join(dir, last.pendingName(batch))); err != nil {
				t.Fatal(err)
			}
			details, err := adm.ListTopics(context.Background(), topic)
			if err != nil {
				t.Fatal(err)
			}
			id := [16]byte(details[topic].ID)
			c.Fake.ControlKey(int16(kmsg.OffsetFetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
				if tc.answer == nil {
					return nil, nil, false
				}
				c.Fake.KeepControl()
				req := kreq.(*kmsg.OffsetFetchRequest)
				if req.RequireStable || req.Version < 10 {
					return nil, nil, false // the consuming client's fetch: the real answer
				}
				resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
				resp.Version = req.Version
				g := kmsg.NewOffsetFetchResponseGroup()
				g.Group = cfg.Group
				g.Topics = append(g.Topics, tc.answer(id, committed))
				resp.Groups = append(resp.Groups, g)
				return resp, nil, true
			})

			produce(t, cl, recs[first:])
			s2, stop2 := startSink(t, c, cfg)
			waitFor(t, 30*time.Second, "the new rows committed", func() bool { return s2.Stats().TotalRows() == more })
			if err := stop2(); err != nil {
				t.Fatal(err)
			}
			ids := map[int64]int{}
			rows := 0
			for _, f := range lakeFiles(t, filepath.Join(lake.localDir(t), "omop", "person")) {
				_, rs := readParquet(t, f)
				for _, r := range rs {
					ids[r["person_id"].Int64()]++
					rows++
				}
			}
			if n := s2.Stats().Republished; n != 1 {
				t.Errorf("recovery published %d pending files, want 1", n)
			}
			if rows != first+more || len(ids) != first+more {
				t.Fatalf("lake holds %d person rows, %d distinct, want %d of each (stats %+v)", rows, len(ids), first+more, s2.Stats())
			}
		})
	}
}

// TestPublishRefusesVanishedPendingFile: a pending file of a committed batch that is gone
// is an error unless its final file is there (published by the partition's next owner).
func TestPublishRefusesVanishedPendingFile(t *testing.T) {
	ctx := context.Background()
	st, err := NewLocalStorage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := newBatch()
	id := fileID{Topic: "p.omop.person", Partition: 1, Start: 40}
	dir := partitionDir("omop/person", time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC))
	f := &openFile{id: id, dir: dir, pending: dir + "/" + id.pendingName(b.id), final: dir + "/" + id.dataName(), rows: 3}
	b.order = append(b.order, f)
	b.parts[topicPartition{id.Topic, id.Partition}] = &partRange{first: 40, last: 49, rows: 3}
	write := func(p string) {
		w, err := st.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("rows")); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}

	// Neither the pending nor the final file: committed rows are missing from the lake.
	if err := b.publish(ctx, st); !errors.Is(err, errVanished) {
		t.Fatalf("publish without the pending file: %v, want errVanished", err)
	}
	// The next owner's recovery published it: same outcome as publishing it ourselves.
	write(f.final)
	if err := b.publish(ctx, st); err != nil {
		t.Fatalf("publish of a file already published: %v", err)
	}
	// The ordinary case.
	write(f.pending)
	if err := b.publish(ctx, st); err != nil {
		t.Fatal(err)
	}
	files, err := st.List(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != f.final {
		t.Fatalf("files after publish: %v, want only %s", files, f.final)
	}
}
