package sink

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/lakeops"
	"github.com/fhirstream/fhirstream/internal/stagekill"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// The kill tests run sink-omop as two processes in one group and SIGKILL one or the other
// at random moments at least 20 times while records flow: source resources are created,
// changed (new versions with other rows) and deleted (retractions) over the stream, two
// members commit to the same tables, and bad records are mixed in. Then each table's
// current state must equal the reference folded from the input by this test (not by the
// sink's code), read through iceberg-go's scan; no snapshot references a file written by
// another batch; every referenced file exists, none twice; the files crashed attempts
// left are unreferenced, and removing them (what `lake expire` does) changes nothing.

// killTable is one table of the kill test, with the value column checked beside the key.
type killTable struct {
	name, id, value string
	// components is the most rows one version of a source resource yields.
	components int
}

var killTables = []killTable{
	{name: "person", id: "person_id", value: "year_of_birth", components: 1},
	{name: "visit_occurrence", id: "visit_occurrence_id", value: "visit_source_value", components: 1},
	{name: "measurement", id: "measurement_id", value: "value_as_number", components: 3},
}

// killEvent is one record of the input: a version's row, or a retraction.
type killEvent struct {
	table     killTable
	key       string
	version   int
	component int
	replaces  bool
	deleted   bool
	known     bool // dedupe has passed the key before: the previous-version header
	bad       bool // a value no decoder takes
}

// stableID is the row id of a key's component, the same in every version (as omop's ids).
func stableID(key string, component int) int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s#%d", key, component)
	return int64(h.Sum64() >> 1)
}

// killInput generates the events: per table, keys with 1 to 3 versions, a version of 1 to
// components rows, a quarter of the keys deleted at the end; a few bad records. Each
// key's events keep their order; keys are interleaved at random.
func killInput(rng *rand.Rand, keysPerTable int) []killEvent {
	var perKey [][]killEvent
	for _, tb := range killTables {
		for k := range keysPerTable {
			key := fmt.Sprintf("Res%s/k%d", tb.name[:3], k)
			var evs []killEvent
			versions := 1 + rng.IntN(3)
			for v := 1; v <= versions; v++ {
				n := 1 + rng.IntN(tb.components)
				for c := range n {
					evs = append(evs, killEvent{table: tb, key: key, version: v, component: c, replaces: c == 0, known: v > 1})
				}
			}
			if rng.IntN(4) == 0 {
				evs = append(evs, killEvent{table: tb, key: key, version: versions + 1, replaces: true, deleted: true, known: true})
			}
			perKey = append(perKey, evs)
		}
		for b := range 3 {
			perKey = append(perKey, []killEvent{{table: tb, key: fmt.Sprintf("Bad/%s-%d", tb.name, b), bad: true}})
		}
	}
	var out []killEvent
	for len(perKey) > 0 {
		i := rng.IntN(len(perKey))
		out = append(out, perKey[i][0])
		if perKey[i] = perKey[i][1:]; len(perKey[i]) == 0 {
			perKey = slices.Delete(perKey, i, i+1)
		}
	}
	return out
}

// killValue is the value column of an event's row, as the scan prints it.
func killValue(e killEvent) string {
	switch e.table.name {
	case "person":
		return fmt.Sprint(1900 + e.version)
	case "visit_occurrence":
		return fmt.Sprintf("v%d", e.version)
	}
	return fmt.Sprint(float64(e.version*100 + e.component))
}

// killRecord encodes an event.
func killRecord(t testing.TB, codec *schemas.Codec, topics schemas.Topics, e killEvent) *kgo.Record {
	r := &kgo.Record{Topic: topics.OMOP(e.table.name), Key: []byte(e.key)}
	if e.bad {
		r.Value = []byte("\xc3\x01 not an avro record")
		return r
	}
	if e.known {
		r.Headers = []kgo.RecordHeader{{Key: schemas.HeaderPreviousVersion, Value: []byte(fmt.Sprint(e.version - 1))}}
	}
	id := stableID(e.key, e.component)
	when := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	row := map[string]any{
		schemas.ColFHIRKey: e.key, schemas.ColFHIRVersion: fmt.Sprint(e.version), schemas.ColFHIRComponent: int32(e.component),
		schemas.ColFHIRDeleted: e.deleted, schemas.ColFHIRReplaces: e.replaces,
	}
	person := int64(1 + len(e.key)%50)
	switch e.table.name {
	case "person":
		row["person_id"], row["gender_concept_id"], row["year_of_birth"] = id, int32(8507), int32(1900+e.version)
		row["race_concept_id"], row["ethnicity_concept_id"] = int32(0), int32(0)
	case "visit_occurrence":
		row["visit_occurrence_id"], row["person_id"], row["visit_concept_id"] = id, person, int32(9202)
		row["visit_start_date"], row["visit_end_date"], row["visit_type_concept_id"] = when, when, int32(32817)
		row["visit_source_value"] = fmt.Sprintf("v%d", e.version)
	case "measurement":
		row["measurement_id"], row["person_id"], row["measurement_concept_id"] = id, person, int32(3004249)
		row["measurement_date"], row["measurement_datetime"], row["measurement_type_concept_id"] = when, when, int32(32817)
		row["value_as_number"] = float64(e.version*100 + e.component)
	}
	v, err := codec.Encode(context.Background(), e.table.name, row)
	if err != nil {
		t.Fatalf("encode %s %s: %v", e.table.name, e.key, err)
	}
	r.Value = v
	return r
}

