package omop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

// Config configures the mapping stage.
type Config struct {
	// Topics names the output topics (Topics.OMOP(table)). Required.
	Topics schemas.Topics
	// Vocab is an Athena vocabulary (vocab.Load). Nil maps with the built-in concepts only
	// (vocab.Builtin): codes it does not know get concept_id 0 and are counted. Codes the
	// loaded vocabulary lacks are looked up in the built-in table too.
	Vocab *vocab.Vocabulary
	// Encoder writes the Avro record values. Default: schemas.NewCodecs() (single-object
	// encoding).
	Encoder schemas.Encoder
	// IDSystems are identifier systems whose values are the FHIR ids of the resources
	// they identify, so that a conditional reference "Type?identifier=S|V" with S in the
	// list resolves to "Type/V". Default: Synthea's system (SyntheaIDSystem).
	IDSystems []string
	// CollisionLimit bounds the ids remembered for collision detection (16 bytes each).
	// Default 1<<20; negative disables detection.
	CollisionLimit int
}

// Processor maps FHIR resources to OMOP rows. It implements stage.Processor and is safe
// for concurrent use by several partitions; it keeps no state between records.
type Processor struct {
	topics     schemas.Topics
	vocab      *vocab.Vocabulary
	builtin    *vocab.Vocabulary
	enc        schemas.Encoder
	idSystems  map[string]bool
	tables     map[string]*schemas.Table
	outTopics  map[string]string // table → its topic, built once: Topics.OMOP concatenates
	collisions *collisions
	tally      *tally
	parsers    fastjson.ParserPool
	// rowPools holds cleared row maps per table, sized for all its columns: building a
	// fresh map per row (and growing it when the envelope columns went in) was about half
	// the bytes the mapper allocated, and the garbage collector's work with them.
	rowPools map[string]*sync.Pool
	mappers  sync.Pool // *mapper, reset by release, with their slices kept
}

var _ stage.Processor = (*Processor)(nil)

// New returns the mapping stage's Processor.
func New(cfg Config) (*Processor, error) {
	if cfg.Topics.Prefix == "" {
		return nil, errors.New("omop: Config.Topics is required (schemas.NewTopics)")
	}
	p := &Processor{
		topics:    cfg.Topics,
		vocab:     cfg.Vocab,
		builtin:   vocab.Builtin(),
		enc:       cfg.Encoder,
		idSystems: map[string]bool{},
		tables:    map[string]*schemas.Table{},
		outTopics: map[string]string{},
		tally:     newTally(),
		rowPools:  map[string]*sync.Pool{},
	}
	p.mappers.New = func() any { return &mapper{p: p} }
	if p.enc == nil {
		c, err := schemas.NewCodecs()
		if err != nil {
			return nil, fmt.Errorf("omop: Avro codecs: %w", err)
		}
		p.enc = c
	}
	systems := cfg.IDSystems
	if systems == nil {
		systems = []string{SyntheaIDSystem}
	}
	for _, s := range systems {
		p.idSystems[s] = true
	}
	for _, name := range schemas.OMOPTables() {
		t, err := schemas.OMOPTable(name)
		if err != nil {
			return nil, fmt.Errorf("omop: %w", err)
		}
		p.tables[name] = t
		p.rowPools[name] = &sync.Pool{New: func() any { return make(map[string]any, len(t.Columns)) }}
		p.outTopics[name] = cfg.Topics.OMOP(name)
	}
	limit := cfg.CollisionLimit
	if limit == 0 {
		limit = 1 << 20
	}
	p.collisions = newCollisions(limit)
	return p, nil
}

// Summary returns what the Processor has done so far.
func (p *Processor) Summary() Summary { return p.tally.summary() }

// mapper is the per-record working set: the parsed resource, the record's envelope and
// the rows built so far.
type mapper struct {
	p       *Processor
	res     *fastjson.Value
	rtype   string
	key     string
	version any // string or nil
	updated any // time.Time or nil
	rows    []outRow
	counts  counts
}

type outRow struct {
	table string
	row   map[string]any
}

// newRow returns an empty row map for table from its pool; Process returns it there once
// the row is encoded.
func (m *mapper) newRow(table string) map[string]any {
	return m.p.rowPools[table].Get().(map[string]any)
}

