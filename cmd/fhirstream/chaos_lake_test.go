package main

// Helpers of TestIntegrationChaos: what the lake must hold, computed from the generated
// input alone, and what it does hold, read from its Iceberg tables.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// chaosExpect is what a run over a generated export must produce, derived from the
// files without Kafka, the stage runtime or the sinks: the parts under test.
type chaosExpect struct {
	// rawLines are the lines the fetcher must publish, once each: type → line numbers.
	rawLines map[string]map[int64]bool
	raw      int64
	// unique are the ids that must reach fhir.unique and the bronze lake: type → ids.
	unique map[string]map[string]bool
	// omopKeys counts the OMOP rows per table and source resource key, from the OMOP
	// mapper applied to each resource directly.
	omopKeys map[string]map[string]int
	omopRows int64
	// patients are the good Patient lines: one person row each, a check on the
	// mapper-derived figures that needs no mapper.
	patients int64
	// dead are the dead letters, by chaosDeadKey.
	dead map[string]int
}

// chaosDeadKey identifies a dead letter by stage, class, file type, line and key.
func chaosDeadKey(stage, class, file string, line int64, key string) string {
	return fmt.Sprintf("%s %s %s:%d key=%q", stage, class, file, line, key)
}

// chaosRows is a stage.Emitter that keeps the OMOP rows' tables and keys.
type chaosRows struct {
	topics schemas.Topics
	rows   map[string]map[string]int
	n      int64
}

func (c *chaosRows) Emit(r stage.Record) {
	table, ok := c.topics.ParseOMOPTopic(r.Topic)
	if !ok {
		panic("OMOP mapper wrote to " + r.Topic)
	}
	if c.rows[table] == nil {
		c.rows[table] = map[string]int{}
	}
	c.rows[table][string(r.Key)]++
	c.n++
}

