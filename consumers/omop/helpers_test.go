package omop

import (
	"context"
	"sync"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

// collect is an Emitter that keeps what it is given.
type collect struct{ recs []stage.Record }

func (c *collect) Emit(r stage.Record) { c.recs = append(c.recs, r) }

// decoded is an output row decoded back from its Avro value.
type decoded struct {
	topic, table string
	key          string
	row          map[string]any
}

var testTopics = schemas.MustTopics("")

func newTestProcessor(t testing.TB, v *vocab.Vocabulary) *Processor {
	t.Helper()
	p, err := New(Config{Topics: testTopics, Vocab: v})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run maps one resource (JSON) and returns its decoded rows, or the error.
func run(t testing.TB, p *Processor, key, value string, headers ...stage.Header) ([]decoded, error) {
	t.Helper()
	in := &stage.Record{Topic: "fhir.unique.X", Key: []byte(key), Headers: headers}
	if value != "" {
		in.Value = []byte(value)
	}
	var out collect
	if err := p.Process(context.Background(), in, nil, &out); err != nil {
		return nil, err
	}
	codec, err := testCodecs()
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]decoded, 0, len(out.recs))
	for _, r := range out.recs {
		table, row, err := codec.Decode(context.Background(), r.Value)
		if err != nil {
			t.Fatalf("decode %s: %v", r.Topic, err)
		}
		if r.Topic != testTopics.OMOP(table) {
			t.Fatalf("row of %s on topic %s", table, r.Topic)
		}
		rows = append(rows, decoded{topic: r.Topic, table: table, key: string(r.Key), row: row})
	}
	return rows, nil
}

// testCodecs are the decoders of run, built once.
var testCodecs = sync.OnceValues(schemas.NewCodecs)

// loadTestVocab loads testdata/vocab.
func loadTestVocab(t testing.TB) *vocab.Vocabulary {
	t.Helper()
	v, _, err := vocab.Load("testdata/vocab")
	if err != nil {
		t.Fatal(err)
	}
	return v
}
