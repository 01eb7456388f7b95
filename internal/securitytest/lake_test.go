package securitytest_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apache/iceberg-go/catalog"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/securitytest"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testlake"
	"github.com/fhirstream/fhirstream/schemas"
)

// lakeMatchesInput compares the Iceberg lake the sinks committed, and the dead letters,
// with the export the generator wrote: the oracle is synth's own account of its output
// (good resources per type, and where each deliberately bad line must be rejected),
// never the pipeline's code. Every good resource, and every bad line only the OMOP mapper
// refuses, is one bronze row and one silver row of its type (each resource is exported
// once); every other bad line is one dead letter of the stage synth names; the OMOP
// tables hold exactly the rows the OMOP topics carry (an initial load: no retractions).
// The tables are read with iceberg-go's scan (testlake.CountRows).
func lakeMatchesInput(t *testing.T, r *run, lakeDir string, want synth.Counts) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wantFHIR := map[string]int64{}
	for typ, n := range want.Resources {
		wantFHIR[typ] = n
	}
	wantDead := map[string]int{}
	for _, d := range want.Bad {
		if d.ReachesUnique() {
			typ, _, _ := strings.Cut(d.Key, "/")
			wantFHIR[typ]++
		}
		wantDead[d.Stage]++
	}
	lake, err := lakehouse.Open(ctx, lakehouse.Config{Out: lakeDir})
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	count := func(l *lakehouse.Layout, column string) int64 {
		tbl, err := lake.LoadTable(ctx, l)
		if errors.Is(err, catalog.ErrNoSuchTable) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := testlake.CountRows(ctx, tbl, column)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	bronze := map[string]int64{}
	for _, typ := range slices.Sorted(maps.Keys(wantFHIR)) {
		bl, err := lakehouse.BronzeLayout(typ)
		if err != nil {
			t.Fatal(err)
		}
		sl, err := lakehouse.FHIRLayout(typ)
		if err != nil {
			t.Fatal(err)
		}
		bronze[typ] = count(bl, lakehouse.ColFHIRKey)
		if bronze[typ] != wantFHIR[typ] {
			t.Errorf("bronze.%s: %d rows, the export has %d", bl.Name, bronze[typ], wantFHIR[typ])
		}
		if n := count(sl, lakehouse.ColFHIRKey); n != wantFHIR[typ] {
			t.Errorf("fhir.%s: %d rows, the export has %d", sl.Name, n, wantFHIR[typ])
		}
	}

	admin := r.b.AdminConfig(securitytest.SASLSSL)
	admin.TopicPrefix = r.prefix
	gotDead := map[string]int{}
	if err := kafkaclient.ReadCommitted(ctx, admin, []string{r.topics.DLQ()}, func(rec *kgo.Record) {
		c, _ := deadletter.Parse(rec.Headers)
		gotDead[c.Stage]++
	}); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(gotDead, wantDead) {
		t.Errorf("dead letters by stage: %v, the export's bad lines say %v", gotDead, wantDead)
	}

	var omopTopics []string
	for _, table := range schemas.OMOPTables() {
		omopTopics = append(omopTopics, r.topics.OMOP(table))
	}
	onTopics := map[string]int64{}
	if err := kafkaclient.ReadCommitted(ctx, admin, omopTopics, func(rec *kgo.Record) {
		table, _ := r.topics.ParseOMOPTopic(rec.Topic)
		onTopics[table]++
	}); err != nil {
		t.Fatal(err)
	}
	var omopRows int64
	for _, table := range schemas.OMOPTables() {
		l, err := lakehouse.OMOPLayout(table)
		if err != nil {
			t.Fatal(err)
		}
		n := count(l, schemas.ColFHIRKey)
		omopRows += n
		if n != onTopics[table] {
			t.Errorf("omop.%s: %d rows, its topic carries %d", table, n, onTopics[table])
		}
	}
	if omopRows == 0 {
		t.Error("the OMOP tables are empty")
	}
	t.Logf("lake: bronze %v; %d OMOP rows; dead letters %v", bronze, omopRows, gotDead)
}
