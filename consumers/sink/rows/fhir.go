package rows

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// fhirLayer writes <prefix>.unique.<Type> topics into fhir.<type> tables (silver) or
// bronze.<type> tables: the two share the reading of a FHIR record.
type fhirLayer struct {
	name   string
	topics schemas.Topics
	input  string
	layout func(resourceType string) (*lakehouse.Layout, error)
	trees  sync.Pool

	mu     sync.Mutex
	tables map[string]*lakehouse.Layout // by topic
}

func newFHIR(t schemas.Topics, input string) *fhirLayer {
	return &fhirLayer{name: LayerSilver, topics: t, input: input, layout: lakehouse.FHIRLayout, tables: map[string]*lakehouse.Layout{},
		trees: sync.Pool{New: func() any { return &fhirScratch{tree: new(jsontree.Tree)} }}}
}

func newBronze(t schemas.Topics, input string) *fhirLayer {
	l := newFHIR(t, input)
	l.name, l.layout = LayerBronze, lakehouse.BronzeLayout
	return l
}

func (f *fhirLayer) Name() string    { return f.name }
func (f *fhirLayer) Pattern() string { return f.input }

func (f *fhirLayer) Table(topic string) (*lakehouse.Layout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.tables[topic]; ok {
		return l, nil
	}
	layer, typ, ok := f.topics.ParseLayerTopic(topic)
	if !ok || (layer != schemas.LayerUnique && layer != schemas.LayerDeid) {
		return nil, fmt.Errorf("topic %s is not a %s.%s.<Type> or %s.%s.<Type> topic", topic, f.topics.Prefix, schemas.LayerUnique, f.topics.Prefix, schemas.LayerDeid)
	}
	l, err := f.layout(typ)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	f.tables[topic] = l
	return l, nil
}

// fhirScratch is one worker's reusable state: the JSON tree, and the source URL and
// export id of the last record read with them. A file's records come in runs, so its URL
// is cleaned (parsed) and the export id copied once a run instead of once a record.
type fhirScratch struct {
	tree             *jsontree.Tree
	rawURL, cleanURL string
	exportID         string
}

// sourceURL is withoutQuery(string(raw)), remembered for the next record.
func (sc *fhirScratch) sourceURL(raw []byte) string {
	if string(raw) != sc.rawURL {
		sc.rawURL = string(raw)
		sc.cleanURL = withoutQuery(sc.rawURL)
	}
	return sc.cleanURL
}

// exportIDOf is string(raw), shared with the last record's when equal.
func (sc *fhirScratch) exportIDOf(raw []byte) string {
	if string(raw) != sc.exportID {
		sc.exportID = string(raw)
	}
	return sc.exportID
}

// resource is what the lake reads of one FHIR record.
type resource struct {
	typ, id, key        string
	deleted             bool
	version             string
	lastUpdated         int64
	hasLastUpdated      bool
	patient, encounter  string
	mainDate            int32
	hasMainDate         bool
	codeSystem, code    string
	exportID, sourceURL string
	sourceLine          int64
	hasSourceLine       bool
}

