package sink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// repoFile reads a file of the repository from this package's directory.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// duckType is the DuckDB type a column of t should read as.
func duckType(c schemas.Column) string {
	switch c.Type {
	case schemas.TypeInt:
		return "INTEGER"
	case schemas.TypeLong:
		return "BIGINT"
	case schemas.TypeDouble:
		return "DOUBLE"
	case schemas.TypeString:
		return "VARCHAR"
	case schemas.TypeBoolean:
		return "BOOLEAN"
	case schemas.TypeDate:
		return "DATE"
	case schemas.TypeTimestamp:
		return "TIMESTAMP WITH TIME ZONE"
	case schemas.TypeLocalTimestamp:
		return "TIMESTAMP"
	}
	return "?"
}

// TestIntegrationSinkDuckDB reads the lake with DuckDB: row counts, column types and
// values of every table, then the latest-version views and the gold-layer SQL of
// deploy/sql over updates and deletions.
func TestIntegrationSinkDuckDB(t *testing.T) {
	if !haveDuckDB() {
		t.Skip("python3 -c 'import duckdb' failed; CI installs it with pip")
	}
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	c.CreateTopics(t, 3, append(omopTopics(topics), topics.DLQ())...)
	codec, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	day := time.Date(2024, 7, 2, 8, 0, 0, 0, time.UTC)
	const perTable = 30
	var recs []*kgo.Record
	want := map[string]int{}
	for _, table := range schemas.OMOPTables() {
		if table == "person" || table == "visit_occurrence" {
			continue
		}
		recs = append(recs, omopRecords(t, codec, topics, table, perTable, 10, day)...)
		want[table] = perTable
	}
	enc := func(table string, row map[string]any) *kgo.Record {
		v, err := codec.Encode(ctx, table, row)
		if err != nil {
			t.Fatalf("encode %s: %v", table, err)
		}
		return &kgo.Record{Topic: topics.OMOP(table), Key: []byte(row[schemas.ColFHIRKey].(string)), Value: v, Timestamp: day}
	}
	person := func(id int64, version string, year int32, deleted bool) *kgo.Record {
		return enc("person", map[string]any{
			"person_id": id, "gender_concept_id": int32(8507), "year_of_birth": year,
			"race_concept_id": int32(0), "ethnicity_concept_id": int32(0),
			schemas.ColFHIRKey: fmt.Sprintf("Patient/p%d", id), schemas.ColFHIRVersion: version,
			schemas.ColFHIRDeleted: deleted,
		})
	}
	// Persons 1..5, born 1970+id; person 2 is updated (born 1999), person 5 deleted.
	for id := int64(1); id <= 5; id++ {
		recs = append(recs, person(id, "1", int32(1970+id), false))
	}
	recs = append(recs, person(2, "2", 1999, false), person(5, "2", 1975, true))
	// Person i has i encounters; one encounter of person 3 is re-sent (a replay).
	visit := 0
	for id := int64(1); id <= 5; id++ {
		for range id {
			visit++
			r := enc("visit_occurrence", map[string]any{
				"visit_occurrence_id": int64(visit), "person_id": id, "visit_concept_id": int32(9202),
				"visit_start_date": day.AddDate(0, 0, -visit), "visit_end_date": day.AddDate(0, 0, -visit),
				"visit_type_concept_id": int32(32817),
				schemas.ColFHIRKey:      fmt.Sprintf("Encounter/e%d", visit), schemas.ColFHIRVersion: "1",
			})
			recs = append(recs, r)
			if id == 3 && visit == 4 {
				recs = append(recs, &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Timestamp: day})
			}
		}
	}
	produce(t, c.Client(t), recs)

	out := t.TempDir()
	s, stop := startSink(t, c, Config{Layer: LayerOMOP, Out: out, Group: c.Group("sink"), FlushInterval: 200 * time.Millisecond})
	waitFor(t, 60*time.Second, "rows committed", func() bool { return s.Stats().TotalRows() == int64(len(recs)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Raw lake: counts and types of every table, through DuckDB's own Parquet reader.
	want["person"], want["visit_occurrence"] = 7, 16
	for _, table := range schemas.OMOPTables() {
		glob := fmt.Sprintf("%s/omop/%s/*/*.parquet", out, table)
		got := strings.TrimSpace(duckQuery(t, fmt.Sprintf("SELECT count(*) FROM read_parquet('%s', hive_partitioning=true) WHERE date = DATE '2024-07-02'", glob)))
		if got != fmt.Sprint(want[table]) {
			t.Errorf("%s: DuckDB counts %s rows, want %d", table, got, want[table])
		}
		desc := duckQuery(t, fmt.Sprintf("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('%s', hive_partitioning=false))", glob))
		types := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(desc), "\n") {
			name, typ, _ := strings.Cut(line, ",")
			types[name] = typ
		}
		tm, _ := schemas.OMOPTable(table)
		for _, col := range tm.Columns {
			if types[col.Name] != duckType(col) {
				t.Errorf("%s.%s: DuckDB type %q, want %q", table, col.Name, types[col.Name], duckType(col))
			}
		}
	}
	// A few values, compared with the rows produced.
	got := duckQuery(t, fmt.Sprintf(`SELECT condition_occurrence_id, person_id, condition_start_date, condition_source_value
		FROM read_parquet('%s/omop/condition_occurrence/*/*.parquet') WHERE condition_occurrence_id IN (1, 4) ORDER BY 1`, out))
	cm, _ := schemas.OMOPTable("condition_occurrence")
	var wantVals []string
	for _, i := range []int{0, 3} {
		r := syntheticRow(cm, i, 10)
		src := ""
		if v, ok := r["condition_source_value"]; ok {
			src = v.(string)
		}
		wantVals = append(wantVals, fmt.Sprintf("%d,%d,%s,%s", r["condition_occurrence_id"], r["person_id"],
			r["condition_start_date"].(time.Time).Format("2006-01-02"), src))
	}
	if strings.TrimSpace(got) != strings.Join(wantVals, "\n") {
		t.Errorf("condition values:\n got %q\nwant %q", got, strings.Join(wantVals, "\n"))
	}

	// The shipped SQL: latest versions only, retractions dropped, replays counted once.
	sql := fmt.Sprintf("SET VARIABLE lake = '%s';\n", out) + repoFile(t, "deploy/sql/omop_latest.sql") + ";\n" +
		repoFile(t, "deploy/sql/gold_patient_demographics.sql") + ";\n" +
		"SELECT person_id, year_of_birth, encounter_count FROM gold_patient_demographics ORDER BY person_id"
	gold := strings.TrimSpace(duckQuery(t, sql))
	wantGold := "1,1971,1\n2,1999,2\n3,1973,3\n4,1974,4"
	if gold != wantGold {
		t.Errorf("gold_patient_demographics:\n got %q\nwant %q", gold, wantGold)
	}
	sql = fmt.Sprintf("SET VARIABLE lake = '%s';\n", out) + repoFile(t, "deploy/sql/omop_latest.sql") + ";\n" +
		"SELECT (SELECT count(*) FROM measurement), (SELECT count(*) FROM visit_occurrence)"
	if got := strings.TrimSpace(duckQuery(t, sql)); got != fmt.Sprintf("%d,15", perTable) {
		t.Errorf("latest views: measurement, visit_occurrence counts %q, want %d,15", got, perTable)
	}
}
