package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/internal/testwait"
	"github.com/fhirstream/fhirstream/schemas"
)

func TestParseGroupOverrides(t *testing.T) {
	got, err := ParseGroupOverrides([]string{"validate=a-validate", "sink-omop=a-sink"})
	if err != nil || len(got) != 2 || got["validate"] != "a-validate" || got["sink-omop"] != "a-sink" {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"validate", "=g", "validate="} {
		if _, err := ParseGroupOverrides([]string{bad}); err == nil || !strings.Contains(err.Error(), "STAGE=GROUP") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}

// TestIntegrationStatus feeds records with known partitions to the raw topics, checks the
// validate stage's backlog before it runs, then runs it and checks its members, lag and
// dead letters as 'fhirstream status --output json' reports them.
func TestIntegrationStatus(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	c.CreateTopics(t, 3, topics.Raw("Patient"))
	c.CreateTopics(t, 2, topics.Raw("Observation"))
	groups := map[string]string{}
	consumers := topics.Topology(schemas.TopologyOptions{}).Consumers()
	for _, n := range consumers {
		groups[n.Name] = c.Group(n.Name)
	}

	patient := func(id, gender string) string {
		return fmt.Sprintf(`{"resourceType":"Patient","id":%q,"gender":%q,"birthDate":"1970-01-01"}`, id, gender)
	}
	observation := func(id string) string {
		return fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"}}`, id)
	}
	feed := []struct {
		partition int32
		key, val  string
	}{
		{0, "Patient/p1", patient("p1", "female")},
		{0, "Patient/p2", patient("p2", "male")},
		{0, "Patient/p3", patient("p3", "other")},
		{1, "Patient/p4", patient("p4", "unknown")},
		{1, "Patient/p5", patient("p5", "M")}, // bad-code: not in the gender value set
		{0, "Observation/o1", observation("o1")},
		{0, "Observation/o2", observation("o2")},
		{1, "Observation/o3", `{"resourceType":"Observation","id":"o3"`}, // invalid-json
	}
	// A topic just created may not be in every broker's metadata yet: keep retrying
	// (within produceCtx) rather than fail after the default four metadata loads.
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.UnknownTopicRetries(-1))
	produceCtx, cancelProduce := context.WithTimeout(context.Background(), time.Minute)
	defer cancelProduce()
	for _, f := range feed {
		typ, _, _ := strings.Cut(f.key, "/")
		r := &kgo.Record{Topic: topics.Raw(typ), Partition: f.partition, Key: []byte(f.key), Value: []byte(f.val)}
		if err := cl.ProduceSync(produceCtx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	kc := c.Config()

	// Before any stage runs: no groups, and validate's backlog is every raw record.
	rep, err := Collect(ctx, kc, Options{Groups: groups, DeadLetters: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Stages) != len(consumers) {
		t.Fatalf("%d stages reported, want the topology's %d", len(rep.Stages), len(consumers))
	}
	for _, s := range rep.Stages {
		if s.State != "none" || len(s.Members) != 0 || s.Error != "" {
			t.Errorf("stage %s before it ran: state %q, %d members, error %q", s.Stage, s.State, len(s.Members), s.Error)
		}
		if s.Group != groups[s.Stage] {
			t.Errorf("stage %s: group %s, want the override %s", s.Stage, s.Group, groups[s.Stage])
		}
	}
	val := rep.Stages[0]
	wantBacklog := []TopicLag{
		{Topic: topics.Raw("Observation"), Partitions: 2, Lag: 3, MaxLag: 2, MaxPartition: 0, Uncommitted: 2},
		{Topic: topics.Raw("Patient"), Partitions: 3, Lag: 5, MaxLag: 3, MaxPartition: 0, Uncommitted: 3},
	}
	if val.Stage != "validate" || val.Lag != 8 || fmt.Sprint(val.Topics) != fmt.Sprint(wantBacklog) {
		t.Errorf("validate before it ran: lag %d on %+v\nwant 8 on %+v", val.Lag, val.Topics, wantBacklog)
	}
	if rep.DeadLetters == nil || rep.DeadLetters.Total != 0 {
		t.Errorf("dead letters before any stage ran: %+v", rep.DeadLetters)
	}

	// Run validate until its output is all there.
	def := validate.Definition(topics.Topology(schemas.TopologyOptions{}), validate.Options{}).WithGroup(groups["validate"])
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- runtime.Run(runCtx, kc, def, runtime.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TopicRefresh: time.Second})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("validate stage: %v", err)
		}
	}()
	waitFor(t, "validate's output", func() bool {
		return len(c.ReadAll(t, topics.Valid("Patient"), topics.Valid("Observation"))) == 6 && len(c.ReadAll(t, topics.DLQ())) == 2
	})
	// Its outputs and offsets commit in one transaction, so the group has committed
	// everything now; the member list settles once the join completes.
	waitFor(t, "a stable validate group", func() bool {
		r, err := Collect(ctx, kc, Options{Groups: groups})
		return err == nil && r.Stages[0].State == "Stable" && len(r.Stages[0].Members) == 1
	})

	// What 'fhirstream status -o json' prints, read back.
	collected, err := Collect(ctx, kc, Options{Groups: groups, DeadLetters: true, Transactions: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(collected)
	if err != nil {
		t.Fatal(err)
	}
	rep = &Report{}
	if err := json.Unmarshal([]byte(out), rep); err != nil {
		t.Fatalf("status output is not JSON: %v\n%s", err, out)
	}
	val = rep.Stages[0]
	if val.Stage != "validate" || val.State != "Stable" || val.Lag != 0 || val.Error != "" {
		t.Errorf("validate after its run: %+v", val)
	}
	if len(val.Members) != 1 || val.Members[0].ClientID != kc.ClientID || val.Members[0].Partitions != 5 || val.Members[0].Host == "" {
		t.Errorf("validate members %+v, want one %s member with the 5 raw partitions", val.Members, kc.ClientID)
	}
	for _, tl := range val.Topics {
		if tl.Lag != 0 || tl.MaxLag != 0 {
			t.Errorf("validate lag on %s: %+v, want 0", tl.Topic, tl)
		}
	}
	if val.DeadLetters != 2 || fmt.Sprint(val.DeadLettersByClass) != "map[bad-code:1 invalid-json:1]" {
		t.Errorf("validate dead letters %d by class %v, want 2: bad-code 1, invalid-json 1", val.DeadLetters, val.DeadLettersByClass)
	}
	if d := rep.DeadLetters; d == nil || d.Total != 2 || d.ByStage["validate"] != 2 || d.ByClass["validate/bad-code"] != 1 {
		t.Errorf("dead letters %+v", rep.DeadLetters)
	}
	// dedupe has not run: all of validate's output waits for it, on every partition
	// (the valid topics take the raw topics' partition counts). Its lag counts offsets,
	// so at least the 4 and 2 records, plus the transactions' commit markers.
	ded := rep.Stages[1]
	if ded.Stage != "dedupe" || ded.State != "none" || len(ded.Topics) != 2 {
		t.Fatalf("dedupe: %+v", ded)
	}
	for i, want := range []struct {
		topic            string
		partitions, recs int64
	}{{topics.Valid("Observation"), 2, 2}, {topics.Valid("Patient"), 3, 4}} {
		tl := ded.Topics[i]
		if tl.Topic != want.topic || int64(tl.Partitions) != want.partitions || int64(tl.Uncommitted) != want.partitions || tl.Lag < want.recs {
			t.Errorf("dedupe backlog on %s: %+v, want %d partitions, all uncommitted, lag >= %d", want.topic, tl, want.partitions, want.recs)
		}
	}

	// The table shows the same, for a person.
	var b strings.Builder
	collected.WriteTable(&b)
	table := b.String()
	t.Logf("fhirstream status:\n%s", table)
	wantRow := fmt.Sprint([]string{"validate", groups["validate"], "Stable", "1", "0", "2"})
	rowFound := false
	for _, line := range strings.Split(table, "\n") {
		rowFound = rowFound || fmt.Sprint(strings.Fields(line)) == wantRow
	}
	if !rowFound {
		t.Errorf("table lacks the row %v:\n%s", wantRow, table)
	}
	for _, want := range []string{topics.Raw("Patient"), "validate/bad-code", kc.ClientID} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// waitFor polls cond until it holds; a real broker and kfake both get there in well
// under the deadline, which is only a guard against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 90*time.Second, what, cond)
}