// release clears the mapper and its rows and returns them to their pools. The rows are
// encoded by then, so nothing refers to them.
func (p *Processor) release(m *mapper) {
	for i, r := range m.rows {
		clear(r.row)
		p.rowPools[r.table].Put(r.row)
		m.rows[i] = outRow{}
	}
	*m = mapper{p: p, rows: m.rows[:0], counts: counts{
		rows:      m.counts.rows[:0],
		unmapped:  m.counts.unmapped[:0],
		truncated: m.counts.truncated[:0],
	}}
	p.mappers.Put(m)
}

// Process maps one fhir.unique.<Type> record. See the package documentation.
func (p *Processor) Process(ctx context.Context, in *stage.Record, _ stage.Store, out stage.Emitter) error {
	m := p.mappers.Get().(*mapper)
	defer p.release(m)
	var err error
	if in.IsTombstone() {
		err = m.retract(in.Key)
	} else {
		err = m.mapRecord(in)
	}
	if err != nil {
		if _, ok := stage.AsRejection(err); ok {
			p.tally.reject(m.rtype, rejectionClass(err))
		}
		return err
	}
	headers := outHeaders(in.Headers, p.enc.ContentType())
	for _, r := range m.rows {
		t := p.tables[r.table]
		for _, col := range t.TruncateStrings(r.row) {
			m.counts.truncated = append(m.counts.truncated, [2]string{r.table, col})
		}
		val, err := p.enc.Encode(ctx, r.table, r.row)
		if err != nil {
			if errors.Is(err, schemas.ErrInvalidRow) || errors.Is(err, schemas.ErrUnknownTable) {
				// A row the schema refuses is a mapping defect for this input, not an outage:
				// dead-letter the input with the reason rather than retry it forever.
				p.tally.reject(m.rtype, "invalid-row")
				return stage.Reject("invalid-row", m.rtype, "OMOP %s row does not fit its schema: %v", r.table, err)
			}
			return fmt.Errorf("encode %s row: %w", r.table, err)
		}
		out.Emit(stage.Record{Topic: p.outTopics[r.table], Key: in.Key, Value: val, Headers: headers, Timestamp: in.Timestamp})
		m.counts.rows = append(m.counts.rows, r.table)
	}
	p.tally.merge(m.rtype, &m.counts)
	return nil
}

func rejectionClass(err error) string {
	r, _ := stage.AsRejection(err)
	return r.Class
}

// outHeaders copies the input's headers (provenance) with the content type replaced. One
// slice is shared by all rows of a record; the runtime does not modify headers.
func outHeaders(in []stage.Header, contentType string) []stage.Header {
	hs := make([]stage.Header, 0, len(in)+1)
	for _, h := range in {
		if h.Key != schemas.ContentTypeHeader {
			hs = append(hs, h)
		}
	}
	return append(hs, stage.Header{Key: schemas.ContentTypeHeader, Value: []byte(contentType)})
}

func (m *mapper) mapRecord(in *stage.Record) error {
	parser := m.p.parsers.Get()
	defer m.p.parsers.Put(parser)
	res, err := parser.ParseBytes(in.Value)
	if err != nil {
		return stage.Reject("invalid-json", "", "record value is not JSON: %v", err)
	}
	m.res = res
	m.rtype = str(res, "resourceType")
	id := str(res, "id")
	if m.rtype == "" || id == "" {
		return stage.Reject("missing-required", "resourceType", "resource has no resourceType or id")
	}
	m.key = m.rtype + "/" + id
	if in.Key != nil && string(in.Key) != m.key {
		return stage.Reject("key-mismatch", m.rtype+".id", "record key does not match the resource's type and id")
	}
	m.version = nil
	if v := str(res, "meta", "versionId"); v != "" {
		m.version = v
	}
	if lu := str(res, "meta", "lastUpdated"); lu != "" {
		t, err := parseFHIRTime(lu)
		if err != nil || !t.hasTime {
			return stage.Reject("bad-format", m.rtype+".meta.lastUpdated", "not a FHIR instant")
		}
		m.updated = t.t
		if m.version == nil {
			m.version = lu
		}
	}
	switch m.rtype {
	case "Patient":
		return m.patient()
	case "Encounter":
		return m.encounter()
	case "Condition":
		return m.condition()
	case "Observation":
		return m.observation()
	case "Procedure":
		return m.procedure()
	case "MedicationRequest", "MedicationStatement", "MedicationAdministration":
		return m.medication()
	case "Immunization":
		return m.immunization()
	case "AllergyIntolerance":
		return m.allergy()
	case "Device":
		return m.device()
	case "DeviceUseStatement":
		return m.deviceUse()
	case "Practitioner":
		return m.practitioner()
	case "Organization":
		return m.organization()
	case "Location":
		return m.location()
	}
	m.skip("type-not-mapped")
	return nil
}