// killReference folds the events into each table's current state, "key id value" lines,
// sorted: a replacing event clears the key's rows, a non-retraction adds its row. It
// shares nothing with the sink's code.
func killReference(events []killEvent) map[string][]string {
	state := map[string]map[string][]string{} // table → key → rows
	for _, e := range events {
		if e.bad {
			continue
		}
		if state[e.table.name] == nil {
			state[e.table.name] = map[string][]string{}
		}
		if e.replaces {
			delete(state[e.table.name], e.key)
		}
		if !e.deleted {
			state[e.table.name][e.key] = append(state[e.table.name][e.key], fmt.Sprintf("%s %d %s", e.key, stableID(e.key, e.component), killValue(e)))
		}
	}
	out := map[string][]string{}
	for table, keys := range state {
		for _, rows := range keys {
			out[table] = append(out[table], rows...)
		}
		sort.Strings(out[table])
	}
	return out
}

// scanState reads a table's current state through iceberg-go's scan, which applies the
// equality deletes, as "key id value" lines, sorted.
func scanState(t *testing.T, tbl *table.Table, kt killTable) []string {
	t.Helper()
	sc, itr, err := tbl.Scan(table.WithSelectedFields(schemas.ColFHIRKey, kt.id, kt.value)).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	col := func(rec arrow.RecordBatch, name string) arrow.Array { return rec.Column(sc.FieldIndices(name)[0]) }
	var out []string
	for rec, err := range itr {
		if err != nil {
			t.Fatal(err)
		}
		keys, ids, vals := col(rec, schemas.ColFHIRKey).(*array.String), col(rec, kt.id).(*array.Int64), col(rec, kt.value)
		for i := range int(rec.NumRows()) {
			out = append(out, fmt.Sprintf("%s %d %s", keys.Value(i), ids.Value(i), vals.ValueStr(i)))
		}
		rec.Release()
	}
	sort.Strings(out)
	return out
}

// killCatalog is the catalog a kill run writes to.
type killCatalog struct {
	name string
	args []string         // the sink's catalog flags
	cfg  lakehouse.Config // the test's own view of it
	// restart, when set, restarts the catalog service after the kill it names.
	restart   func()
	restartAt int
	// unknownOutcomes: the sinks must have met commits of unknown outcome and looked
	// them up (the proxy drops some commits' answers).
	unknownOutcomes bool
}

func TestIntegrationSinkKillEmbedded(t *testing.T) {
	out := t.TempDir()
	testSinkKill(t, killCatalog{name: "embedded", args: []string{"--out", out}, cfg: lakehouse.Config{Out: out}})
}

