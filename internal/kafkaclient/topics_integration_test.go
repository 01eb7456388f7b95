package kafkaclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// The contract's topics are created once; a second run creates and alters nothing, and
// compacted state topics really are compacted.
func TestIntegrationEnsureTopicsIdempotent(t *testing.T) {
	c := testkafka.New(t)
	// Each phase uses a fresh client, as separate command runs would: a client caches
	// the metadata it saw, including "unknown topic" from before the create.
	adm := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp := schemas.MustTopics(c.Prefix)
	specs := kafkaclient.ContractTopics(tp, []string{"Patient", "Observation"}, []string{"person"},
		kafkaclient.TopicOptions{Partitions: 3, ReplicationFactor: 1})

	first, err := kafkaclient.EnsureTopics(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Created) != len(specs) {
		t.Fatalf("first run created %d of %d topics: %+v", len(first.Created), len(specs), first)
	}
	adm = c.Admin(t)
	second, err := kafkaclient.EnsureTopics(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Created) != 0 || len(second.Altered) != 0 || len(second.Existing) != len(specs) || len(second.Warnings) != 0 {
		t.Fatalf("second run was not a no-op: %+v", second)
	}

	details, err := adm.ListTopics(ctx, tp.Raw("Patient"), tp.State("dedupe"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details[tp.Raw("Patient")].Partitions); n != 3 {
		t.Fatalf("raw topic has %d partitions, want 3: %+v", n, details)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, tp.State("dedupe"), tp.Raw("Patient"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{tp.State("dedupe"): "compact", tp.Raw("Patient"): "delete"}
	for _, rc := range cfgs {
		for _, cfg := range rc.Configs {
			if cfg.Key == "cleanup.policy" && (cfg.Value == nil || *cfg.Value != want[rc.Name]) {
				t.Errorf("%s cleanup.policy = %v, want %s", rc.Name, cfg.Value, want[rc.Name])
			}
		}
	}

	// A topic asked for with more partitions than it has is reported, not changed.
	specs[0].Partitions = 5
	third, err := kafkaclient.EnsureTopics(ctx, adm, specs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if len(third.Warnings) != 1 {
		t.Fatalf("partition mismatch not reported: %+v", third)
	}
}
