package rows

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// valueOf returns the value of column name in row ("null" for a null).
func valueOf(t *testing.T, l *lakehouse.Layout, row parquet.Row, name string) string {
	t.Helper()
	i := l.MustIndex(name)
	for _, v := range row {
		if v.Column() == i {
			if v.IsNull() {
				return "null"
			}
			return v.String()
		}
	}
	t.Fatalf("row has no value of column %s", name)
	return ""
}

// TestBatchApply holds the apply rules: a replacing change drops the batch's earlier
// rows of its key and deletes the key from earlier snapshots when it is known (or had
// rows in the batch, or deletes are forced); rows are inserted in order.
func TestBatchApply(t *testing.T) {
	l, err := lakehouse.OMOPLayout("measurement")
	if err != nil {
		t.Fatal(err)
	}
	row := func(tag int64) parquet.Row { return parquet.Row{parquet.Int64Value(tag).Level(0, 0, 0)} }
	tags := func(rs []parquet.Row) string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprint(r[0].Int64()))
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		name       string
		always     bool
		changes    []Change
		rows, dels string
		wantEmpty  bool
	}{
		{name: "first versions insert and delete nothing",
			changes: []Change{{Key: "A", Replaces: true, Row: row(1)}, {Key: "A", Row: row(2)}, {Key: "B", Replaces: true, Row: row(3)}},
			rows:    "1 2 3"},
		{name: "a known key's new version deletes its earlier rows",
			changes: []Change{{Key: "A", Replaces: true, Known: true, Row: row(1)}},
			rows:    "1", dels: "A"},
		{name: "a version replaces the batch's earlier rows of its key",
			changes: []Change{{Key: "A", Replaces: true, Row: row(1)}, {Key: "A", Row: row(2)}, {Key: "B", Replaces: true, Row: row(9)},
				{Key: "A", Replaces: true, Known: true, Row: row(3)}},
			rows: "9 3", dels: "A"},
		{name: "a key with rows in the batch deletes even without the header",
			changes: []Change{{Key: "A", Replaces: true, Row: row(1)}, {Key: "A", Replaces: true, Row: row(2)}},
			rows:    "2", dels: "A"},
		{name: "a retraction leaves no row of its key",
			changes: []Change{{Key: "A", Replaces: true, Row: row(1)}, {Key: "A", Replaces: true, Known: true}},
			dels:    "A"},
		{name: "always deletes on every replacing change",
			always:  true,
			changes: []Change{{Key: "A", Replaces: true, Row: row(1)}, {Key: "B", Row: row(2)}},
			rows:    "1 2", dels: "A"},
		{name: "a change without a key changes nothing",
			changes: []Change{{Replaces: true, Known: true}}, wantEmpty: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatch(l, tc.always)
			for _, c := range tc.changes {
				b.Apply(c)
			}
			if got := tags(b.Rows()); got != tc.rows {
				t.Errorf("rows %q, want %q", got, tc.rows)
			}
			if got := strings.Join(b.Deletes(), " "); got != tc.dels {
				t.Errorf("deletes %q, want %q", got, tc.dels)
			}
			if b.Empty() != tc.wantEmpty {
				t.Errorf("Empty() = %v", b.Empty())
			}
		})
	}
	// Bronze tables have no delete key: every change is a row, nothing is dropped.
	bl, _ := lakehouse.BronzeLayout("Patient")
	b := NewBatch(bl, true)
	b.Apply(Change{Key: "A", Row: row(1)})
	b.Apply(Change{Key: "A", Replaces: true, Known: true, Row: row(2)})
	if got := tags(b.Rows()); got != "1 2" || len(b.Deletes()) != 0 {
		t.Errorf("bronze batch: rows %q deletes %v, want both rows and no deletes", got, b.Deletes())
	}
}