// read reads in, whose table is of resourceType. The strings point into in's value.
func (f *fhirLayer) read(in *stage.Record, resourceType string, sc *fhirScratch) (resource, error) {
	var r resource
	tree := sc.tree
	keyType, keyID, keyErr := schemas.ParseKey(in.Key)
	if v, ok := in.Header(schemas.HeaderDeleted); ok && string(v) == "true" {
		r.deleted = true
	}
	r.deleted = r.deleted || in.Value == nil
	if r.deleted {
		if keyErr != nil {
			return r, stage.Reject(schemas.ClassBadKey, "", "deletion without a usable key: %v", keyErr)
		}
		r.typ, r.id = keyType, keyID
	} else {
		if err := tree.Parse(in.Value); err != nil {
			return r, stage.Reject(schemas.ClassInvalidJSON, "", "%v", err)
		}
		root := tree.Root()
		if root.Type() != jsontree.TypeObject {
			return r, stage.Reject(schemas.ClassNotObject, "", "the value is not a JSON object")
		}
		r.typ, r.id = root.String("resourceType"), root.String("id")
		if r.typ == "" {
			return r, stage.Reject(schemas.ClassMissingResourceType, "resourceType", "no resourceType")
		}
		if r.id == "" {
			return r, stage.Reject(schemas.ClassMissingID, r.typ+".id", "no id")
		}
		r.version = root.String("meta", "versionId")
		if lu := root.String("meta", "lastUpdated"); lu != "" {
			t, err := time.Parse(time.RFC3339Nano, lu)
			if err != nil {
				return r, stage.Reject(schemas.ClassBadFormat, r.typ+".meta.lastUpdated", "not an instant")
			}
			r.lastUpdated, r.hasLastUpdated = t.UnixMicro(), true
		}
		if r.typ == "Patient" {
			r.patient = "Patient/" + r.id
		} else {
			for _, el := range patientElements {
				if ref := root.String(el, "reference"); ref != "" {
					r.patient = ref
					break
				}
			}
		}
		// The encounter, main date and main code are silver's columns only: bronze has
		// none of them, and looking them up was a fifth of its reading of a record.
		if f.name == LayerSilver {
			r.encounter = root.String("encounter", "reference")
			if r.encounter == "" {
				r.encounter = root.String("context", "reference")
			}
			r.mainDate, r.hasMainDate = mainDate(root)
			r.codeSystem, r.code = mainCode(root)
		}
	}
	if r.typ != resourceType {
		return r, stage.Reject(schemas.ClassTypeMismatch, "", "a %s on the topic of %s", r.typ, resourceType)
	}
	if keyErr == nil && (keyType != r.typ || keyID != r.id) {
		return r, stage.Reject(schemas.ClassKeyMismatch, "", "the record key is not the resource's type and id")
	}
	r.key = r.typ + "/" + r.id
	if v, ok := in.Header(schemas.HeaderExportID); ok {
		r.exportID = sc.exportIDOf(v)
	}
	if v, ok := in.Header(schemas.HeaderSourceURL); ok {
		r.sourceURL = sc.sourceURL(v)
	}
	if v, ok := in.Header(schemas.HeaderSourceLine); ok {
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			r.sourceLine, r.hasSourceLine = n, true
		}
	}
	return r, nil
}

