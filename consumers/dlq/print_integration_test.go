package dlq

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationListAndShow writes dead letters of two stages and one record without
// dead-letter context, and checks what list and show print of them: the filter applies,
// list's lines stop at max while its counts cover every match, show hides payloads
// unless asked and stops at max.
func TestIntegrationListAndShow(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	source := topics.Raw("Patient")
	c.CreateTopics(t, 1, source, topics.DLQ())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prod := c.Client(t, kgo.UnknownTopicRetries(-1))
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		stage := "validate"
		if i == 4 {
			stage = "omop"
		}
		orig := &kgo.Record{Topic: source, Key: []byte(fmt.Sprintf("Patient/p%d", i)), Value: []byte(fmt.Sprintf(`{"secret":%d}`, i))}
		dl := deadletter.Record(topics.DLQ(), orig, deadletter.Context{Stage: stage, SourceTopic: source, Partition: 0,
			Offset: int64(i), Class: "bad-coding", Message: "no system", Path: "Patient.maritalStatus", Attempts: 1, Time: at})
		if err := prod.ProduceSync(ctx, dl).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topics.DLQ(), Key: []byte("stray")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var list bytes.Buffer
	if err := List(ctx, c.Config(), topics.DLQ(), Filter{Stages: []string{"validate"}}, 2, &list); err != nil {
		t.Fatal(err)
	}
	out := list.String()
	wantLine := "2024-05-01T12:00:00Z  validate  bad-coding  " + source + "/0@1  Patient/p1  Patient.maritalStatus"
	if !strings.Contains(out, wantLine) || strings.Contains(out, "Patient/p2") || strings.Contains(out, "omop") {
		t.Errorf("list --stage validate --max 2 printed:\n%s\nwant the lines of p0 and p1 only, such as %q", out, wantLine)
	}
	if !strings.Contains(out, topics.DLQ()+": 4 dead letters") {
		t.Errorf("list's counts do not cover the 4 matches:\n%s", out)
	}

	var show bytes.Buffer
	if err := Show(ctx, c.Config(), topics.DLQ(), Filter{}, ShowOptions{Max: 0}, &show); err != nil {
		t.Fatal(err)
	}
	out = show.String()
	for _, want := range []string{"  stage:    omop\n", "  path:     Patient.maritalStatus\n", "  (no dead-letter context)\n",
		"  value: 12 bytes (hidden; --show-payload prints it)\n", "  value: (tombstone)\n", "6 shown\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("show printed a payload without --show-payload:\n%s", out)
	}

	show.Reset()
	if err := Show(ctx, c.Config(), topics.DLQ(), Filter{Stages: []string{"omop"}}, ShowOptions{Max: 1, Payload: true}, &show); err != nil {
		t.Fatal(err)
	}
	if out = show.String(); !strings.Contains(out, `  value: {"secret":4}`+"\n") || !strings.HasSuffix(out, "1 shown\n") {
		t.Errorf("show --stage omop --show-payload --max 1 printed:\n%s", out)
	}
}
