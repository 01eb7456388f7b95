package deid_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/internal/testwait"
	"github.com/fhirstream/fhirstream/schemas"
)

// TestIntegrationDeidStage runs the stage on the runtime, as `consume deid` would, over
// the identifier test resources, a tombstone and a resource no rule can type: every
// resource reaches <prefix>.deid.<Type> under a pseudonymised key with no identifying
// string, the tombstone keeps its (pseudonymised) key, the bad one is dead-lettered.
func TestIntegrationDeidStage(t *testing.T) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	topo := topics.Topology(schemas.TopologyOptions{Deidentify: true})
	cfg, err := deid.Preset("safe-harbor-dateshift")
	if err != nil {
		t.Fatal(err)
	}
	keys := deid.Keys{CryptoHash: []byte("integration-hash-key"), DateShift: []byte("integration-shift-key")}

	data, err := os.ReadFile("testdata/identifiers.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	types := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var head struct{ ResourceType, ID string }
		if err := json.Unmarshal(line, &head); err != nil {
			t.Fatal(err)
		}
		types[head.ResourceType] = true
		recs = append(recs, &kgo.Record{Topic: topics.Unique(head.ResourceType), Key: schemas.Key(head.ResourceType, head.ID), Value: line,
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderSourceURL, Value: []byte("https://ehr.example.org/" + head.ID)}}})
	}
	recs = append(recs,
		&kgo.Record{Topic: topics.Unique("Patient"), Key: []byte("Patient/pat-zq-0001")}, // deleted
		&kgo.Record{Topic: topics.Unique("Patient"), Key: []byte("Patient/bad-1"), Value: []byte(`{"resourceType":"Patient","id":"bad-1","nickname":"Zebulon"}`)})
	var all []string
	for rt := range types {
		all = append(all, topics.Unique(rt), deid.OutputTopic(topics, rt))
	}
	c.CreateTopics(t, 3, append(all, topics.DLQ())...)
	cl := c.Client(t)
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runtime.Run(ctx, c.Config(), deid.Definition(topo, cfg, keys), runtime.Options{TopicRefresh: time.Second})
	}()
	var outputs []*kgo.Record
	var outTopics []string
	for rt := range types {
		outTopics = append(outTopics, deid.OutputTopic(topics, rt))
	}
	want := len(recs) - 1 // the bad one is dead-lettered
	testwait.Until(t, 60*time.Second, "the deid topics to hold every resource", func() bool {
		outputs = c.ReadAll(t, outTopics...)
		return len(outputs) >= want
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(outputs) != want {
		t.Fatalf("%d outputs, want %d", len(outputs), want)
	}
	tombstones := 0
	for _, r := range outputs {
		rt, id, err := schemas.ParseKey(r.Key)
		if err != nil || len(id) != 64 || r.Topic != deid.OutputTopic(topics, rt) {
			t.Errorf("output %s on %s: not <Type>/<pseudonym> on its type's topic (%v)", r.Key, r.Topic, err)
		}
		if r.Value == nil {
			tombstones++
			continue
		}
		for _, s := range []string{"Zebulon", "Quackenbush", "pat-zq-0001", "555-867-5309", "MRN-7788123", "999-12-3456", "ehr.example.org", "1961-07-19"} {
			if strings.Contains(string(r.Value)+string(r.Key), s) {
				t.Errorf("%s: %q in the output", r.Key, s)
			}
			for _, h := range r.Headers {
				if strings.Contains(string(h.Value), s) {
					t.Errorf("%s: %q in header %s", r.Key, s, h.Key)
				}
			}
		}
	}
	if tombstones != 1 {
		t.Errorf("%d tombstones, want 1", tombstones)
	}
	dls := c.ReadAll(t, topics.DLQ())
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dc, ok := deadletter.Parse(dls[0].Headers)
	if !ok || dc.Stage != schemas.NodeDeid || dc.Class != "unknown-element" || dc.Path != "Patient.nickname" {
		t.Errorf("dead letter context %+v", dc)
	}
}
