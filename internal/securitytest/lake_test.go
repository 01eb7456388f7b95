package securitytest_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/securitytest"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// lakeMatchesInput compares what the sinks committed, and the dead letters, with the
// export the generator wrote: the oracle is synth's own account of its output (good
// resources per type, and where each deliberately bad line must be rejected), never the
// pipeline's code. Every good resource, and every bad line only the OMOP mapper refuses,
// is one bronze row of its type; every other bad line is one dead letter of the stage
// synth names; the OMOP lake holds exactly the rows on the OMOP topics.
//
// This is the one place that reads the lake; a new lake (Iceberg tables) changes it here.
func lakeMatchesInput(t *testing.T, r *run, want synth.Counts, stats map[string]sink.Stats) {
	t.Helper()
	wantBronze := map[string]int64{}
	for typ, n := range want.Resources {
		wantBronze[typ] = n
	}
	wantDead := map[string]int{}
	for _, d := range want.Bad {
		if d.ReachesUnique() {
			typ, _, _ := strings.Cut(d.Key, "/")
			wantBronze[typ]++
		}
		wantDead[d.Stage]++
	}
	bronze := stats[schemas.NodeSinkBronze].Rows
	for _, typ := range slices.Sorted(maps.Keys(wantBronze)) {
		if bronze[typ] != wantBronze[typ] {
			t.Errorf("bronze lake %s: %d rows, the export has %d", typ, bronze[typ], wantBronze[typ])
		}
	}
	for typ, n := range bronze {
		if _, ok := wantBronze[typ]; !ok {
			t.Errorf("bronze lake %s: %d rows of a type the export does not have", typ, n)
		}
	}

	admin := r.b.AdminConfig(securitytest.SASLSSL)
	admin.TopicPrefix = r.prefix
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
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
	var onTopics, tombstones int64
	if err := kafkaclient.ReadCommitted(ctx, admin, omopTopics, func(rec *kgo.Record) {
		if rec.Value == nil {
			tombstones++
		} else {
			onTopics++
		}
	}); err != nil {
		t.Fatal(err)
	}
	var omopRows int64
	for _, n := range stats[schemas.NodeSinkOMOP].Rows {
		omopRows += n
	}
	if onTopics == 0 || omopRows != onTopics {
		t.Errorf("OMOP lake: %d rows, the OMOP topics hold %d (and %d tombstones)", omopRows, onTopics, tombstones)
	}
	t.Logf("lake: bronze %v; %d OMOP rows; dead letters %v", bronze, omopRows, gotDead)
}
