package sink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/lakeops"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationSinkDeadLetterOnlyBatch: a batch whose records for a table are all
// dead-lettered still moves the table's offsets, so the table's next commit goes through
// its fence: no session restart, no dead letter sent twice, every good row in the table.
func TestIntegrationSinkDeadLetterOnlyBatch(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	topic := topics.OMOP("person")
	c.CreateTopics(t, 3, topic, topics.DLQ())
	cl := c.Client(t)
	const bad, good = 6, 30
	var badRecs []*kgo.Record
	for i := range bad {
		badRecs = append(badRecs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("Bad/%d", i)), Value: []byte("\xc3\x01 not an avro record")})
	}
	if err := cl.ProduceSync(context.Background(), badRecs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lake := lakehouse.Config{Out: t.TempDir()}
	cfg := Config{Layer: LayerOMOP, Catalog: lake, Group: c.Group("sink"), FlushInterval: 200 * time.Millisecond}
	s, stop := startSink(t, c, cfg)
	cat := openLake(t, lake)
	l, _ := lakehouse.OMOPLayout("person")
	waitAbsorbed(t, cat, l, cfg.Group, endOffsets(t, c, topic))

	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	var goodRecs []*kgo.Record
	for i := range good {
		goodRecs = append(goodRecs, personRecord(t, codec, topics, fmt.Sprintf("Patient/p%d", i), int64(i+1), 1960, false, false))
	}
	if err := cl.ProduceSync(context.Background(), goodRecs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tbl := waitAbsorbed(t, cat, l, cfg.Group, endOffsets(t, c, topic))
	stop()
	if got := len(scanPersons(t, tbl)); got != good {
		t.Errorf("the table holds %d rows, want %d", got, good)
	}
	if st := s.Stats(); st.Restarts != 0 || st.Fenced != 0 {
		t.Errorf("%d session restarts and %d fenced commits, want none", st.Restarts, st.Fenced)
	}
	if n := len(c.ReadAll(t, topics.DLQ())); n != bad {
		t.Errorf("%d dead letters, want %d (each bad record once)", n, bad)
	}

	// The dead-letter-only batch left a data file of no rows; compaction folds it away.
	if n := emptyDataFiles(t, tbl); n == 0 {
		t.Error("no data file of zero rows: the dead-letter-only batch did not commit")
	}
	if _, err := lakeops.Compact(context.Background(), cat.Catalog, tbl.Identifier(), lakeops.CompactOptions{}); err != nil {
		t.Fatal(err)
	}
	tbl, err = cat.LoadTable(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if n := emptyDataFiles(t, tbl); n != 0 {
		t.Errorf("%d data files of zero rows after compaction, want none", n)
	}
	if got := len(scanPersons(t, tbl)); got != good {
		t.Errorf("after compaction the table holds %d rows, want %d", got, good)
	}
}

// emptyDataFiles counts the live data files of tbl that hold no rows.
func emptyDataFiles(t *testing.T, tbl *table.Table) int {
	t.Helper()
	data, _, err := lakehouse.LiveFiles(context.Background(), tbl)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, df := range data {
		if df.Count() == 0 {
			n++
		}
	}
	return n
}
