package sink

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/sink/rows"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// personRecord encodes one omop.person row of key with the given person_id and year of
// birth; deleted makes it a retraction row.
func personRecord(t testing.TB, codec *schemas.Codec, topics schemas.Topics, key string, id int64, year int32, deleted, known bool) *kgo.Record {
	t.Helper()
	row := map[string]any{
		"person_id": id, "gender_concept_id": int32(8507), "year_of_birth": year, "race_concept_id": int32(0),
		"ethnicity_concept_id": int32(0), "birth_datetime": time.Date(int(year), 2, 3, 4, 5, 6, 0, time.UTC),
		schemas.ColFHIRKey: key, schemas.ColFHIRVersion: fmt.Sprint(year), schemas.ColFHIRComponent: int32(0),
		schemas.ColFHIRDeleted: deleted, schemas.ColFHIRReplaces: true,
	}
	v, err := codec.Encode(context.Background(), "person", row)
	if err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{Topic: topics.OMOP("person"), Key: []byte(key), Value: v}
	if known {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: rows.HeaderPreviousVersion, Value: []byte("1")})
	}
	return r
}

// startSink runs a sink until the test ends (or stop is called) and returns it.
func startSink(t *testing.T, c *testkafka.Cluster, cfg Config) (s *Sink, stop func()) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := New(context.Background(), c.Config(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sink: %v", err)
		}
	}
	t.Cleanup(stop)
	return s, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitAbsorbed waits until the table of l has absorbed the topic up to its end offsets.
