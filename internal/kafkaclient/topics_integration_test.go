package kafkaclient_test

import (
	"context"
	"strings"
	"sync"
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

	// A topic listed twice (a fetcher lists a type's raw topic once per file) is
	// created once.
	first, err := kafkaclient.EnsureTopics(ctx, adm, append(specs[:len(specs):len(specs)], specs[0]))
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
	// Topics of different configs are created in one go, each with its own configs.
	cfgs, err := adm.DescribeTopicConfigs(ctx, tp.State("dedupe"), tp.Raw("Patient"), tp.DLQ())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		tp.State("dedupe"): {"cleanup.policy": "compact"},
		tp.Raw("Patient"):  {"cleanup.policy": "delete"},
		tp.DLQ():           {"cleanup.policy": "delete", "retention.ms": "2592000000"},
	}
	for _, rc := range cfgs {
		for _, cfg := range rc.Configs {
			if w, ok := want[rc.Name][cfg.Key]; ok && (cfg.Value == nil || *cfg.Value != w) {
				t.Errorf("%s %s = %v, want %s", rc.Name, cfg.Key, cfg.Value, w)
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

// Processes ensuring the same topics at once all succeed, and each topic is created by
// exactly one of them: the others find it listed or lose the create race to it
// (TopicAlreadyExists), and count it as existing.
func TestIntegrationEnsureTopicsConcurrent(t *testing.T) {
	c := testkafka.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	specs := kafkaclient.ContractTopics(schemas.MustTopics(c.Prefix), []string{"Patient", "Encounter"}, nil,
		kafkaclient.TopicOptions{Partitions: 2, ReplicationFactor: 1})
	const runs = 4
	results := make([]kafkaclient.EnsureResult, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		adm := c.Admin(t)
		wg.Go(func() { results[i], errs[i] = kafkaclient.EnsureTopics(ctx, adm, specs) })
	}
	wg.Wait()
	createdBy := map[string]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if n := len(r.Created) + len(r.Altered) + len(r.Existing); n != len(specs) {
			t.Errorf("run %d accounts for %d of %d topics: %+v", i, n, len(specs), r)
		}
		for _, name := range r.Created {
			createdBy[name]++
		}
	}
	for _, s := range specs {
		if createdBy[s.Name] != 1 {
			t.Errorf("%s created by %d runs, want 1", s.Name, createdBy[s.Name])
		}
	}
}

// TestIntegrationEnsureTopicsExistRefusesASmallerRecordLimit: a topic created by someone
// else with the broker's default max.message.bytes would refuse the producer's larger
// batches (MESSAGE_TOO_LARGE), making a stage abort and redo its transactions without
// end; EnsureTopicsExist says so before anything is produced, and accepts a topic whose
// limit is at least the client's.
func TestIntegrationEnsureTopicsExistRefusesASmallerRecordLimit(t *testing.T) {
	c := testkafka.New(t)
	adm := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	small, large := c.Prefix+".small", c.Prefix+".large"
	for topic, limit := range map[string]string{small: "1048588", large: "16777216"} {
		resp, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{"max.message.bytes": &limit}, topic)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := kafkaclient.WaitTopicsVisible(ctx, adm, []string{small, large}); err != nil {
		t.Fatal(err)
	}
	spec := func(name string) kafkaclient.TopicSpec {
		return kafkaclient.TopicSpec{Name: name, Partitions: 1, ReplicationFactor: 1,
			Configs: map[string]string{"max.message.bytes": "8388608"}}
	}
	_, err := kafkaclient.EnsureTopicsExist(ctx, adm, []kafkaclient.TopicSpec{spec(large), spec(small)})
	if err == nil || !strings.Contains(err.Error(), "topic "+small+" accepts record batches of at most 1048588 bytes") ||
		!strings.Contains(err.Error(), "--max-record-bytes") {
		t.Fatalf("got %v, want the small topic's limit named with the way out", err)
	}
	if _, err := kafkaclient.EnsureTopicsExist(ctx, adm, []kafkaclient.TopicSpec{spec(large)}); err != nil {
		t.Fatalf("a topic accepting larger batches than the client's: %v", err)
	}
}