func newTestOMOP(t *testing.T) *omopLayer {
	t.Helper()
	o, err := newOMOP(schemas.MustTopics("fhir"), schemas.MustTopics("fhir").OMOPPattern(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func encodePerson(t *testing.T, row map[string]any) []byte {
	t.Helper()
	c, err := schemas.NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Encode(context.Background(), "person", row)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func personRow(deleted, replaces bool) map[string]any {
	return map[string]any{
		"person_id": int64(7), "gender_concept_id": int32(8532), "year_of_birth": int32(1980), "race_concept_id": int32(0),
		"ethnicity_concept_id": int32(0), "birth_datetime": time.Date(1980, 5, 6, 7, 8, 9, 0, time.UTC),
		schemas.ColFHIRKey: "Patient/p1", schemas.ColFHIRVersion: "2", schemas.ColFHIRComponent: int32(0),
		schemas.ColFHIRLastUpdated: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		schemas.ColFHIRDeleted:     deleted, schemas.ColFHIRReplaces: replaces,
	}
}

func TestOMOPChange(t *testing.T) {
	o := newTestOMOP(t)
	topic := schemas.MustTopics("fhir").OMOP("person")
	l, err := o.Table(topic)
	if err != nil {
		t.Fatal(err)
	}
	in := &stage.Record{Topic: topic, Partition: 2, Offset: 41, Key: []byte("Patient/p1"), Value: encodePerson(t, personRow(false, true)),
		Headers: []stage.Header{{Key: schemas.HeaderPreviousVersion, Value: []byte("1")}}}
	c, err := o.Change(context.Background(), in, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != "Patient/p1" || !c.Replaces || !c.Known || c.Row == nil {
		t.Fatalf("change %+v, want a known replacing row of Patient/p1", c)
	}
	for col, want := range map[string]string{
		"person_id": "7", "year_of_birth": "1980", "gender_source_value": "null", lakehouse.ColKafkaPartition: "2",
		lakehouse.ColKafkaOffset: "41", schemas.ColFHIRVersion: "2",
		// The CDM datetime keeps its wall clock; the instant is microseconds since the epoch.
		"birth_datetime":           fmt.Sprint(time.Date(1980, 5, 6, 7, 8, 9, 0, time.UTC).UnixMicro()),
		schemas.ColFHIRLastUpdated: fmt.Sprint(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).UnixMicro()),
	} {
		if got := valueOf(t, l, c.Row, col); got != want {
			t.Errorf("%s = %s, want %s", col, got, want)
		}
	}
	if len(c.Row) != len(l.Columns) {
		t.Errorf("row has %d values for %d columns", len(c.Row), len(l.Columns))
	}

	// A retraction replaces and carries no row; without the header the key is not known.
	in.Value, in.Headers = encodePerson(t, personRow(true, true)), nil
	if c, err := o.Change(context.Background(), in, l, nil); err != nil || !c.Replaces || c.Known || c.Row != nil {
		t.Errorf("retraction: %+v, %v", c, err)
	}
	// A Kafka tombstone changes nothing.
	in.Value = nil
	if c, err := o.Change(context.Background(), in, l, nil); err != nil || c.Key != "" {
		t.Errorf("tombstone: %+v, %v", c, err)
	}

	for name, tc := range map[string]struct {
		topic string
		value []byte
		class string
	}{
		"garbage":     {topic, []byte("\xc3\x01garbage"), schemas.ClassUndecodable},
		"wrong table": {schemas.MustTopics("fhir").OMOP("death"), encodePerson(t, personRow(false, true)), schemas.ClassWrongTable},
	} {
		tl, err := o.Table(tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		_, err = o.Change(context.Background(), &stage.Record{Topic: tc.topic, Value: tc.value}, tl, nil)
		if rej, ok := stage.AsRejection(err); !ok || rej.Class != tc.class {
			t.Errorf("%s: %v, want a %s rejection", name, err, tc.class)
		}
	}
	if _, err := o.Table("fhir.unique.Patient"); err == nil {
		t.Error("a non-OMOP topic has a table")
	}
}

const observation = `{"resourceType":"Observation","id":"o1","meta":{"versionId":"3","lastUpdated":"2024-02-03T04:05:06.789Z"},` +
	`"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},` +
	`"encounter":{"reference":"Encounter/e1"},"effectiveDateTime":"2024-02-01T23:30:00-05:00","valueQuantity":{"value":72}}`

func TestSilverAndBronzeChange(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	topic := topics.Unique("Observation")
	silver, bronze := newFHIR(topics, topics.LayerPattern(schemas.LayerUnique)), newBronze(topics, topics.LayerPattern(schemas.LayerUnique))
	sl, err := silver.Table(topic)
	if err != nil {
		t.Fatal(err)
	}
	if sl.Namespace != lakehouse.NamespaceFHIR || sl.Name != "observation" {
		t.Errorf("silver table %s", sl)
	}
	in := &stage.Record{Topic: topic, Partition: 1, Offset: 9, Key: []byte("Observation/o1"), Value: []byte(observation),
		Timestamp: time.Unix(1700000000, 0),
		Headers: []stage.Header{{Key: schemas.HeaderSourceURL, Value: []byte("https://ehr.example.org/files/obs.ndjson?X-Amz-Signature=secret")},
			{Key: schemas.HeaderSourceLine, Value: []byte("12")}, {Key: schemas.HeaderPreviousVersion, Value: []byte("2")}}}
	c, err := silver.Change(context.Background(), in, sl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != "Observation/o1" || !c.Replaces || !c.Known || c.Row == nil {
		t.Fatalf("silver change %+v", c)
	}
	for col, want := range map[string]string{
		lakehouse.ColID: "o1", lakehouse.ColVersionID: "3", lakehouse.ColPatientRef: "Patient/p1",
		lakehouse.ColEncounterRef: "Encounter/e1", lakehouse.ColCodeSystem: "http://loinc.org", lakehouse.ColCode: "8867-4",
		// The date as written, in its own offset (the UTC date would be Feb 2).
		lakehouse.ColMainDate:    fmt.Sprint(time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400),
		lakehouse.ColLastUpdated: fmt.Sprint(time.Date(2024, 2, 3, 4, 5, 6, 789e6, time.UTC).UnixMicro()),
		lakehouse.ColSourceURL:   "https://ehr.example.org/files/obs.ndjson",
		lakehouse.ColSourceLine:  "12", lakehouse.ColExportID: "null", lakehouse.ColResource: observation,
	} {
		if got := valueOf(t, sl, c.Row, col); got != want {
			t.Errorf("silver %s = %s, want %s", col, got, want)
		}
	}

	// A deletion: silver replaces with no row, bronze appends a row that says so.
	del := &stage.Record{Topic: topic, Key: []byte("Observation/o1"), Timestamp: time.Unix(1700000000, 0),
		Headers: []stage.Header{{Key: schemas.HeaderDeleted, Value: []byte("true")}}}
	if c, err := silver.Change(context.Background(), del, sl, nil); err != nil || !c.Replaces || c.Known || c.Row != nil {
		t.Errorf("silver deletion: %+v, %v", c, err)
	}
	bl, _ := bronze.Table(topic)
	c, err = bronze.Change(context.Background(), del, bl, nil)
	if err != nil || c.Replaces || c.Row == nil {
		t.Fatalf("bronze deletion: %+v, %v", c, err)
	}
	if got := valueOf(t, bl, c.Row, lakehouse.ColDeleted); got != "true" {
		t.Errorf("bronze deleted = %s", got)
	}
	if got := valueOf(t, bl, c.Row, lakehouse.ColResource); got != "null" {
		t.Errorf("bronze resource of a deletion = %s", got)
	}

	for name, tc := range map[string]struct {
		key, value string
		class      string
	}{
		"not JSON":     {"Observation/o1", `{"resourceType":`, schemas.ClassInvalidJSON},
		"not object":   {"Observation/o1", `[1]`, schemas.ClassNotObject},
		"no id":        {"Observation/o1", `{"resourceType":"Observation"}`, schemas.ClassMissingID},
		"other type":   {"Patient/o1", `{"resourceType":"Patient","id":"o1"}`, schemas.ClassTypeMismatch},
		"key mismatch": {"Observation/o2", `{"resourceType":"Observation","id":"o1"}`, schemas.ClassKeyMismatch},
	} {
		_, err := silver.Change(context.Background(), &stage.Record{Topic: topic, Key: []byte(tc.key), Value: []byte(tc.value)}, sl, nil)
		if rej, ok := stage.AsRejection(err); !ok || rej.Class != tc.class {
			t.Errorf("%s: %v, want a %s rejection", name, err, tc.class)
		}
	}
	if _, err := silver.Change(context.Background(), &stage.Record{Topic: topic, Key: []byte("nonsense")}, sl, nil); err == nil {
		t.Error("a deletion without a usable key was taken")
	}
}

func TestSilverReadsDeidentifiedTopics(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	silver := newFHIR(topics, topics.LayerPattern(schemas.LayerDeid))
	if l, err := silver.Table(topics.LayerTopics(schemas.LayerDeid).Prefix + "Patient"); err != nil || l.Name != "patient" {
		t.Errorf("deid topic: %v, %v", l, err)
	}
	if _, err := silver.Table(topics.Raw("Patient")); err == nil {
		t.Error("a raw topic has a silver table")
	}
}