// TestIntegrationSinkKillREST runs the kill test against Apache Iceberg's REST catalog
// server (deploy/iceberg), started by the test on a port of its own, through a proxy
// (catalogProxy) that, once mid-run, drops the answers of three commits the server made
// (commits of unknown outcome, which the sink must look up) and then cuts every request
// while the server is stopped and started again. The server is stopped only with no
// request in flight: the test server does not come back reliably from a stop or a kill in
// the middle of a commit (its JdbcCatalog on SQLite then points a table at a metadata file
// that is not there, or fails every later write with SQLITE_BUSY), which is the test
// server's durability, not the sink's protocol.
func TestIntegrationSinkKillREST(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the REST catalog server and runs for about a minute")
	}
	script := os.Getenv("FHIRSTREAM_TEST_ICEBERG_REST_SCRIPT")
	if script == "" {
		script = "../../deploy/iceberg/iceberg-rest-local.sh"
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("no REST catalog server script (%v)", err)
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip("no java to run the REST catalog server")
	}
	port := os.Getenv("FHIRSTREAM_TEST_ICEBERG_REST_PORT")
	if port == "" {
		// A port the system picks: a fixed one collides with another run on the machine.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	dir := filepath.Join(t.TempDir(), "rest")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", script, args, err, out)
		}
	}
	run("start", "--port", port, "--dir", dir, "--timeout", "120")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("bash", script, "logs", "--dir", dir, "-n", "60").CombinedOutput()
			t.Logf("REST catalog server log:\n%s", out)
		}
		_ = exec.Command("bash", script, "stop", "--dir", dir).Run()
	})
	proxy := newCatalogProxy(t, "http://127.0.0.1:"+port)
	uri := proxy.URL()
	testSinkKill(t, killCatalog{
		name: "rest", args: []string{"--catalog", "rest", "--catalog-uri", uri},
		cfg: lakehouse.Config{Kind: lakehouse.CatalogREST, URI: uri},
		restart: func() {
			if n := proxy.cutCommits(t, 3, 30*time.Second); n == 0 {
				t.Error("no commit's answer was dropped: the unknown-outcome path went untested")
			} else {
				t.Logf("dropped the answers of %d commits the catalog made", n)
			}
			cut := proxy.outage(t, func() {
				run("stop", "--keep", "--dir", dir)
				run("start", "--port", port, "--dir", dir, "--timeout", "120")
			})
			t.Logf("cut %d requests while the catalog restarted", cut)
		},
		restartAt:       10,
		unknownOutcomes: true,
	})
}

