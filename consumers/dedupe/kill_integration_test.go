package dedupe_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/internal/stagekill"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationKillDedupe runs two 'fhirstream consume dedupe' processes in one group,
// SIGKILLs them at random points and restarts them while versions, exact repeats and
// stale versions of the same resources arrive, then checks that the unique topics hold
// every forwarded version exactly once (read_committed): state restored from the
// changelog after each kill still drops the repeats of what was forwarded before it.
func TestIntegrationKillDedupe(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	types := []string{"Patient", "Observation"}
	for _, typ := range types {
		c.CreateTopics(t, 4, topics.Valid(typ), topics.Unique(typ))
	}
	c.CreateTopics(t, 4, topics.DLQ())

	// Every resource as version 1; then a repeat of version 1 for every third, version
	// 2 for every fifth, and version 1 once more (now stale) for every fifteenth. A
	// resource's records share a key, so they arrive in this order.
	const perType, chunks = 2500, 20
	version := func(typ, id string, v int) string {
		return fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d","lastUpdated":"2024-01-0%dT00:00:00Z"},"status":"final"}`, typ, id, v, v)
	}
	want := map[string]bool{} // "<key>@<version>"
	var first, later []*kgo.Record
	for _, typ := range types {
		for i := range perType {
			id := fmt.Sprintf("%s-%05d", typ[:3], i)
			key := typ + "/" + id
			rec := func(v int) *kgo.Record {
				return &kgo.Record{Topic: topics.Valid(typ), Key: []byte(key), Value: []byte(version(typ, id, v))}
			}
			first = append(first, rec(1))
			want[key+"@1"] = true
			if i%3 == 0 {
				later = append(later, rec(1))
			}
			if i%5 == 0 {
				later = append(later, rec(2))
				want[key+"@2"] = true
			}
			if i%15 == 0 {
				later = append(later, rec(1))
			}
		}
	}
	recs := append(first, later...)
	run := stagekill.Start(t, c, stagekill.Config{Stage: "dedupe", Input: recs, Chunks: chunks, Kills: 8,
		ProducerOpts: []kgo.Opt{kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil))}})

	uniqueTopics := []string{topics.Unique("Patient"), topics.Unique("Observation")}
	deadline := time.Now().Add(3 * time.Minute)
	for len(c.ReadAll(t, uniqueTopics...)) < len(want) && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	// Stop both gracefully, then read once more: nothing may have been added twice.
	run.Stop()
	seen := map[string]int{}
	for _, r := range c.ReadAll(t, uniqueTopics...) {
		vid, _, _, err := dedupe.Meta(r.Value)
		if err != nil {
			t.Fatalf("%s: %v", r.Key, err)
		}
		seen[string(r.Key)+"@"+vid]++
	}
	for k, n := range seen {
		if n != 1 || !want[k] {
			t.Errorf("%s forwarded %d times, want %d", k, n, map[bool]int{true: 1}[want[k]])
		}
	}
	for k := range want {
		if seen[k] == 0 {
			t.Errorf("%s never forwarded", k)
		}
	}
	if dl := c.ReadAll(t, topics.DLQ()); len(dl) != 0 {
		t.Errorf("%d dead letters, want none", len(dl))
	}
	t.Logf("%d versions forwarded exactly once after %d process starts (logs in %s)", len(seen), run.Starts, run.LogDir)
}
