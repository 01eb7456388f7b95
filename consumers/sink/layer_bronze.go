package sink

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/schemas"
)

// Bronze column names.
const (
	ColID           = "id"
	ColResourceType = "resource_type"
	ColLastUpdated  = "last_updated"
	ColVersionID    = "version_id"
	ColPatientRef   = "patient_ref"
	ColExportID     = "export_id"
	ColSourceURL    = "source_url"
	ColSourceLine   = "source_line"
	ColResource     = "resource"
	ColDeleted      = "_deleted"
	ColFHIRKey      = "_fhir_key"
	ColKafkaTime    = "_kafka_timestamp"
)

// bronzeColumns is the bronze layout: key columns for pruning and joins, the resource
// JSON kept whole (exactly the bytes exported), and what SQL needs to keep only the latest
// version of each resource.
var bronzeColumns = append([]column{
	{name: ColID, node: nodeString},
	{name: ColResourceType, node: nodeString},
	{name: ColLastUpdated, node: nodeTimestamp, optional: true},
	{name: ColVersionID, node: nodeString, optional: true},
	{name: ColPatientRef, node: nodeString, optional: true},
	{name: ColExportID, node: nodeString, optional: true},
	{name: ColSourceURL, node: nodeString, optional: true},
	{name: ColSourceLine, node: nodeInt64, optional: true},
	{name: ColResource, node: nodeString, optional: true},
	{name: ColDeleted, node: nodeBoolean},
	{name: ColFHIRKey, node: nodeString},
	{name: ColKafkaTime, node: nodeTimestamp},
}, kafkaColumns...)

// bronzeLayer writes <prefix>.unique.<Type> topics into fhir/<Type>/. Its fastjson parser
// is reused across records, so appendRow must not be called concurrently (the sink calls
// it from its one consuming goroutine).
type bronzeLayer struct {
	topics schemas.Topics
	parser fastjson.Parser

	mu       sync.Mutex
	datasets map[string]*dataset
}

func newBronzeLayer(topics schemas.Topics) *bronzeLayer {
	return &bronzeLayer{topics: topics, datasets: map[string]*dataset{}}
}

func (l *bronzeLayer) pattern() string { return InputPattern(l.topics, LayerBronze) }

func (l *bronzeLayer) dataset(topic string) (*dataset, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ds, ok := l.datasets[topic]; ok {
		return ds, nil
	}
	layer, typ, ok := l.topics.ParseLayerTopic(topic)
	if !ok || layer != schemas.LayerUnique || !schemas.ValidResourceType(typ) {
		return nil, fmt.Errorf("topic %s is not a %s.%s.<Type> topic", topic, l.topics.Prefix, schemas.LayerUnique)
	}
	ds := newDataset(typ, path.Join("fhir", typ), bronzeColumns, []string{ColID, ColPatientRef})
	l.datasets[topic] = ds
	return ds, nil
}

// patientRefFields are the elements naming the patient a resource is about, in the order
// tried: subject (most clinical resources), patient (AllergyIntolerance, Immunization,
// Claim...), beneficiary (Coverage).
var patientRefFields = []string{"subject", "patient", "beneficiary"}

func (l *bronzeLayer) appendRow(_ context.Context, ds *dataset, rec *kgo.Record, dst parquet.Row) (parquet.Row, error) {
	keyType, keyID, keyErr := schemas.ParseKey(rec.Key)
	deleted := rec.Value == nil || header(rec, schemas.HeaderDeleted) == "true"

	var (
		id, typ, version, patient string
		lastUpdated               int64
		hasLastUpdated            bool
	)
	if deleted {
		if keyErr != nil {
			return dst, reject("bad-key", "tombstone without a usable key: %v", keyErr)
		}
		typ, id = keyType, keyID
	} else {
		v, err := l.parser.ParseBytes(rec.Value)
		if err != nil {
			return dst, reject("bad-json", "value is not JSON: %v", err)
		}
		typ = string(v.GetStringBytes("resourceType"))
		id = string(v.GetStringBytes("id"))
		if typ == "" || id == "" {
			return dst, reject("missing-id", "resource has no resourceType or id")
		}
		version = string(v.GetStringBytes("meta", "versionId"))
		if lu := v.GetStringBytes("meta", "lastUpdated"); len(lu) > 0 {
			t, err := time.Parse(time.RFC3339Nano, string(lu))
			if err != nil {
				return dst, reject("bad-last-updated", "meta.lastUpdated %q is not an instant", lu)
			}
			lastUpdated, hasLastUpdated = t.UnixMicro(), true
		}
		if typ == "Patient" {
			patient = "Patient/" + id
		} else {
			for _, f := range patientRefFields {
				if ref := v.GetStringBytes(f, "reference"); len(ref) > 0 {
					patient = string(ref)
					break
				}
			}
		}
	}
	if typ != ds.name {
		return dst, reject("wrong-type", "a %s on the topic of %s", typ, ds.name)
	}
	if keyErr == nil && (keyType != typ || keyID != id) {
		return dst, reject("key-mismatch", "key %s/%s does not match resource %s/%s", keyType, keyID, typ, id)
	}

	i := 0
	str := func(s string, optional bool) {
		if optional && s == "" {
			dst = appendNull(dst, i)
		} else {
			dst = appendValue(dst, i, optional, parquet.ByteArrayValue([]byte(s)))
		}
		i++
	}
	str(id, false)
	str(typ, false)
	if hasLastUpdated {
		dst = appendValue(dst, i, true, parquet.Int64Value(lastUpdated))
	} else {
		dst = appendNull(dst, i)
	}
	i++
	str(version, true)
	str(patient, true)
	str(header(rec, schemas.HeaderExportID), true)
	str(header(rec, schemas.HeaderSourceURL), true)
	if line, err := strconv.ParseInt(header(rec, schemas.HeaderSourceLine), 10, 64); err == nil {
		dst = appendValue(dst, i, true, parquet.Int64Value(line))
	} else {
		dst = appendNull(dst, i)
	}
	i++
	if deleted {
		dst = appendNull(dst, i)
	} else {
		dst = appendValue(dst, i, true, parquet.ByteArrayValue(rec.Value))
	}
	i++
	dst = appendValue(dst, i, false, parquet.BooleanValue(deleted))
	i++
	str(typ+"/"+id, false)
	dst = appendValue(dst, i, false, parquet.Int64Value(rec.Timestamp.UnixMicro()))
	i++
	dst = appendValue(dst, i, false, parquet.Int32Value(rec.Partition))
	i++
	dst = appendValue(dst, i, false, parquet.Int64Value(rec.Offset))
	return dst, nil
}

// header returns the value of the last header called key ("" when absent).
func header(rec *kgo.Record, key string) string {
	for i := len(rec.Headers) - 1; i >= 0; i-- {
		if rec.Headers[i].Key == key {
			return string(rec.Headers[i].Value)
		}
	}
	return ""
}
