package sink

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if t.Failed() {
			t.FailNow()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// startSink runs a sink until the returned stop function is called; stop returns Run's error.
func startSink(t *testing.T, c *testkafka.Cluster, cfg Config) (*Sink, func() error) {
	t.Helper()
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(context.Background(), c.Config(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := s.Run(ctx)
		if ctx.Err() == nil {
			// Run must not end by itself: say why at once rather than time out later.
			t.Errorf("sink stopped before it was asked to: %v", err)
		}
		done <- err
	}()
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("sink did not stop within 60s")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

func produce(t *testing.T, cl *kgo.Client, recs []*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func omopTopics(topics schemas.Topics) []string {
	var out []string
	for _, t := range schemas.OMOPTables() {
		out = append(out, topics.OMOP(t))
	}
	return out
}

func TestIntegrationSinkOMOP(t *testing.T) {
	for _, lake := range testLakes(t, false) {
		t.Run(lake.name, func(t *testing.T) { testSinkOMOP(t, lake) })
	}
}

func testSinkOMOP(t *testing.T, lake testLake) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	c.CreateTopics(t, 3, append(omopTopics(topics), topics.DLQ())...)
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	const perTable = 120
	day := time.Date(2024, 5, 17, 10, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	for _, table := range schemas.OMOPTables() {
		recs = append(recs, omopRecords(t, codec, topics, table, perTable, 40, day)...)
	}
	// One malformed value: it must reach the dead-letter topic, and the rest go on.
	recs = append(recs, &kgo.Record{Topic: topics.OMOP("person"), Key: []byte("Patient/bad"), Value: []byte("not avro"), Timestamp: day})
	cl := c.Client(t)
	produce(t, cl, recs)

	s, stop := startSink(t, c, lake.config(Config{Layer: LayerOMOP, Group: c.Group("sink"), FlushRows: 500, FlushInterval: 300 * time.Millisecond}))
	want := int64(perTable * len(schemas.OMOPTables()))
	waitFor(t, 90*time.Second, "all rows committed", func() bool {
		st := s.Stats()
		return st.TotalRows() == want && st.DeadLetters == 1
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := lake.localDir(t)
	st := s.Stats()
	if st.FilesWritten < int64(len(schemas.OMOPTables())) {
		t.Fatalf("stats %+v: fewer files than tables", st)
	}

	for _, table := range schemas.OMOPTables() {
		dir := filepath.Join(out, "omop", table, "date=2024-05-17")
		files := lakeFiles(t, dir)
		if len(files) == 0 {
			t.Fatalf("%s: no files in %s", table, dir)
		}
		ids := map[int64]int{}
		for _, f := range files {
			base := filepath.Base(f)
			if !strings.HasPrefix(base, topics.OMOP(table)+"+") {
				t.Errorf("%s: file %s not named <topic>+<partition>+<offset>.parquet", table, base)
			}
			schema, rows := readParquet(t, f)
			checkOMOPSchema(t, table, schema)
			tm, _ := schemas.OMOPTable(table)
			first := tm.Columns[0].Name
			for _, r := range rows {
				ids[r[first].Int64()]++
				checkOMOPRow(t, tm, r)
			}
		}
		if len(ids) != perTable {
			t.Errorf("%s: %d distinct ids, want %d", table, len(ids), perTable)
		}
		for id, n := range ids {
			if n != 1 || id < 1 || id > perTable {
				t.Errorf("%s: id %d seen %d times", table, id, n)
			}
		}
	}

	dead := c.ReadAll(t, topics.DLQ())
	if len(dead) != 1 || string(dead[0].Key) != "Patient/bad" {
		t.Fatalf("dead letters: %d, want the one malformed record", len(dead))
	}
	if got := header(dead[0], schemas.DLQErrorClass); got != "avro-decode" {
		t.Fatalf("dead letter class %q", got)
	}

	// A restart resumes from the committed offsets: more rows, no duplicates.
	produce(t, cl, omopRecords(t, codec, topics, "person", 2*perTable, 40, day)[perTable:])
	s2, stop2 := startSink(t, c, lake.config(Config{Layer: LayerOMOP, Group: c.Group("sink"), FlushInterval: 300 * time.Millisecond}))
	waitFor(t, 60*time.Second, "second run rows", func() bool { return s2.Stats().TotalRows() == perTable })
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	out = lake.localDir(t)
	ids := map[int64]int{}
	for _, f := range lakeFiles(t, filepath.Join(out, "omop", "person")) {
		_, rows := readParquet(t, f)
		for _, r := range rows {
			ids[r["person_id"].Int64()]++
		}
	}
	total := 0
	for _, n := range ids {
		total += n
	}
	if total != 2*perTable {
		t.Fatalf("person rows after restart: %d, want %d", total, 2*perTable)
	}
}

// checkOMOPSchema checks the Parquet types against the CDM: ids INT64, integers INT32,
// dates DATE, datetimes TIMESTAMP(micros, wall clock), strings STRING, in the CDM column order.
func checkOMOPSchema(t *testing.T, table string, schema *parquet.Schema) {
	t.Helper()
	tm, _ := schemas.OMOPTable(table)
	fields := schema.Fields()
	if len(fields) != len(tm.Columns)+2 {
		t.Fatalf("%s: %d columns, want %d", table, len(fields), len(tm.Columns)+2)
	}
	for i, c := range tm.Columns {
		f := fields[i]
		if f.Name() != c.Name {
			t.Fatalf("%s: column %d is %s, want %s", table, i, f.Name(), c.Name)
		}
		if f.Optional() == c.Required {
			t.Errorf("%s.%s: optional=%v but required=%v", table, c.Name, f.Optional(), c.Required)
		}
		typ := f.Type()
		var ok bool
		switch c.Type {
		case schemas.TypeInt:
			ok = typ.Kind() == parquet.Int32 && strings.HasPrefix(typ.String(), "INT")
		case schemas.TypeLong:
			ok = typ.Kind() == parquet.Int64 && strings.HasPrefix(typ.String(), "INT")
		case schemas.TypeDouble:
			ok = typ.Kind() == parquet.Double
		case schemas.TypeString:
			ok = typ.String() == "STRING"
		case schemas.TypeBoolean:
			ok = typ.Kind() == parquet.Boolean
		case schemas.TypeDate:
			ok = typ.String() == "DATE"
		case schemas.TypeTimestamp:
			ok = typ.String() == "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)"
		case schemas.TypeLocalTimestamp:
			ok = typ.String() == "TIMESTAMP(isAdjustedToUTC=false,unit=MICROS)"
		}
		if !ok {
			t.Errorf("%s.%s: parquet type %v does not fit %s", table, c.Name, typ, c.Type)
		}
	}
}

// checkOMOPRow compares a row read back with the synthetic row it was made from.
func checkOMOPRow(t *testing.T, tm *schemas.Table, r map[string]parquet.Value) {
	t.Helper()
	i := int(r[tm.Columns[0].Name].Int64()) - 1
	want := syntheticRow(tm, i, 40)
	for _, c := range tm.Columns {
		v := r[c.Name]
		w, present := want[c.Name]
		if !present || w == nil {
			if !v.IsNull() {
				t.Errorf("%s row %d: %s = %v, want null", tm.Name, i, c.Name, v)
			}
			continue
		}
		var got any
		switch c.Type {
		case schemas.TypeInt:
			got = v.Int32()
		case schemas.TypeLong:
			got = v.Int64()
		case schemas.TypeDouble:
			got = v.Double()
		case schemas.TypeString:
			got = string(v.ByteArray())
		case schemas.TypeBoolean:
			got = v.Boolean()
		case schemas.TypeDate:
			got = time.Unix(int64(v.Int32())*86400, 0).UTC()
		case schemas.TypeTimestamp, schemas.TypeLocalTimestamp:
			got = time.UnixMicro(v.Int64()).UTC()
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s row %d: %s = %v, want %v", tm.Name, i, c.Name, got, w)
		}
	}
}
