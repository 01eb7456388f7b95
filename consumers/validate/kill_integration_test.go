package validate_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/stagekill"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationKillValidate runs two 'fhirstream consume validate' processes in one
// group, SIGKILLs them at random points and restarts them, then checks that the valid
// and dead-letter topics hold every expected record exactly once (read_committed).
func TestIntegrationKillValidate(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	types := []string{"Patient", "Observation"}
	for _, typ := range types {
		c.CreateTopics(t, 4, topics.Raw(typ), topics.Valid(typ))
	}
	c.CreateTopics(t, 4, topics.DLQ())

	// The input is produced in chunks while the processes run and are killed, so the
	// kills land mid-stream: in a poll, a batch, or between produce and commit.
	const perType, badEvery, chunks = 3000, 10, 20
	wantValid, wantDead := map[string]bool{}, map[string]bool{}
	var recs []*kgo.Record
	for _, typ := range types {
		for i := range perType {
			id := fmt.Sprintf("%s-%05d", typ[:3], i)
			key := typ + "/" + id
			var v string
			switch {
			case i%badEvery == 0 && typ == "Patient":
				v = fmt.Sprintf(`{"resourceType":"Patient","id":%q,"birthDate":"1970-13-01"}`, id)
				wantDead[key] = true
			case i%badEvery == 0:
				v = fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":7}`, id)
				wantDead[key] = true
			case typ == "Patient":
				v = fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":"female","birthDate":"1970-01-01"}`, id)
				wantValid[key] = true
			default:
				v = fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/Pat-%05d"}}`, id, i)
				wantValid[key] = true
			}
			recs = append(recs, &kgo.Record{Topic: topics.Raw(typ), Key: []byte(key), Value: []byte(v)})
		}
	}
	run := stagekill.Start(t, c, stagekill.Config{Stage: "validate", Input: recs, Chunks: chunks, Kills: 8})

	validTopics := []string{topics.Valid("Patient"), topics.Valid("Observation")}
	deadline := time.Now().Add(3 * time.Minute)
	var valid, dead []*kgo.Record
	for {
		valid, dead = c.ReadAll(t, validTopics...), c.ReadAll(t, topics.DLQ())
		if len(valid) >= len(wantValid) && len(dead) >= len(wantDead) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Stop both gracefully, then read once more: nothing may have been added twice.
	run.Stop()
	valid, dead = c.ReadAll(t, validTopics...), c.ReadAll(t, topics.DLQ())
	checkOnce(t, "valid", valid, wantValid)
	checkOnce(t, "dead-letter", dead, wantDead)
	for _, r := range dead {
		if dc, ok := deadletter.Parse(r.Headers); !ok || dc.Stage != "validate" || dc.Class != validate.ClassBadFormat {
			t.Fatalf("dead letter %s: %+v", r.Key, dc)
		}
	}
	t.Logf("%d valid and %d dead letters exactly once after %d process starts (logs in %s)", len(valid), len(dead), run.Starts, run.LogDir)
}

func checkOnce(t *testing.T, what string, recs []*kgo.Record, want map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Key)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s: %s appears %d times", what, k, n)
		}
		if !want[k] {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
	missing := 0
	for k := range want {
		if seen[k] == 0 {
			missing++
		}
	}
	if missing > 0 || t.Failed() {
		t.Fatalf("%s: %d records, %d distinct, %d missing of %d", what, len(recs), len(seen), missing, len(want))
	}
}
