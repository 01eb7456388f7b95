package deadletter

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestRecordRoundTrip(t *testing.T) {
	when := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	orig := &kgo.Record{
		Topic: "fhir.raw.Patient", Key: []byte("Patient/1"), Value: []byte(`{"resourceType":"Patient"}`),
		Headers:   []kgo.RecordHeader{{Key: "fhir.source.line", Value: []byte("7")}},
		Timestamp: when.Add(-time.Hour),
	}
	c := Context{Stage: "validate", SourceTopic: orig.Topic, Partition: 2, Offset: 41, Class: "missing-required",
		Path: "Patient.id", Message: strings.Repeat("x", 2000), Attempts: 1, Time: when}
	dl := Record("fhir.dlq", orig, c)
	if dl.Topic != "fhir.dlq" || string(dl.Key) != "Patient/1" || string(dl.Value) != string(orig.Value) || !dl.Timestamp.Equal(orig.Timestamp) {
		t.Fatalf("dead letter lost the original record: %+v", dl)
	}
	got, ok := Parse(dl.Headers)
	if !ok {
		t.Fatal("Parse found no context")
	}
	if got.Stage != c.Stage || got.SourceTopic != c.SourceTopic || got.Partition != 2 || got.Offset != 41 ||
		got.Class != c.Class || got.Path != c.Path || got.Attempts != 1 || !got.Time.Equal(when) {
		t.Fatalf("Parse = %+v, want %+v", got, c)
	}
	if len(got.Message) > maxMessageLen+len("…") {
		t.Fatalf("message not bounded: %d bytes", len(got.Message))
	}
	stripped := Strip(dl.Headers)
	if len(stripped) != 1 || stripped[0].Key != "fhir.source.line" {
		t.Fatalf("Strip = %v, want only the original header", stripped)
	}
	if _, ok := Parse(stripped); ok {
		t.Fatal("Parse found a context in stripped headers")
	}
}
