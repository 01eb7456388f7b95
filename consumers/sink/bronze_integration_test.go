package sink

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

func TestIntegrationSinkBronze(t *testing.T) {
	for _, lake := range testLakes(t, false) {
		t.Run(lake.name, func(t *testing.T) { testSinkBronze(t, lake) })
	}
}

func testSinkBronze(t *testing.T, lake testLake) {
	c := testkafka.New(t)
	topics := schemas.MustTopics(c.Prefix)
	c.CreateTopics(t, 3, topics.Unique("Patient"), topics.Unique("Observation"), topics.DLQ())
	day := time.Date(2024, 8, 9, 1, 0, 0, 0, time.UTC)
	hdr := func(line int) []kgo.RecordHeader {
		return []kgo.RecordHeader{
			{Key: schemas.HeaderExportID, Value: []byte("exp-1")},
			{Key: schemas.HeaderSourceURL, Value: []byte("http://ehr/Patient.ndjson")},
			{Key: schemas.HeaderSourceLine, Value: []byte(fmt.Sprint(line))},
		}
	}
	var recs []*kgo.Record
	for i := range 20 {
		v := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","meta":{"versionId":"1","lastUpdated":"2024-08-01T10:00:00Z"},"gender":"female"}`, i)
		recs = append(recs, &kgo.Record{Topic: topics.Unique("Patient"), Key: schemas.Key("Patient", fmt.Sprintf("p%d", i)), Value: []byte(v), Headers: hdr(i + 1), Timestamp: day})
	}
	for i := range 30 {
		v := fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","subject":{"reference":"Patient/p%d"},"status":"final"}`, i, i%20)
		recs = append(recs, &kgo.Record{Topic: topics.Unique("Observation"), Key: schemas.Key("Observation", fmt.Sprintf("o%d", i)), Value: []byte(v), Timestamp: day})
	}
	// A tombstone of a deleted patient, and a value that is not JSON.
	recs = append(recs,
		&kgo.Record{Topic: topics.Unique("Patient"), Key: schemas.Key("Patient", "p3"), Timestamp: day,
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderDeleted, Value: []byte("true")}}},
		&kgo.Record{Topic: topics.Unique("Observation"), Key: schemas.Key("Observation", "bad"), Value: []byte("{nope"), Timestamp: day})
	produce(t, c.Client(t), recs)

	s, stop := startSink(t, c, lake.config(Config{Layer: LayerBronze, Group: c.Group("bronze"), FlushInterval: 200 * time.Millisecond}))
	waitFor(t, 60*time.Second, "bronze rows", func() bool {
		st := s.Stats()
		return st.Rows["Patient"] == 21 && st.Rows["Observation"] == 30 && st.DeadLetters == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := lake.localDir(t)
	byID := map[string]map[string]string{}
	deleted := 0
	for _, typ := range []string{"Patient", "Observation"} {
		for _, f := range lakeFiles(t, filepath.Join(out, "fhir", typ, "date=2024-08-09")) {
			_, rows := readParquet(t, f)
			for _, r := range rows {
				if r[ColDeleted].Boolean() {
					deleted++
					if !r[ColResource].IsNull() || string(r[ColID].ByteArray()) != "p3" {
						t.Errorf("tombstone row: resource %v id %s", r[ColResource], r[ColID].ByteArray())
					}
					continue
				}
				m := map[string]string{}
				for k, v := range r {
					m[k] = v.String()
				}
				byID[string(r[ColFHIRKey].ByteArray())] = m
			}
		}
	}
	if len(byID) != 50 || deleted != 1 {
		t.Fatalf("bronze: %d live resources, %d tombstones; want 50 and 1", len(byID), deleted)
	}
	p := byID["Patient/p4"]
	if p[ColVersionID] != "1" || p[ColPatientRef] != "Patient/p4" || p[ColExportID] != "exp-1" || p[ColSourceLine] != "5" {
		t.Errorf("Patient/p4 key columns: %v", p)
	}
	o := byID["Observation/o25"]
	if o[ColPatientRef] != "Patient/p5" || o[ColResourceType] != "Observation" || o[ColLastUpdated] != "<null>" {
		t.Errorf("Observation/o25 key columns: %v", o)
	}
}
