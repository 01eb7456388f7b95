package deid

import (
	"context"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestHeadersPerRecord checks that each output record carries the kept headers of its
// own input (the processor shares a header set between records with the same headers),
// with the configuration's fingerprint, and none of the dropped ones.
func TestHeadersPerRecord(t *testing.T) {
	p := newTestProcessor(t, "safe-harbor")
	p.Fingerprint = "f1"
	doc := []byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`)
	inputs := [][]stage.Header{
		{{Key: schemas.HeaderResourceType, Value: []byte("Patient")}, {Key: schemas.HeaderTransactionTime, Value: []byte("2026-01-01T00:00:00Z")}},
		{{Key: schemas.HeaderResourceType, Value: []byte("Patient")}, {Key: schemas.HeaderTransactionTime, Value: []byte("2026-01-01T00:00:00Z")}},
		{{Key: schemas.HeaderResourceType, Value: []byte("Patient")}, {Key: schemas.HeaderTransactionTime, Value: []byte("2026-02-02T00:00:00Z")}},
		{{Key: schemas.HeaderResourceType, Value: []byte("Patient")}, {Key: "fhir.source.file", Value: []byte("Patient.ndjson")}},
		{{Key: schemas.HeaderResourceType, Value: []byte("Patient")}},
		nil,
		{{Key: schemas.HeaderResourceType, Value: []byte("Patient")}, {Key: schemas.HeaderTransactionTime, Value: []byte("2026-02-02T00:00:00Z")}},
	}
	for i, hs := range inputs {
		var out collect
		in := stage.Record{Topic: testTopics.Unique("Patient"), Key: schemas.Key("Patient", "p1"), Value: doc, Headers: hs}
		if err := p.Process(context.Background(), &in, nil, &out); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, h := range hs {
			if h.Key != "fhir.source.file" {
				want = append(want, h.Key+"="+string(h.Value))
			}
		}
		want = append(want, HeaderConfig+"=f1")
		var got []string
		for _, h := range out.recs[0].Headers {
			got = append(got, h.Key+"="+string(h.Value))
		}
		if len(got) != len(want) {
			t.Fatalf("record %d: headers %q, want %q", i, got, want)
		}
		for k := range got {
			if got[k] != want[k] {
				t.Fatalf("record %d: headers %q, want %q", i, got, want)
			}
		}
	}
}
