package pipeline_test

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationPipelineProgressAndLabels publishes a small generated export, runs every
// stage until drained and checks what Progress reports against the input, that the
// consumer groups carry the group prefix, and that every stage's goroutines run under
// their pprof label.
func TestIntegrationPipelineProgressAndLabels(t *testing.T) {
	c := testkafka.New(t)
	kc := c.Config()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	counts, err := synth.WriteDir(ctx, synth.Config{Patients: 2, Seed: 3}, filepath.Join(dir, "export"))
	if err != nil {
		t.Fatal(err)
	}
	// The contract's topics exist before the stages start, as after `fhirstream topics
	// create`: a stage subscribed by pattern would otherwise find topics created later
	// only at its next metadata refresh.
	specs := kafkaclient.ContractTopics(schemas.MustTopics(kc.TopicPrefix), schemas.BulkResourceTypes, schemas.OMOPTables(),
		kafkaclient.TopicOptions{Partitions: 3, ReplicationFactor: -1})
	if _, err := kafkaclient.EnsureTopics(ctx, c.Admin(t), specs); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Start(ctx, pipeline.Config{Kafka: kc, Lake: lakehouse.Config{Out: filepath.Join(dir, "lake")},
		SinkFlushInterval: 100 * time.Millisecond, MeasureBytes: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop() //nolint:errcheck // checked below
	// The test's topic prefix is not the default, so every group carries it: pipelines on
	// different prefixes never share a group.
	if len(p.Groups()) != len(pipeline.Stages(schemas.TopologyOptions{})) {
		t.Errorf("groups %v, stages %v", p.Groups(), pipeline.Stages(schemas.TopologyOptions{}))
	}
	for _, g := range p.Groups() {
		if !strings.HasPrefix(g, c.Prefix+"-fhirstream-") {
			t.Errorf("group %q lacks the topic prefix %q", g, c.Prefix)
		}
	}
	sum, err := producer.Fetch(ctx, producer.Config{Kafka: kc, Partitions: 3, From: []string{filepath.Join(dir, "export")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}

	// Every stage's goroutines, its Kafka clients' included, carry its label.
	var goroutines bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&goroutines, 1); err != nil {
		t.Fatal(err)
	}
	for _, stage := range pipeline.Stages(schemas.TopologyOptions{}) {
		label := `"` + pipeline.ProfileLabel + `":"` + stage + `"`
		if !strings.Contains(goroutines.String(), label) {
			t.Errorf("no goroutine labelled %s", label)
		}
	}

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	got, err := p.Progress()
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]pipeline.StageProgress{}
	for i, s := range got {
		if s.Name != pipeline.Stages(schemas.TopologyOptions{})[i] || s.Group != p.Groups()[i] {
			t.Fatalf("progress %d is %s (group %s), want %s (group %s)", i, s.Name, s.Group, pipeline.Stages(schemas.TopologyOptions{})[i], p.Groups()[i])
		}
		by[s.Name] = s
		if s.BytesIn <= 0 || s.Batches <= 0 {
			t.Errorf("%s: %d bytes in, %d batches", s.Name, s.BytesIn, s.Batches)
		}
	}
	if sum.Resources() != counts.Total() {
		t.Fatalf("fetched %d of %d resources", sum.Resources(), counts.Total())
	}
	flow := []struct {
		what     string
		got, exp int64
	}{
		{"validate in", by[pipeline.StageValidate].In, counts.Total()},
		{"validate out + dead letters", by[pipeline.StageValidate].Out + by[pipeline.StageValidate].DeadLetters, counts.Total()},
		{"dedupe in", by[pipeline.StageDedupe].In, by[pipeline.StageValidate].Out},
		{"omop in", by[pipeline.StageOMOP].In, by[pipeline.StageDedupe].Out},
		{"sink-bronze in", by[pipeline.StageSinkBronze].In, by[pipeline.StageDedupe].Out},
		{"sink-bronze bytes in", by[pipeline.StageSinkBronze].BytesIn, by[pipeline.StageDedupe].BytesOut},
		{"sink-silver in", by[pipeline.StageSinkSilver].In, by[pipeline.StageDedupe].Out},
		{"sink-silver bytes in", by[pipeline.StageSinkSilver].BytesIn, by[pipeline.StageDedupe].BytesOut},
		{"sink-omop in", by[pipeline.StageSinkOMOP].In, by[pipeline.StageOMOP].Out},
		{"sink-omop bytes in", by[pipeline.StageSinkOMOP].BytesIn, by[pipeline.StageOMOP].BytesOut},
	}
	for _, f := range flow {
		if f.got != f.exp {
			t.Errorf("%s: %d, want %d", f.what, f.got, f.exp)
		}
	}
	if by[pipeline.StageOMOP].Out == 0 || by[pipeline.StageSinkOMOP].Out != by[pipeline.StageOMOP].Out {
		t.Errorf("omop wrote %d rows, sink-omop %d", by[pipeline.StageOMOP].Out, by[pipeline.StageSinkOMOP].Out)
	}
}
