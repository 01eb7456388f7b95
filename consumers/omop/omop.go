package omop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
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
	topics      schemas.Topics
	vocab       *vocab.Vocabulary
	builtin     *vocab.Vocabulary
	enc         schemas.Encoder
	rowEnc      rowEncoder // enc, when it encodes schemas.Row directly; else rows go as maps
	contentType []byte     // enc.ContentType(), the value of every output's content-type header
	idSystems   map[string]bool
	tables      map[string]*tableInfo // every OMOP table, by name
	t           outTables             // the ones the mapper writes, by role
	cols        columns               // their column positions
	collisions  *collisions
	tally       *tally
	mappers     sync.Pool // *mapper, reset by release, with their slices and spare rows kept
}

// rowEncoder is implemented by schemas.Codec and schemas.RegistryCodec: encoding a
// positional row skips building a map per row and hashing every column name twice.
type rowEncoder interface {
	EncodeRow(ctx context.Context, r *schemas.Row) ([]byte, error)
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
		tables:    map[string]*tableInfo{},
		tally:     &tally{},
	}
	if p.enc == nil {
		c, err := schemas.NewCodecs()
		if err != nil {
			return nil, fmt.Errorf("omop: Avro codecs: %w", err)
		}
		p.enc = c
	}
	p.rowEnc, _ = p.enc.(rowEncoder)
	p.contentType = []byte(p.enc.ContentType())
	systems := cfg.IDSystems
	if systems == nil {
		systems = []string{SyntheaIDSystem}
	}
	for _, s := range systems {
		p.idSystems[s] = true
	}
	for slot, name := range schemas.OMOPTables() {
		t, err := schemas.OMOPTable(name)
		if err != nil {
			return nil, fmt.Errorf("omop: %w", err)
		}
		info, err := newTableInfo(t, cfg.Topics.OMOP(name), slot)
		if err != nil {
			return nil, fmt.Errorf("omop: %w", err)
		}
		p.tables[name] = info
	}
	if err := p.bindTables(); err != nil {
		return nil, fmt.Errorf("omop: %w", err)
	}
	nTables := len(p.tables)
	p.mappers.New = func() any { return &mapper{p: p, tree: new(jsontree.Tree), spare: make([][]*schemas.Row, nTables)} }
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
	p *Processor
	// tree holds the parsed resource until release: res and every str() are views of
	// the record's value or of the tree.
	tree    *jsontree.Tree
	res     *jsontree.Value
	rtype   string
	key     string
	version string    // "" for none
	updated time.Time // zero for none
	rows    []outRow
	counts  counts
	// spare holds cleared rows per table (by tableInfo.slot) for the next records:
	// rows are reused rather than allocated per record.
	spare [][]*schemas.Row
	// scratch builds derived keys that are only hashed (checkedID keeps no key), so
	// they need no string of their own.
	scratch []byte
}

type outRow struct {
	table      *tableInfo
	row        *schemas.Row
	retraction bool
}

// newRow returns an empty row of t; release keeps it for reuse once it is encoded.
func (m *mapper) newRow(t *tableInfo) *schemas.Row {
	s := m.spare[t.slot]
	if n := len(s); n > 0 {
		r := s[n-1]
		m.spare[t.slot] = s[:n-1]
		return r
	}
	return t.table.NewRow()
}