// skip records that the resource deliberately gives no (further) rows, and why.
func (m *mapper) skip(reason string) { m.counts.skipped = reason }

// add appends a row with the envelope columns set.
func (m *mapper) add(table string, component int, row map[string]any) {
	row[schemas.ColFHIRKey] = m.key
	row[schemas.ColFHIRVersion] = m.version
	row[schemas.ColFHIRLastUpdated] = m.updated
	row[schemas.ColFHIRComponent] = int32(component)
	row[schemas.ColFHIRDeleted] = false
	m.rows = append(m.rows, outRow{table: table, row: row})
}

// rowID is the id of component n of this resource, checked for collisions.
func (m *mapper) rowID(n int) int64 {
	k := m.key
	if n > 0 {
		k = m.key + "#" + itoa(n)
	}
	return m.checkedID(k)
}

func (m *mapper) checkedID(k string) int64 {
	id := ID(k)
	if m.p.collisions.check(id, k) {
		m.counts.collisions++
	}
	return id
}

// retractTables are the tables a resource type's rows can land in, so that a tombstone
// retracts them wherever the vocabulary routed them.
var eventTables = []string{"condition_occurrence", "measurement", "observation", "procedure_occurrence", "drug_exposure", "device_exposure"}

func retractTables(resourceType string) []string {
	switch resourceType {
	case "Patient":
		return []string{"person", "death", "location"}
	case "Encounter":
		return []string{"visit_occurrence"}
	case "Practitioner":
		return []string{"provider"}
	case "Organization":
		return []string{"care_site", "location"}
	case "Location":
		return []string{"location"}
	case "AllergyIntolerance":
		return []string{"observation"}
	case "Condition", "Observation", "Procedure", "MedicationRequest", "MedicationStatement",
		"MedicationAdministration", "Immunization", "Device", "DeviceUseStatement":
		return eventTables
	}
	return nil
}

// epoch fills required date columns of retraction rows, which carry no data.
var epoch = time.Unix(0, 0).UTC()

// retract emits one retraction row per table the deleted resource's type maps to. Only
// the envelope columns mean anything in such a row: required CDM columns hold
// placeholders (0, 1970-01-01) because the tombstone carries no data.
func (m *mapper) retract(key []byte) error {
	rtype, _, err := schemas.ParseKey(key)
	if err != nil {
		return stage.Reject("bad-key", "", "tombstone key: %v", err)
	}
	m.rtype, m.key = rtype, string(key)
	tables := retractTables(rtype)
	if tables == nil {
		m.skip("type-not-mapped")
		return nil
	}
	for _, name := range tables {
		t := m.p.tables[name]
		row := m.newRow(name)
		for _, c := range t.Columns {
			if !c.Required || c.HasDefault || c.Envelope {
				continue
			}
			switch c.Type {
			case schemas.TypeLong:
				row[c.Name] = int64(0)
			case schemas.TypeInt:
				row[c.Name] = int32(0)
			case schemas.TypeDate, schemas.TypeTimestamp:
				row[c.Name] = epoch
			case schemas.TypeString:
				row[c.Name] = ""
			case schemas.TypeDouble:
				row[c.Name] = 0.0
			case schemas.TypeBoolean:
				row[c.Name] = false
			}
		}
		m.add(name, 0, row)
		row[schemas.ColFHIRDeleted] = true
	}
	m.skip("")
	return nil
}
