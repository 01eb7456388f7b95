package dlq_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/dlq"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func patient(id, version, gender string) string {
	return fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"versionId":%q,"lastUpdated":"2024-0%s-01T00:00:00Z"},"gender":%q,"birthDate":"1970-01-01"}`,
		id, version, version, gender)
}

func observation(id, status, system string) string {
	return fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":%q,"code":{"coding":[{%s"code":"8867-4"}]},"subject":{"reference":"Patient/p1"}}`,
		id, status, system)
}

const loinc = `"system":"http://loinc.org",`

// startStage runs def until the returned stop is called.
func startStage(t *testing.T, c *testkafka.Cluster, def stage.Definition) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := runtime.Run(ctx, c.Config(), def, runtime.Options{Logger: quiet(), TopicRefresh: time.Second, RetryBackoff: 10 * time.Millisecond}); err != nil {
			t.Errorf("stage %s: %v", def.Name(), err)
		}
	}()
	return func() { cancel(); <-done }
}

// waitRecords reads topics until exactly want records are there, and then a little
// longer (a second stable read) to catch any extra that would make the count wrong.
func waitRecords(t *testing.T, c *testkafka.Cluster, want int, topics ...string) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		recs := c.ReadAll(t, topics...)
		if len(recs) >= want || time.Now().After(deadline) || t.Failed() {
			return recs
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func describe(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		s := string(r.Key)
		if r.Value == nil {
			s += " tombstone"
		} else if v := r.Value; len(v) > 0 {
			for _, f := range []string{`"versionId":"`, `"status":"`} {
				if i := strings.Index(string(v), f); i >= 0 {
					rest := string(v[i+len(f):])
					s += " " + rest[:strings.IndexByte(rest, '"')]
				}
			}
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func TestIntegrationStagesValidateDedupeReplay(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	c.CreateTopics(t, 3, topics.Raw("Patient"), topics.Raw("Observation"))

	type in struct{ key, value string }
	feed := []in{
		{"Patient/p1", patient("p1", "1", "female")},
		{"Patient/p1", patient("p1", "1", "female")}, // exact repeat
		{"Patient/p1", patient("p1", "2", "male")},   // updated
		{"Patient/p1", patient("p1", "1", "female")}, // stale, after v2
		{"Patient/p2", patient("p2", "1", "M")},      // invalid code
		{"Patient/p3", ""},                           // tombstone
		{"Observation/o1", observation("o1", "final", loinc)},
		{"Observation/o2", observation("o2", "", loinc)},   // bad status (empty string, not in value set)
		{"Observation/o3", observation("o3", "final", "")}, // coding without system
		{"Observation/o4", `{"resourceType":"Observation","id":"o4"`},
		{"Observation/o5", observation("o5", "final", loinc)},
		{"Observation/o5", observation("o5", "amended", loinc)}, // no meta: changed content
	}
	cl := c.Client(t)
	for _, f := range feed {
		typ, _, _ := strings.Cut(f.key, "/")
		r := &kgo.Record{Topic: topics.Raw(typ), Key: []byte(f.key),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderSourceLine, Value: []byte("7")}}}
		if f.value != "" {
			r.Value = []byte(f.value)
		}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	topo := topics.Topology(schemas.TopologyOptions{})
	valDef := validate.Definition(topo, validate.Options{}).WithGroup(c.Group("validate"))
	dedDef := dedupe.Definition(topo).WithGroup(c.Group("dedupe"))
	stopVal := startStage(t, c, valDef)
	stopDed := startStage(t, c, dedDef)

	validTopics := []string{topics.Valid("Patient"), topics.Valid("Observation")}
	uniqueTopics := []string{topics.Unique("Patient"), topics.Unique("Observation")}
	valid := waitRecords(t, c, 8, validTopics...)
	unique := waitRecords(t, c, 6, uniqueTopics...)
	dead := waitRecords(t, c, 4, topics.DLQ())

	wantValid := []string{"Observation/o1 final", "Observation/o5 amended", "Observation/o5 final",
		"Patient/p1 1", "Patient/p1 1", "Patient/p1 1", "Patient/p1 2", "Patient/p3 tombstone"}
	wantUnique := []string{"Observation/o1 final", "Observation/o5 amended", "Observation/o5 final",
		"Patient/p1 1", "Patient/p1 2", "Patient/p3 tombstone"}
	if got := describe(valid); fmt.Sprint(got) != fmt.Sprint(wantValid) {
		t.Errorf("valid topics hold\n %v\nwant\n %v", got, wantValid)
	}
	if got := describe(unique); fmt.Sprint(got) != fmt.Sprint(wantUnique) {
		t.Errorf("unique topics hold\n %v\nwant\n %v", got, wantUnique)
	}
	reasons := map[string]string{}
	for _, r := range dead {
		dc, ok := deadletter.Parse(r.Headers)
		if !ok || dc.Stage != "validate" || dc.Offset < 0 || !strings.Contains(dc.SourceTopic, ".raw.") {
			t.Errorf("dead letter %s without full context: %+v", r.Key, dc)
		}
		if h := r.Headers[0]; h.Key != schemas.HeaderSourceLine {
			t.Errorf("dead letter %s lost its original headers", r.Key)
		}
		reasons[string(r.Key)] = dc.Class + " " + dc.Path
	}
	wantReasons := map[string]string{
		"Patient/p2":     "bad-code Patient.gender",
		"Observation/o2": "bad-format Observation.status",
		"Observation/o3": "bad-coding Observation.code.coding[0].system",
		"Observation/o4": "invalid-json ",
	}
	if fmt.Sprint(reasons) != fmt.Sprint(wantReasons) {
		t.Errorf("dead letters %v, want %v", reasons, wantReasons)
	}
	counts, err := dlq.Stats(context.Background(), c.Config(), topics.DLQ(), dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if counts.Total != 4 || counts.ByClass["validate/bad-coding"] != 1 || counts.BySource[topics.Raw("Observation")] != 3 {
		t.Errorf("stats %+v", counts)
	}
	if t.Failed() {
		stopVal()
		stopDed()
		return
	}

	// Fix the rule (relax bad-coding) and replay the validate dead letters of that
	// class: o3 must flow through to unique exactly once, and a second replay with
	// the same filter has nothing left to do.
	stopVal()
	relaxed := validate.Definition(topo, validate.Options{Relax: []string{validate.ClassBadCoding}}).WithGroup(valDef.Node.Group)
	stopVal = startStage(t, c, relaxed)
	defer stopVal()
	defer stopDed()

	ctx := context.Background()
	filter := dlq.Filter{Stages: []string{"validate"}, Classes: []string{validate.ClassBadCoding}}
	group := c.Group("replay")
	dry, err := dlq.Replay(ctx, c.Config(), topics, dlq.ReplayOptions{Filter: filter, DryRun: true, Group: group, Logger: quiet()})
	if err != nil || dry.Replayed != 1 || len(dry.Histogram) != 1 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	res, err := dlq.Replay(ctx, c.Config(), topics, dlq.ReplayOptions{Filter: filter, Group: group, Logger: quiet()})
	if err != nil || res.Replayed != 1 || res.Parked != 0 {
		t.Fatalf("replay: %+v %v", res, err)
	}
	again, err := dlq.Replay(ctx, c.Config(), topics, dlq.ReplayOptions{Filter: filter, Group: group, Logger: quiet()})
	if err != nil || again.Replayed != 0 {
		t.Fatalf("second replay resumed nothing? %+v %v", again, err)
	}
	unique = waitRecords(t, c, 7, uniqueTopics...)
	got := describe(unique)
	n := 0
	for _, s := range got {
		if strings.HasPrefix(s, "Observation/o3") {
			n++
		}
	}
	if len(unique) != 7 || n != 1 {
		t.Fatalf("after replay unique holds %v; want the 6 before plus o3 once", got)
	}
	for _, r := range unique {
		if string(r.Key) != "Observation/o3" {
			continue
		}
		if _, ok := deadletter.Parse(r.Headers); ok {
			t.Error("replayed record still carries the dead-letter context")
		}
		var count, line string
		for _, h := range r.Headers {
			switch h.Key {
			case schemas.DLQReplayCount:
				count = string(h.Value)
			case schemas.HeaderSourceLine:
				line = string(h.Value)
			}
		}
		if count != "1" || line != "7" {
			t.Errorf("replayed record headers: replay count %q, source line %q", count, line)
		}
	}
}