// release clears the mapper and its rows and returns them to the pool. The rows are
// encoded by then, so nothing refers to them.
func (p *Processor) release(m *mapper) {
	for i, r := range m.rows {
		r.row.Reset()
		m.spare[r.table.slot] = append(m.spare[r.table.slot], r.row)
		m.rows[i] = outRow{}
	}
	m.tree.Release()
	*m = mapper{p: p, tree: m.tree, rows: m.rows[:0], spare: m.spare, scratch: m.scratch, counts: counts{
		rows:      m.counts.rows[:0],
		unmapped:  m.counts.unmapped[:0],
		refs:      m.counts.refs[:0],
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
	} else if err = m.mapRecord(in); err == nil {
		if _, update := in.Header(schemas.HeaderPreviousVersion); update {
			m.retractUnreached()
		}
	}
	if err != nil {
		if _, ok := stage.AsRejection(err); ok {
			p.tally.reject(m.rtype, rejectionClass(err))
		}
		return err
	}
	m.markReplaces()
	headers := outHeaders(in.Headers, p.contentType)
	for _, r := range m.rows {
		for _, col := range r.row.TruncateStrings() {
			m.counts.truncated = append(m.counts.truncated, [2]string{r.table.name, col})
		}
		var val []byte
		var err error
		if p.rowEnc != nil {
			val, err = p.rowEnc.EncodeRow(ctx, r.row)
		} else {
			val, err = p.enc.Encode(ctx, r.table.name, r.row.Map())
		}
		if err != nil {
			if errors.Is(err, schemas.ErrInvalidRow) || errors.Is(err, schemas.ErrUnknownTable) {
				// A row the schema refuses is a mapping defect for this input, not an outage:
				// dead-letter the input with the reason rather than retry it forever.
				p.tally.reject(m.rtype, schemas.ClassInvalidRow)
				return stage.Reject(schemas.ClassInvalidRow, m.rtype, "OMOP %s row does not fit its schema: %v", r.table.name, err)
			}
			return fmt.Errorf("encode %s row: %w", r.table.name, err)
		}
		out.Emit(stage.Record{Topic: r.table.topic, Key: in.Key, Value: val, Headers: headers, Timestamp: in.Timestamp})
		m.counts.rows = append(m.counts.rows, r.table)
	}
	outcome, reason := m.counts.outcome(in.IsTombstone(), m.dataRows())
	p.tally.merge(ctx, m.rtype, &m.counts, outcome, reason)
	return nil
}

func rejectionClass(err error) string {
	r, _ := stage.AsRejection(err)
	return r.Class
}

// outHeaders copies the input's headers (provenance) with the content type replaced. One
// slice is shared by all rows of a record, and contentType by all records; the runtime
// does not modify headers.
func outHeaders(in []stage.Header, contentType []byte) []stage.Header {
	hs := make([]stage.Header, 0, len(in)+1)
	for _, h := range in {
		if h.Key != schemas.ContentTypeHeader {
			hs = append(hs, h)
		}
	}
	return append(hs, stage.Header{Key: schemas.ContentTypeHeader, Value: contentType})
}

func (m *mapper) mapRecord(in *stage.Record) error {
	if m.unmappedByKey(in.Key) {
		return nil
	}
	// The tree stays with the mapper until release: the strings the mapper reads are
	// views of the record's value or of the tree (see str).
	if err := m.tree.Parse(in.Value); err != nil {
		return stage.Reject(schemas.ClassInvalidJSON, "", "record value is not JSON: %v", err)
	}
	res := m.tree.Root()
	m.res = res
	m.rtype = internType(res.String("resourceType"))
	id := str(res, "id")
	if m.rtype == "" || id == "" {
		return stage.Reject(schemas.ClassMissingRequired, "resourceType", "resource has no resourceType or id")
	}
	switch {
	case in.Key == nil:
		m.key = m.rtype + "/" + id
	case !schemas.IsKey(in.Key, m.rtype, id):
		return stage.Reject(schemas.ClassKeyMismatch, m.rtype+".id", "record key does not match the resource's type and id")
	default:
		// The key is <Type>/<id>: a view of it, like str's, saves a string per record.
		m.key = unsafe.String(unsafe.SliceData(in.Key), len(in.Key))
	}
	m.version = str(res, "meta", "versionId")
	if lu := str(res, "meta", "lastUpdated"); lu != "" {
		t, err := parseFHIRTime(lu)
		if err != nil || !t.hasTime {
			return stage.Reject(schemas.ClassBadFormat, m.rtype+".meta.lastUpdated", "not a FHIR instant")
		}
		m.updated = t.t
		if m.version == "" {
			m.version = lu
		}
	}
	if mapType, ok := typeMappers[m.rtype]; ok {
		return mapType(m)
	}
	m.skip("type-not-mapped")
	return nil
}

// typeMappers are the resource types this stage maps, and how.
var typeMappers = map[string]func(*mapper) error{
	"Patient":                  (*mapper).patient,
	"Encounter":                (*mapper).encounter,
	"Condition":                (*mapper).condition,
	"Observation":              (*mapper).observation,
	"Procedure":                (*mapper).procedure,
	"MedicationRequest":        (*mapper).medication,
	"MedicationStatement":      (*mapper).medication,
	"MedicationAdministration": (*mapper).medication,
	"Immunization":             (*mapper).immunization,
	"AllergyIntolerance":       (*mapper).allergy,
	"Device":                   (*mapper).device,
	"DeviceUseStatement":       (*mapper).deviceUse,
	"Practitioner":             (*mapper).practitioner,
	"Organization":             (*mapper).organization,
	"Location":                 (*mapper).location,
}

// unmappedByKey reports whether the record's key names a resource type this stage
// does not map. Such a record is counted and skipped unparsed: in Synthea exports,
// Claims and ExplanationOfBenefits are a third of the resources and the largest ones.
// The key is <Type>/<id> by the topic contract, and validate has checked upstream that
// it names the resource, so the key alone decides.
func (m *mapper) unmappedByKey(key []byte) bool {
	slash := bytes.IndexByte(key, '/')
	if slash <= 0 {
		return false // no usable key: the resource decides
	}
	if _, ok := typeMappers[string(key[:slash])]; ok {
		return false
	}
	m.rtype = internType(unsafe.String(unsafe.SliceData(key), slash)) // internType copies what it keeps
	m.skip("type-not-mapped")
	return true
}

// skip records that the resource deliberately gives no (further) rows, and why.
func (m *mapper) skip(reason string) { m.counts.skipped = reason }

// add appends a row of t with the envelope columns set.
func (m *mapper) add(t *tableInfo, component int, row *schemas.Row) {
	e := &t.env
	row.SetString(e.Key, m.key)
	setOptString(row, e.Version, m.version)
	if !m.updated.IsZero() {
		row.SetTimestamp(e.LastUpdated, m.updated)
	}
	row.SetInt(e.Component, int32(component))
	row.SetBool(e.Deleted, false)
	row.SetBool(e.Replaces, false)
	m.rows = append(m.rows, outRow{table: t, row: row})
}

// dataRows is the number of rows that are not retractions.
func (m *mapper) dataRows() int {
	n := 0
	for _, r := range m.rows {
		if !r.retraction {
			n++
		}
	}
	return n
}

// markReplaces sets _fhir_replaces on the first row of each table: the record's rows in
// a table (or its one retraction row there) replace every earlier row of its key there.
func (m *mapper) markReplaces() {
	var seen uint64 // by tableInfo.slot; there are 13 tables
	for _, r := range m.rows {
		if bit := uint64(1) << r.table.slot; seen&bit == 0 {
			seen |= bit
			r.row.SetBool(r.table.env.Replaces, true)
		}
	}
}

// retractUnreached adds a retraction row to every table the resource type can reach
// where this version has no rows: an update of a known key (dedupe's previous-version
// header) must take away the rows an earlier version left there, e.g. when the code now
// routes to another table, a component is gone, or the version is entered-in-error.
func (m *mapper) retractUnreached() {
	for _, name := range retractTables(m.rtype) {
		t := m.p.tables[name]
		reached := false
		for _, r := range m.rows {
			if r.table == t {
				reached = true
				break
			}
		}
		if !reached {
			m.addRetraction(t)
		}
	}
}

// rowID is the id of component n of this resource, checked for collisions.
func (m *mapper) rowID(n int) int64 {
	if n == 0 {
		return m.checkedID(m.key)
	}
	m.scratch = strconv.AppendInt(append(append(m.scratch[:0], m.key...), '#'), int64(n), 10)
	return m.checkedID(unsafe.String(&m.scratch[0], len(m.scratch)))
}

// suffixID is the id of the key "<resource key><suffix>" (such as "#address"), checked
// for collisions.
func (m *mapper) suffixID(suffix string) int64 {
	m.scratch = append(append(m.scratch[:0], m.key...), suffix...)
	return m.checkedID(unsafe.String(&m.scratch[0], len(m.scratch)))
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

// retract emits one retraction row per table the deleted resource's type maps to.
func (m *mapper) retract(key []byte) error {
	rtype, _, err := schemas.ParseKey(key)
	if err != nil {
		return stage.Reject(schemas.ClassBadKey, "", "tombstone key: %v", err)
	}
	m.rtype, m.key = rtype, string(key)
	tables := retractTables(rtype)
	if tables == nil {
		m.skip("type-not-mapped")
		return nil
	}
	for _, name := range tables {
		m.addRetraction(m.p.tables[name])
	}
	m.skip("")
	return nil
}

// addRetraction appends a retraction row of t (_fhir_deleted). Only the envelope columns
// mean anything in such a row: required CDM columns hold placeholders (0, 1970-01-01)
// because there is no data for them.
func (m *mapper) addRetraction(t *tableInfo) {
	row := m.newRow(t)
	for i, c := range t.table.Columns {
		if !c.Required || c.HasDefault || c.Envelope {
			continue
		}
		switch c.Type {
		case schemas.TypeLong:
			row.SetLong(i, 0)
		case schemas.TypeInt:
			row.SetInt(i, 0)
		case schemas.TypeDate:
			row.SetDate(i, epoch)
		case schemas.TypeTimestamp:
			row.SetTimestamp(i, epoch)
		case schemas.TypeLocalTimestamp:
			row.SetLocalTimestamp(i, epoch)
		case schemas.TypeString:
			row.SetString(i, "")
		case schemas.TypeDouble:
			row.SetDouble(i, 0)
		case schemas.TypeBoolean:
			row.SetBool(i, false)
		}
	}
	m.add(t, 0, row)
	row.SetBool(t.env.Deleted, true)
	m.rows[len(m.rows)-1].retraction = true
}