func testSinkKill(t *testing.T, kc killCatalog) {
	const kills, keysPerTable = 22, 250
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	var tps []string
	for _, tb := range killTables {
		tps = append(tps, topics.OMOP(tb.name))
	}
	c.CreateTopics(t, 3, append(tps, topics.DLQ())...)
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("input seed %d", seed)
	events := killInput(rand.New(rand.NewPCG(seed, 3)), keysPerTable)
	recs := make([]*kgo.Record, len(events))
	bad := 0
	for i, e := range events {
		recs[i] = killRecord(t, codec, topics, e)
		if e.bad {
			bad++
		}
	}
	want := killReference(events)

	stage := StageName(LayerOMOP)
	group := c.Group(stage)
	args := append([]string{"--flush-rows", "400", "--flush-interval", "300ms", "--log-level", "info"}, kc.args...)
	cfg := stagekill.Config{Stage: stage, Input: recs, Chunks: 40, Kills: kills, Args: args}
	if kc.restart != nil {
		cfg.AfterKill = func(n int) {
			if n == kc.restartAt {
				t.Logf("restarting the %s catalog after kill %d", kc.name, n)
				kc.restart()
			}
		}
	}
	run := stagekill.Start(t, c, cfg)
	defer func() {
		if t.Failed() {
			dumpKillLogs(t, run.LogDir)
		}
	}()

	ctx := context.Background()
	cat, err := lakehouse.Open(ctx, kc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	for _, kt := range killTables {
		l, _ := lakehouse.OMOPLayout(kt.name)
		waitAbsorbed(t, cat, l, group, endOffsets(t, c, topics.OMOP(kt.name)))
	}
	run.Stop()
	t.Logf("%d process starts, %d records (%d bad)", run.Starts, len(recs), bad)
	if kc.unknownOutcomes {
		n := countLogLines(t, run.LogDir, "table commit of unknown outcome; looking it up")
		if n == 0 {
			t.Error("no sink met a commit of unknown outcome")
		}
		t.Logf("%d commits of unknown outcome looked up", n)
	}

	for _, kt := range killTables {
		l, _ := lakehouse.OMOPLayout(kt.name)
		tbl, err := cat.LoadTable(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		got := scanState(t, tbl, kt)
		if d := lineDiff(want[kt.name], got); d != "" {
			t.Errorf("%s: current state differs from the reference (%d rows, want %d):\n%s", kt.name, len(got), len(want[kt.name]), d)
		}
		checkFiles(t, ctx, cat, l, tbl, kt, group)
	}
	// Every bad record was dead-lettered, at least once (dead letters are at least once).
	dead := map[string]int{}
	for _, r := range c.ReadAll(t, topics.DLQ()) {
		dc, _ := deadletter.Parse(r.Headers)
		if dc.Class != schemas.ClassUndecodable || dc.Stage != stage {
			t.Errorf("dead letter of %s: stage %s class %s, want %s %s", r.Key, dc.Stage, dc.Class, stage, schemas.ClassUndecodable)
		}
		dead[string(r.Key)]++
	}
	if len(dead) != bad {
		t.Errorf("%d bad records dead-lettered, want %d", len(dead), bad)
	}
}

// checkFiles checks the table's files: each snapshot adds only files of the batch it
// commits, the current snapshot references every file once and every file it references
// exists; the other files in the table's data directory are leftovers of refused or
// crashed attempts, and removing them (as `lake expire` does) leaves the state unchanged.
func checkFiles(t *testing.T, ctx context.Context, lake *lakehouse.Lake, l *lakehouse.Layout, tbl *table.Table, kt killTable, group string) {
	t.Helper()
	fsys, err := tbl.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	referenced := map[string]bool{}
	for _, snap := range tbl.Metadata().Snapshots() {
		batch := ""
		if snap.Summary != nil {
			batch, _, _ = strings.Cut(snap.Summary.Properties[lakehouse.SummaryCommitID], "/")
		}
		mfs, err := snap.Manifests(fsys)
		if err != nil {
			t.Fatal(err)
		}
		live := map[string]int{}
		for _, mf := range mfs {
			for e, err := range mf.Entries(fsys, true) {
				if err != nil {
					t.Fatal(err)
				}
				p := e.DataFile().FilePath()
				referenced[p] = true
				live[p]++
				if e.Status() == iceberg.EntryStatusADDED && e.SnapshotID() == snap.SnapshotID && !strings.HasPrefix(filepath.Base(p), batch) {
					t.Errorf("%s: snapshot %d of batch %q adds %s, a file of another batch", kt.name, snap.SnapshotID, batch, p)
				}
			}
		}
		for p, n := range live {
			if n > 1 {
				t.Errorf("%s: snapshot %d references %s %d times", kt.name, snap.SnapshotID, p, n)
			}
		}
	}
	for p := range referenced {
		if _, err := fsys.Open(p); err != nil {
			t.Errorf("%s: referenced file %s: %v", kt.name, p, err)
		}
	}
	before := scanState(t, tbl, kt)
	offsets, _, err := lakehouse.TableOffsets(tbl.Metadata(), group)
	if err != nil {
		t.Fatal(err)
	}
	// What `fhirstream lake expire --older-than 0` does: old snapshots and orphans go.
	res, err := lakeops.Expire(ctx, lake.Catalog, lake.Ident(l), lakeops.ExpireOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Orphans {
		if referenced[p] {
			t.Errorf("%s: expire removed %s as an orphan, a file a snapshot referenced", kt.name, p)
		}
	}
	t.Logf("%s: %d snapshots, %d files referenced, %d left by refused or crashed attempts (removed by expire)",
		kt.name, len(tbl.Metadata().Snapshots()), len(referenced), len(res.Orphans))
	tbl, err = lake.LoadTable(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if after := scanState(t, tbl, kt); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("%s: expire changed the table", kt.name)
	}
	// The sink resumes from the same offsets after the expiry.
	if got, _, err := lakehouse.TableOffsets(tbl.Metadata(), group); err != nil || got.Encode() != offsets.Encode() {
		t.Errorf("%s: offsets after expire %v (%v), before %v", kt.name, got.Offsets, err, offsets.Offsets)
	}
}

// lineDiff shows up to 10 lines missing from got and 10 extra in it.
func lineDiff(want, got []string) string {
	count := map[string]int{}
	for _, l := range want {
		count[l]++
	}
	for _, l := range got {
		count[l]--
	}
	var missing, extra []string
	for l, n := range count {
		for ; n > 0; n-- {
			missing = append(missing, l)
		}
		for ; n < 0; n++ {
			extra = append(extra, l)
		}
	}
	if len(missing)+len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return fmt.Sprintf("missing %d: %v\nextra %d: %v", len(missing), head(missing), len(extra), head(extra))
}

// dumpKillLogs prints what the runs said about sessions, fences and commits.
func dumpKillLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	sort.Strings(files)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var keep []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "WARN") || strings.Contains(line, "ERROR") || strings.Contains(line, "assigned") {
				keep = append(keep, line)
			}
		}
		t.Logf("---- %s\n%s", filepath.Base(f), strings.Join(keep, "\n"))
	}
}

// countLogLines counts the lines holding msg in the kill run's logs.
func countLogLines(t *testing.T, dir, msg string) int {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), msg)
	}
	return n
}
