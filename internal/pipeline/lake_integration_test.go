package pipeline_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/internal/testlake"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationLakeSecondExport runs the whole pipeline over an export, then over a
// second export in which every patient changed (a new versionId, the other gender) and
// some conditions were deleted. The lake's current state shows each patient once with its
// new values (silver and omop.person) and no deleted condition (silver and
// omop.condition_occurrence); time travel to the snapshots before the second export shows
// the first. The state is read with iceberg-go's scan and, where installed, with DuckDB
// and Spark (testlake), which apply the equality deletes themselves.
func TestIntegrationLakeSecondExport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := testkafka.New(t)
	kc := c.Config()
	topics := schemas.MustTopics(kc.TopicPrefix)
	dir := t.TempDir()
	if _, err := synth.WriteDir(ctx, synth.Config{Patients: 4, Seed: 11}, filepath.Join(dir, "first")); err != nil {
		t.Fatal(err)
	}
	specs := kafkaclient.ContractTopics(topics, schemas.BulkResourceTypes, schemas.OMOPTables(),
		kafkaclient.TopicOptions{Partitions: 3, ReplicationFactor: -1})
	if _, err := kafkaclient.EnsureTopics(ctx, c.Admin(t), specs); err != nil {
		t.Fatal(err)
	}
	lakeCfg := lakehouse.Config{Out: filepath.Join(dir, "lake")}
	p, err := pipeline.Start(ctx, pipeline.Config{Kafka: kc, Lake: lakeCfg, SinkFlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop() //nolint:errcheck // checked below
	export := func(from string) {
		t.Helper()
		if _, err := producer.Fetch(ctx, producer.Config{Kafka: kc, Partitions: 3, From: []string{from}}); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitDrained(ctx); err != nil {
			t.Fatal(err)
		}
	}
	export(filepath.Join(dir, "first"))

	lake, err := lakehouse.Open(ctx, lakeCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	layouts := map[string]*lakehouse.Layout{}
	for _, name := range []string{"fhir.patient", "fhir.condition", "omop.person", "omop.condition_occurrence"} {
		ns, tbl, _ := strings.Cut(name, ".")
		var l *lakehouse.Layout
		if ns == lakehouse.NamespaceFHIR {
			l, err = lakehouse.FHIRLayout(map[string]string{"patient": "Patient", "condition": "Condition"}[tbl])
		} else {
			l, err = lakehouse.OMOPLayout(tbl)
		}
		if err != nil {
			t.Fatal(err)
		}
		layouts[name] = l
	}
	snapshotOf := func(name string) int64 {
		tbl, err := lake.LoadTable(ctx, layouts[name])
		if err != nil {
			t.Fatal(err)
		}
		return tbl.CurrentSnapshot().SnapshotID
	}
	before := map[string]int64{}
	for name := range layouts {
		before[name] = snapshotOf(name)
	}

	// The first export, as the test wrote it: patients and their gender, conditions.
	patients := readNDJSON(t, filepath.Join(dir, "first", "Patient.ndjson"))
	conditions := readNDJSON(t, filepath.Join(dir, "first", "Condition.ndjson"))
	firstGender, newGender := map[string]string{}, map[string]string{}
	firstVersion := map[string]string{}
	var second []string
	for _, pt := range patients {
		id := pt["id"].(string)
		firstGender[id] = pt["gender"].(string)
		newGender[id] = map[string]string{"male": "female", "female": "male"}[firstGender[id]]
		pt["gender"] = newGender[id]
		meta := pt["meta"].(map[string]any)
		firstVersion[id], _ = meta["versionId"].(string)
		meta["versionId"] = "9"
		meta["lastUpdated"] = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339)
		b, _ := json.Marshal(pt)
		second = append(second, string(b))
	}
	if err := os.MkdirAll(filepath.Join(dir, "second"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "second", "Patient.ndjson"), []byte(strings.Join(second, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Deletions arrive as tombstones, as the fetcher publishes a manifest's deleted entries.
	deleted := map[string]bool{}
	cl := c.Client(t)
	for i, cond := range conditions {
		if i%3 != 0 {
			continue
		}
		id := cond["id"].(string)
		deleted[id] = true
		rec := &kgo.Record{Topic: topics.Raw("Condition"), Key: schemas.Key("Condition", id),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderDeleted, Value: []byte("true")}}}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	export(filepath.Join(dir, "second"))
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	// The reference, from the test's own edits.
	wantPatients := func(genders, versions map[string]string) []string {
		var out []string
		for id, g := range genders {
			out = append(out, fmt.Sprintf("%s %s %s", id, versions[id], g))
		}
		sort.Strings(out)
		return out
	}
	wantConditions := func(withDeleted bool) []string {
		var out []string
		for _, cond := range conditions {
			if id := cond["id"].(string); withDeleted || !deleted[id] {
				out = append(out, "Condition/"+id)
			}
		}
		sort.Strings(out)
		return out
	}
	type check struct {
		table string
		read  func(*table.Table, ...table.ScanOption) []string
		now   []string
		then  []string
	}
	checks := []check{
		{"fhir.patient", func(tb *table.Table, o ...table.ScanOption) []string { return silverPatients(t, tb, o...) },
			wantPatients(newGender, nineFor(newGender)), wantPatients(firstGender, firstVersion)},
		{"omop.person", func(tb *table.Table, o ...table.ScanOption) []string { return omopPersons(t, tb, o...) },
			wantGenders(newGender), wantGenders(firstGender)},
		{"fhir.condition", func(tb *table.Table, o ...table.ScanOption) []string {
			return prefixed("Condition/", scanStrings(t, tb, lakehouse.ColID, o...))
		}, wantConditions(false), wantConditions(true)},
		{"omop.condition_occurrence", func(tb *table.Table, o ...table.ScanOption) []string {
			return distinct(scanStrings(t, tb, schemas.ColFHIRKey, o...))
		}, distinct(wantConditions(false)), distinct(wantConditions(true))},
	}
	for _, ck := range checks {
		tbl, err := lake.LoadTable(ctx, layouts[ck.table])
		if err != nil {
			t.Fatal(err)
		}
		if got := ck.read(tbl); !sameSet(got, ck.now, ck.table == "omop.condition_occurrence") {
			t.Errorf("%s now: %v\nwant %v", ck.table, head(got), head(ck.now))
		}
		if got := ck.read(tbl, table.WithSnapshotID(before[ck.table])); !sameSet(got, ck.then, ck.table == "omop.condition_occurrence") {
			t.Errorf("%s at snapshot %d (before the second export): %v\nwant %v", ck.table, before[ck.table], head(got), head(ck.then))
		}
	}

	// A deleted condition was in omop.condition_occurrence before and is gone now.
	cond, err := lake.LoadTable(ctx, layouts["omop.condition_occurrence"])
	if err != nil {
		t.Fatal(err)
	}
	was, is := 0, 0
	for _, k := range distinct(scanStrings(t, cond, schemas.ColFHIRKey, table.WithSnapshotID(before["omop.condition_occurrence"]))) {
		if deleted[strings.TrimPrefix(k, "Condition/")] {
			was++
		}
	}
	for _, k := range distinct(scanStrings(t, cond, schemas.ColFHIRKey)) {
		if deleted[strings.TrimPrefix(k, "Condition/")] {
			is++
		}
	}
	if was == 0 || is != 0 {
		t.Errorf("deleted conditions in omop.condition_occurrence: %d before the second export, %d after; want some, then none", was, is)
	}

	// Engines that apply equality deletes themselves read the same current state.
	cat := testlake.SQLCatalog(lakehouse.EmbeddedCatalogName, filepath.Join(lakeCfg.Out, lakehouse.CatalogFile), filepath.Join(lakeCfg.Out, lakehouse.WarehouseDir))
	for _, e := range []testlake.Engine{testlake.DuckDB, testlake.Spark} {
		t.Run(string(e), func(t *testing.T) {
			r := testlake.Open(t, e)
			res, err := r.Read(cat, lakehouse.NamespaceOMOP, "person")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, row := range res.Rows {
				got = append(got, fmt.Sprint(row["gender_source_value"]))
			}
			sort.Strings(got)
			if want := wantGenders(newGender); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s reads omop.person genders %v, want %v", e, got, want)
			}
		})
	}
}

// nineFor maps every patient to version "9", the second export's.
func nineFor(m map[string]string) map[string]string {
	out := map[string]string{}
	for id := range m {
		out[id] = "9"
	}
	return out
}

func readNDJSON(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("%s is empty", path)
	}
	return out
}

// scanColumns reads string columns of a table through iceberg-go's scan.
func scanColumns(t *testing.T, tbl *table.Table, cols []string, opts ...table.ScanOption) [][]string {
	t.Helper()
	sc, itr, err := tbl.Scan(append(opts, table.WithSelectedFields(cols...))...).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for rec, err := range itr {
		if err != nil {
			t.Fatal(err)
		}
		arrs := make([]arrow.Array, len(cols))
		for i, c := range cols {
			arrs[i] = rec.Column(sc.FieldIndices(c)[0])
		}
		for r := range int(rec.NumRows()) {
			row := make([]string, len(cols))
			for i, a := range arrs {
				row[i] = a.(*array.String).Value(r)
			}
			out = append(out, row)
		}
		rec.Release()
	}
	return out
}

func scanStrings(t *testing.T, tbl *table.Table, col string, opts ...table.ScanOption) []string {
	var out []string
	for _, r := range scanColumns(t, tbl, []string{col}, opts...) {
		out = append(out, r[0])
	}
	sort.Strings(out)
	return out
}

// silverPatients are "id version gender" of fhir.patient, gender read from the resource.
func silverPatients(t *testing.T, tbl *table.Table, opts ...table.ScanOption) []string {
	var out []string
	for _, r := range scanColumns(t, tbl, []string{lakehouse.ColID, lakehouse.ColVersionID, lakehouse.ColResource}, opts...) {
		var res struct{ Gender string }
		if err := json.Unmarshal([]byte(r[2]), &res); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %s", r[0], r[1], res.Gender))
	}
	sort.Strings(out)
	return out
}

// omopPersons are the gender_source_value of omop.person rows.
func omopPersons(t *testing.T, tbl *table.Table, opts ...table.ScanOption) []string {
	return scanStrings(t, tbl, "gender_source_value", opts...)
}

func wantGenders(g map[string]string) []string {
	var out []string
	for _, v := range g {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func prefixed(p string, s []string) []string {
	for i := range s {
		s[i] = p + s[i]
	}
	sort.Strings(s)
	return s
}

func distinct(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// sameSet compares sorted lists; subset accepts got ⊆ want (a condition the mapper
// routes to another domain table has no condition_occurrence row), but never a key
// outside want.
func sameSet(got, want []string, subset bool) bool {
	if !subset {
		return strings.Join(got, "\n") == strings.Join(want, "\n")
	}
	in := map[string]bool{}
	for _, w := range want {
		in[w] = true
	}
	for _, g := range got {
		if !in[g] {
			return false
		}
	}
	return len(got) > 0
}

func head(s []string) []string { return s[:min(len(s), 10)] }