// chaosExpectFromInput reads the export in dir, whose bad lines are bad, line by line. It
// runs beside the pipeline, so it returns errors rather than failing the test.
func chaosExpectFromInput(dir string, topics schemas.Topics, bad []synth.DeadLetter) (*chaosExpect, error) {
	x := &chaosExpect{rawLines: map[string]map[int64]bool{}, unique: map[string]map[string]bool{},
		omopKeys: map[string]map[string]int{}, dead: map[string]int{}}
	badAt := map[string]synth.DeadLetter{}
	for _, d := range bad {
		badAt[fmt.Sprintf("%s:%d", d.File, d.Line)] = d
		x.dead[chaosDeadKey(d.Stage, d.Class, d.File, d.Line, d.Key)]++
	}
	mapper, err := omop.New(omop.Config{Topics: topics})
	if err != nil {
		return nil, err
	}
	out := &chaosRows{topics: topics, rows: x.omopKeys}
	var p fastjson.Parser
	for _, typ := range synth.ResourceTypes {
		f, err := os.Open(filepath.Join(dir, synth.FileName(typ, false)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		x.rawLines[typ], x.unique[typ] = map[int64]bool{}, map[string]bool{}
		br := bufio.NewReaderSize(f, 1<<20)
		for n := int64(1); ; n++ {
			line, err := br.ReadBytes('\n')
			if err == io.EOF && len(line) == 0 {
				break
			}
			if err != nil && err != io.EOF {
				return nil, err
			}
			line = bytes.TrimSuffix(line, []byte{'\n'})
			d, isBad := badAt[fmt.Sprintf("%s:%d", typ, n)]
			if isBad && d.Stage == synth.StageFetch {
				continue
			}
			x.rawLines[typ][n] = true
			x.raw++
			if isBad && !d.ReachesUnique() {
				continue
			}
			v, err := p.ParseBytes(line)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %v", typ, n, err)
			}
			id := string(v.GetStringBytes("id"))
			x.unique[typ][id] = true
			key := []byte(typ + "/" + id)
			err = mapper.Process(context.Background(), &stage.Record{Topic: topics.Unique(typ), Key: key, Value: line}, nil, out)
			if isBad {
				if rej, ok := stage.AsRejection(err); !ok || rej.Class != d.Class {
					return nil, fmt.Errorf("%s line %d: the OMOP mapper gives %v, want a %s rejection", typ, n, err, d.Class)
				}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%s line %d: the OMOP mapper rejects a good resource: %v", typ, n, err)
			}
			if typ == synth.TypePatient {
				x.patients++
			}
		}
		f.Close()
	}
	x.omopRows = out.n
	return x, nil
}

// chaosCountRaw counts the records on the raw topics by source file type and line: each line
// the fetcher published must be there exactly once, even across its kills. Dedupe would
// hide a repeat, so this is checked before it.
func chaosCountRaw(ctx context.Context, t *testing.T, c *testkafka.Cluster, topics []string) map[string]map[int64]int {
	t.Helper()
	got := map[string]map[int64]int{}
	err := kafkaclient.ReadCommitted(ctx, c.Config(), topics, func(r *kgo.Record) {
		typ, line := chaosSourceOf(r)
		if got[typ] == nil {
			got[typ] = map[int64]int{}
		}
		got[typ][line]++
	})
	if err != nil {
		t.Fatalf("read raw topics: %v", err)
	}
	return got
}

// chaosSourceOf is the resource type and source line a record's headers name.
func chaosSourceOf(r *kgo.Record) (typ string, line int64) {
	for _, h := range r.Headers {
		switch h.Key {
		case schemas.HeaderResourceType:
			typ = string(h.Value)
		case schemas.HeaderSourceLine:
			line, _ = strconv.ParseInt(string(h.Value), 10, 64)
		}
	}
	return typ, line
}

// chaosDeadLetters reads the dead-letter topic into chaosDeadKey counts.
func chaosDeadLetters(ctx context.Context, t *testing.T, c *testkafka.Cluster, dlq string) map[string]int {
	t.Helper()
	got := map[string]int{}
	err := kafkaclient.ReadCommitted(ctx, c.Config(), []string{dlq}, func(r *kgo.Record) {
		dc, ok := deadletter.Parse(r.Headers)
		if !ok {
			got["a record without dead-letter headers"]++
			return
		}
		typ, line := chaosSourceOf(r)
		got[chaosDeadKey(dc.Stage, dc.Class, typ, line, string(r.Key))]++
	})
	if err != nil {
		t.Fatalf("read %s: %v", dlq, err)
	}
	return got
}

// chaosDiff describes how got differs from want, at most limit entries.
func chaosDiff[K comparable](want, got map[K]int, limit int) []string {
	var diffs []string
	for k, n := range got {
		if want[k] != n {
			diffs = append(diffs, fmt.Sprintf("%v: %d, want %d", k, n, want[k]))
		}
	}
	for k, n := range want {
		if _, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%v: missing, want %d", k, n))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > limit {
		diffs = append(diffs[:limit], fmt.Sprintf("… and %d more", len(diffs)-limit))
	}
	return diffs
}

// chaosTableColumn calls each for every value of a column of a lake table's current
// state, read through iceberg-go's scan (the sink writes with parquet-go; the scan reads
// with arrow-go and applies any deletes). A table that does not exist has no values.
func chaosTableColumn(t *testing.T, lake *lakehouse.Lake, l *lakehouse.Layout, column string, each func(arrow.Array, int)) {
	t.Helper()
	tbl, err := lake.LoadTable(context.Background(), l)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	_, itr, err := tbl.Scan(table.WithSelectedFields(column)).ToArrowRecords(context.Background())
	if err != nil {
		t.Fatalf("scan %s: %v", l, err)
	}
	for rec, err := range itr {
		if err != nil {
			t.Fatalf("scan %s: %v", l, err)
		}
		for i := range int(rec.NumRows()) {
			each(rec.Column(0), i)
		}
		rec.Release()
	}
}

// chaosLakeStrings returns the values of a string column of a table, with how often each occurs.
func chaosLakeStrings(t *testing.T, lake *lakehouse.Lake, l *lakehouse.Layout, column string) (map[string]int, int) {
	t.Helper()
	got, rows := map[string]int{}, 0
	chaosTableColumn(t, lake, l, column, func(a arrow.Array, i int) {
		got[a.(*array.String).Value(i)]++
		rows++
	})
	return got, rows
}

// chaosLakeDistinctInt64 counts the distinct values of an integer column of a table.
func chaosLakeDistinctInt64(t *testing.T, lake *lakehouse.Lake, l *lakehouse.Layout, column string) int {
	t.Helper()
	seen := map[int64]bool{}
	chaosTableColumn(t, lake, l, column, func(a arrow.Array, i int) { seen[a.(*array.Int64).Value(i)] = true })
	return len(seen)
}

// chaosPyicebergCounts reads the OMOP and bronze tables with pyiceberg (another reader
// again, through the embedded catalog's SQLite database): rows and distinct ids per
// table ("omop.<table>", "bronze.<type>"). An initial load writes no delete files, so
// pyiceberg, which refuses equality deletes, reads it as it is. It returns nil when
// python3 with pyiceberg is not installed (CI installs it).
func chaosPyicebergCounts(t *testing.T, lakeDir string) map[string][2]int64 {
	t.Helper()
	if exec.Command("python3", "-c", "import pyiceberg.catalog.sql").Run() != nil {
		return nil
	}
	var queries []string
	for _, table := range schemas.OMOPTables() {
		tm, err := schemas.OMOPTable(table)
		if err != nil {
			t.Fatal(err)
		}
		queries = append(queries, fmt.Sprintf("omop.%s\t%s", table, tm.Columns[0].Name))
	}
	for _, typ := range synth.ResourceTypes {
		queries = append(queries, fmt.Sprintf("bronze.%s\tid", lakehouse.TableName(typ)))
	}
	const script = `
import json, sys
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
cat, out = SqlCatalog(sys.argv[1], uri="sqlite:///" + sys.argv[2]), {}
for q in sys.argv[3:]:
    name, col = q.split("\t")
    try:
        a = cat.load_table(name).scan(selected_fields=(col,)).to_arrow()
    except NoSuchTableError:
        continue
    out[name] = [a.num_rows, pc.count_distinct(a[col]).as_py()]
print(json.dumps(out))
`
	args := append([]string{"-c", script, lakehouse.EmbeddedCatalogName, filepath.Join(lakeDir, lakehouse.CatalogFile)}, queries...)
	out, err := exec.Command("python3", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("pyiceberg: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("pyiceberg: %v", err)
	}
	var got map[string][2]int64
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("pyiceberg output %q: %v", out, err)
	}
	return got
}

// chaosSortedKeys returns m's keys in order, for stable reports.
func chaosSortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
