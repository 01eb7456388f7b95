package sink

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/internal/testwait"
	"github.com/fhirstream/fhirstream/schemas"
)

// loadPersons produces n person rows to a fresh 3-partition topic and returns its name
// and end offsets.
func loadPersons(t *testing.T, c *testkafka.Cluster, n int) (string, map[int32]int64) {
	t.Helper()
	topics := schemas.MustTopics(c.Prefix)
	topic := topics.OMOP("person")
	c.CreateTopics(t, 3, topic, topics.DLQ())
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, personRecord(t, codec, topics, fmt.Sprintf("Patient/p%d", i), int64(i+1), 1950, false, false))
	}
	if err := c.Client(t).ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return topic, endOffsets(t, c, topic)
}

// groupReports reports whether the group's committed offsets of topic are ends.
func groupReports(t *testing.T, adm *kadm.Client, group, topic string, ends map[int32]int64) bool {
	t.Helper()
	got, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		o, ok := got.Lookup(topic, p)
		if !ok || o.At != end {
			return false
		}
	}
	return true
}

// TestIntegrationSinkReportsWhatTheTablesHold: a group whose committed offsets lag the
// tables (a sink stopped between its table commit and its group commit) is put right by
// the next sink to hold the partitions, with no new records and no new table commit.
func TestIntegrationSinkReportsWhatTheTablesHold(t *testing.T) {
	c := testkafka.New(t)
	topic, ends := loadPersons(t, c, 90)
	lake := lakehouse.Config{Out: t.TempDir()}
	cfg := Config{Layer: LayerOMOP, Catalog: lake, Group: c.Group("sink"), FlushInterval: 200 * time.Millisecond}
	_, stop := startSink(t, c, cfg)
	cat := openLake(t, lake)
	l, _ := lakehouse.OMOPLayout("person")
	before := waitAbsorbed(t, cat, l, cfg.Group, ends).CurrentSnapshot().SnapshotID
	adm := c.Admin(t)
	testwait.Until(t, 30*time.Second, "the group to report the end offsets", func() bool {
		return groupReports(t, adm, cfg.Group, topic, ends)
	})
	stop()

	// Rewind the report to the log start, as if the group commits had never happened.
	rewind := kadm.Offsets{}
	for p := range ends {
		rewind.AddOffset(topic, p, 0, -1)
	}
	if resp, err := adm.CommitOffsets(context.Background(), cfg.Group, rewind); err != nil || resp.Error() != nil {
		t.Fatalf("rewind the group's offsets: %v %v", err, resp.Error())
	}
	if groupReports(t, adm, cfg.Group, topic, ends) {
		t.Fatal("the rewind did not take")
	}

	startSink(t, c, cfg)
	testwait.Until(t, 60*time.Second, "the restarted sink to report the table's offsets", func() bool {
		return groupReports(t, adm, cfg.Group, topic, ends)
	})
	tbl, err := cat.LoadTable(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if after := tbl.CurrentSnapshot().SnapshotID; after != before {
		t.Errorf("putting the report right committed snapshot %d over %d: it should not touch the table", after, before)
	}
}

// TestIntegrationSinkReportsAgainAfterAFailedCommit: group commits that fail for good (an
// error the client does not retry, as a broker down longer than the client's retries
// gives) leave the report behind; once the broker accepts them again, the idle sink sends
// the owed offsets without waiting for new records.
func TestIntegrationSinkReportsAgainAfterAFailedCommit(t *testing.T) {
	c := testkafka.New(t)
	if c.Fake == nil {
		t.Skip("needs kfake's request control to refuse group commits")
	}
	var refuse atomic.Bool
	var refused atomic.Int64
	refuse.Store(true)
	c.Fake.ControlKey(int16(kmsg.OffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		req := kr.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.UnknownServerError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	topic, ends := loadPersons(t, c, 90)
	lake := lakehouse.Config{Out: t.TempDir()}
	cfg := Config{Layer: LayerOMOP, Catalog: lake, Group: c.Group("sink"), FlushInterval: 200 * time.Millisecond}
	startSink(t, c, cfg)
	cat := openLake(t, lake)
	l, _ := lakehouse.OMOPLayout("person")
	waitAbsorbed(t, cat, l, cfg.Group, ends)
	adm := c.Admin(t)
	testwait.Until(t, 30*time.Second, "a refused group commit", func() bool { return refused.Load() > 0 })
	if groupReports(t, adm, cfg.Group, topic, ends) {
		t.Fatal("the group reports the end offsets although every commit was refused")
	}
	refuse.Store(false)
	testwait.Until(t, 60*time.Second, "the idle sink to report the owed offsets", func() bool {
		return groupReports(t, adm, cfg.Group, topic, ends)
	})
}