func waitAbsorbed(t *testing.T, cat *lakehouse.Lake, l *lakehouse.Layout, group string, ends map[int32]int64) *table.Table {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		tbl, err := cat.LoadTable(context.Background(), l)
		if err == nil {
			o, _, err := lakehouse.TableOffsets(tbl.Metadata(), group)
			if err != nil {
				t.Fatal(err)
			}
			done := true
			for p, end := range ends {
				if o.Offsets[p] < end {
					done = false
				}
			}
			if done {
				return tbl
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("table %s did not absorb offsets %v within 120s", l, ends)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// openLake opens the lake's catalog for the test to read, until the test ends.
func openLake(t *testing.T, lake lakehouse.Config) *lakehouse.Lake {
	t.Helper()
	cat, err := lakehouse.Open(context.Background(), lake)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat
}

// endOffsets lists the end offset of each partition of topic.
func endOffsets(t *testing.T, c *testkafka.Cluster, topic string) map[int32]int64 {
	t.Helper()
	ends, err := c.Admin(t).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// scanPersons reads person_id, _fhir_key and year_of_birth of a snapshot through
// iceberg-go's scan (which applies equality deletes) as "key=id/year", sorted.
func scanPersons(t *testing.T, tbl *table.Table, opts ...table.ScanOption) []string {
	t.Helper()
	opts = append(opts, table.WithSelectedFields("person_id", schemas.ColFHIRKey, "year_of_birth"))
	sc, itr, err := tbl.Scan(opts...).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	idx := func(name string) int {
		is := sc.FieldIndices(name)
		if len(is) != 1 {
			t.Fatalf("scan has no column %s: %s", name, sc)
		}
		return is[0]
	}
	pi, ki, yi := idx("person_id"), idx(schemas.ColFHIRKey), idx("year_of_birth")
	var out []string
	for rec, err := range itr {
		if err != nil {
			t.Fatal(err)
		}
		ids, keys, years := rec.Column(pi).(*array.Int64), rec.Column(ki).(*array.String), rec.Column(yi).(*array.Int32)
		for i := range int(rec.NumRows()) {
			out = append(out, fmt.Sprintf("%s=%d/%d", keys.Value(i), ids.Value(i), years.Value(i)))
		}
		rec.Release()
	}
	sort.Strings(out)
	return out
}

// testCatalogs are the catalogs the integration tests write: the embedded one always,
// and the REST catalog server named by FHIRSTREAM_TEST_ICEBERG_REST when it is set.
func testCatalogs(t *testing.T) map[string]func() lakehouse.Config {
	cats := map[string]func() lakehouse.Config{"embedded": func() lakehouse.Config { return lakehouse.Config{Out: t.TempDir()} }}
	if uri := os.Getenv("FHIRSTREAM_TEST_ICEBERG_REST"); uri != "" {
		// A catalog other tests and runs share: each test's tables live under a namespace of
		// its own.
		cats["rest"] = func() lakehouse.Config {
			return lakehouse.Config{Kind: lakehouse.CatalogREST, URI: uri, Namespace: "t" + strings.ReplaceAll(t.Name(), "/", "_") + fmt.Sprint(time.Now().UnixNano())}
		}
	}
	return cats
}

// TestIntegrationSinkUpsertsAndTimeTravel loads persons, then a second export that
// changes some and deletes others: the current state is the second export's, the
// previous snapshot still shows the first, and the initial load wrote no delete file.
func TestIntegrationSinkUpsertsAndTimeTravel(t *testing.T) {
	for name, cat := range testCatalogs(t) {
		t.Run(name, func(t *testing.T) { testUpsertsAndTimeTravel(t, cat()) })
	}
}

func testUpsertsAndTimeTravel(t *testing.T, lake lakehouse.Config) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	topic := topics.OMOP("person")
	c.CreateTopics(t, 3, topic, topics.DLQ())
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	var first []*kgo.Record
	want := map[string]string{}
	for i := range n {
		key := fmt.Sprintf("Patient/p%d", i)
		first = append(first, personRecord(t, codec, topics, key, int64(i+1), 1950, false, false))
		want[key] = fmt.Sprintf("%s=%d/%d", key, i+1, 1950)
	}
	cl := c.Client(t)
	if err := cl.ProduceSync(context.Background(), first...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Layer: LayerOMOP, Catalog: lake, Group: c.Group("sink"), FlushInterval: 200 * time.Millisecond}
	s, stop := startSink(t, c, cfg)
	cat := openLake(t, lake)
	l, _ := lakehouse.OMOPLayout("person")
	tbl := waitAbsorbed(t, cat, l, cfg.Group, endOffsets(t, c, topic))
	initial := sorted(want)
	if got := scanPersons(t, tbl); strings.Join(got, " ") != strings.Join(initial, " ") {
		t.Fatalf("after the initial load: %d rows, want %d\n got %v\nwant %v", len(got), len(initial), head(got), head(initial))
	}
	if st := s.Stats(); st.Deletes["omop.person"] != 0 {
		t.Errorf("the initial load put %d keys in equality deletes, want none", st.Deletes["omop.person"])
	}
	assertNoDeleteFiles(t, tbl)
	before := tbl.CurrentSnapshot().SnapshotID

	// Second export: every third person changes (new id and year), every fifth is
	// deleted (a retraction row), all carrying dedupe's previous-version header.
	var second []*kgo.Record
	for i := range n {
		key := fmt.Sprintf("Patient/p%d", i)
		switch {
		case i%5 == 0:
			second = append(second, personRecord(t, codec, topics, key, int64(i+1), 0, true, true))
			delete(want, key)
		case i%3 == 0:
			second = append(second, personRecord(t, codec, topics, key, int64(10_000+i), 1990, false, true))
			want[key] = fmt.Sprintf("%s=%d/%d", key, 10_000+i, 1990)
		}
	}
	// One key changes twice within the stream: the later version wins.
	second = append(second, personRecord(t, codec, topics, "Patient/p3", 20_003, 2000, false, true))
	want["Patient/p3"] = "Patient/p3=20003/2000"
	if err := cl.ProduceSync(context.Background(), second...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tbl = waitAbsorbed(t, cat, l, cfg.Group, endOffsets(t, c, topic))
	stop()
	current := sorted(want)
	if got := scanPersons(t, tbl); strings.Join(got, " ") != strings.Join(current, " ") {
		t.Errorf("after the second export: %d rows, want %d\n got %v\nwant %v", len(got), len(current), head(got), head(current))
	}
	if got := scanPersons(t, tbl, table.WithSnapshotID(before)); strings.Join(got, " ") != strings.Join(initial, " ") {
		t.Errorf("time travel to snapshot %d: %d rows, want the initial %d", before, len(got), len(initial))
	}
}

func sorted(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func head(s []string) []string { return s[:min(len(s), 8)] }

// assertNoDeleteFiles fails when the table's current snapshot has delete files.
func assertNoDeleteFiles(t *testing.T, tbl *table.Table) {
	t.Helper()
	if s := tbl.CurrentSnapshot(); s != nil && s.Summary != nil {
		if n := s.Summary.Properties["total-delete-files"]; n != "" && n != "0" {
			t.Errorf("snapshot %d has %s delete files, want none", s.SnapshotID, n)
		}
	}
}

// TestIntegrationSinkCommitsABurstOnceItsInputIsQuiet: with a flush interval far off, a
// burst of records (an export's last) reaches the table once the input has been quiet
// for the flush idle time, and the batches say the idle time ended them, not the
// interval.
func TestIntegrationSinkCommitsABurstOnceItsInputIsQuiet(t *testing.T) {
	c := testkafka.New(t)
	const persons = 200
	_, ends := loadPersons(t, c, persons)
	lake := lakehouse.Config{Out: t.TempDir()}
	cfg := Config{Layer: LayerOMOP, Catalog: lake, Group: c.Group("sink"), FlushInterval: maxFlushInterval, FlushIdle: 300 * time.Millisecond}
	s, stop := startSink(t, c, cfg)
	cat := openLake(t, lake)
	l, _ := lakehouse.OMOPLayout("person")
	tbl := waitAbsorbed(t, cat, l, cfg.Group, ends)
	stop()
	if got := len(scanPersons(t, tbl)); got != persons {
		t.Errorf("table holds %d persons, want %d", got, persons)
	}
	st := s.Stats()
	if st.BatchesEndedBy[endedByInterval] != 0 || st.BatchesEndedBy[endedByIdle] == 0 || st.BatchesEndedBy[endedByIdle] != st.Batches {
		t.Errorf("batches %d, ended by %v: want every one ended by %q", st.Batches, st.BatchesEndedBy, endedByIdle)
	}
}