// withoutQuery drops the query and fragment of a file URL: a Bulk Data server may sign
// its file URLs, and a signature is a credential, not lineage.
func withoutQuery(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// patientElements name the patient a resource is about, in the order tried: subject
// (most clinical resources), patient (AllergyIntolerance, Immunization, Claim, ...),
// beneficiary (Coverage).
var patientElements = []string{"subject", "patient", "beneficiary"}

// dateElements are the paths of a resource's main clinical date, in the order tried.
var dateElements = [][]string{
	{"effectiveDateTime"}, {"effectivePeriod", "start"}, {"effectiveInstant"},
	{"onsetDateTime"}, {"onsetPeriod", "start"}, {"performedDateTime"}, {"performedPeriod", "start"},
	{"authoredOn"}, {"occurrenceDateTime"}, {"period", "start"}, {"recordedDate"}, {"issued"},
	{"started"}, {"billablePeriod", "start"}, {"birthDate"}, {"date"}, {"created"},
}

// mainDate is the calendar date of the first date element present, as written (a FHIR
// dateTime carries its own offset); none when it is a partial date (year or month).
func mainDate(root *jsontree.Value) (int32, bool) {
	for _, p := range dateElements {
		s := root.String(p...)
		if s == "" {
			continue
		}
		if len(s) < 10 {
			return 0, false
		}
		d, err := time.Parse(time.DateOnly, s[:10])
		if err != nil {
			return 0, false
		}
		return schemas.EpochDays(d), true
	}
	return 0, false
}

// codeElements are the CodeableConcepts that say what a resource is, in the order tried.
var codeElements = []string{"code", "medicationCodeableConcept", "vaccineCode", "type"}

// mainCode is the system and code of the first coding of the first code element present
// (of its first element when it is an array, as Encounter.type is).
func mainCode(root *jsontree.Value) (system, code string) {
	for _, el := range codeElements {
		v := root.Get(el)
		if v.Type() == jsontree.TypeArray {
			v = v.Elem(0)
		}
		c := v.Elem(0, "coding")
		if c == nil {
			continue
		}
		return c.String("system"), c.String("code")
	}
	return "", ""
}

// Change reads a FHIR record. Silver: every record of a key replaces it, a deletion
// leaves no row. Bronze: every record is a row.
func (f *fhirLayer) Change(_ context.Context, in *stage.Record, l *lakehouse.Layout, dst parquet.Row) (Change, error) {
	_, typ, _ := f.topics.ParseLayerTopic(in.Topic)
	sc := f.trees.Get().(*fhirScratch)
	defer func() { sc.tree.Release(); f.trees.Put(sc) }()
	r, err := f.read(in, typ, sc)
	if err != nil {
		return Change{}, err
	}
	if f.name == LayerBronze {
		return Change{Key: r.key, Row: bronzeRow(dst, l, &r, in)}, nil
	}
	_, known := in.Header(HeaderPreviousVersion)
	c := Change{Key: r.key, Replaces: true, Known: known}
	if !r.deleted {
		c.Row = silverRow(dst, l, &r, in)
	}
	return c, nil
}

func silverRow(row parquet.Row, l *lakehouse.Layout, r *resource, in *stage.Record) parquet.Row {
	for i, c := range l.Columns {
		switch c.Name {
		case lakehouse.ColID:
			row = putString(row, l, i, r.id)
		case lakehouse.ColVersionID:
			row = putString(row, l, i, r.version)
		case lakehouse.ColPatientRef:
			row = putString(row, l, i, r.patient)
		case lakehouse.ColEncounterRef:
			row = putString(row, l, i, r.encounter)
		case lakehouse.ColCodeSystem:
			row = putString(row, l, i, r.codeSystem)
		case lakehouse.ColCode:
			row = putString(row, l, i, r.code)
		case lakehouse.ColMainDate:
			if r.hasMainDate {
				row = put(row, l, i, parquet.Int32Value(r.mainDate))
			} else {
				row = putNull(row, i)
			}
		case lakehouse.ColResource:
			row = put(row, l, i, parquet.ByteArrayValue(in.Value))
		default:
			row = common(row, l, i, c.Name, r, in)
		}
	}
	return row
}

func bronzeRow(row parquet.Row, l *lakehouse.Layout, r *resource, in *stage.Record) parquet.Row {
	for i, c := range l.Columns {
		switch c.Name {
		case lakehouse.ColID:
			row = putString(row, l, i, r.id)
		case lakehouse.ColResourceType:
			row = putString(row, l, i, r.typ)
		case lakehouse.ColVersionID:
			row = putString(row, l, i, r.version)
		case lakehouse.ColPatientRef:
			row = putString(row, l, i, r.patient)
		case lakehouse.ColResource:
			if r.deleted {
				row = putNull(row, i)
			} else {
				row = put(row, l, i, parquet.ByteArrayValue(in.Value))
			}
		case lakehouse.ColDeleted:
			row = put(row, l, i, parquet.BooleanValue(r.deleted))
		default:
			row = common(row, l, i, c.Name, r, in)
		}
	}
	return row
}

// common writes the columns silver and bronze share.
func common(row parquet.Row, l *lakehouse.Layout, i int, name string, r *resource, in *stage.Record) parquet.Row {
	switch name {
	case lakehouse.ColLastUpdated:
		if r.hasLastUpdated {
			return put(row, l, i, parquet.Int64Value(r.lastUpdated))
		}
		return putNull(row, i)
	case lakehouse.ColFHIRKey:
		return putString(row, l, i, r.key)
	case lakehouse.ColExportID:
		return putString(row, l, i, r.exportID)
	case lakehouse.ColSourceURL:
		return putString(row, l, i, r.sourceURL)
	case lakehouse.ColSourceLine:
		if r.hasSourceLine {
			return put(row, l, i, parquet.Int64Value(r.sourceLine))
		}
		return putNull(row, i)
	case lakehouse.ColKafkaPartition:
		return put(row, l, i, parquet.Int32Value(in.Partition))
	case lakehouse.ColKafkaOffset:
		return put(row, l, i, parquet.Int64Value(in.Offset))
	case lakehouse.ColKafkaTimestamp:
		return put(row, l, i, parquet.Int64Value(in.Timestamp.UnixMicro()))
	}
	panic(fmt.Sprintf("rows: table %s column %s has no writer", l, name)) // a layout/writer mismatch: a defect caught by every test
}
