package producer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/internal/jsontree"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
	"github.com/fhirstream/fhirstream/schemas"
)

// File kinds: manifest output, error and deleted entries, and local files.
const (
	kindOutput  = "output"
	kindError   = "error"
	kindDeleted = "deleted"
)

// fileRun is one file being published. cp is written by its worker under the publisher's
// gate (shared) and read by commit under the gate (exclusive).
type fileRun struct {
	key      string // state topic key
	kind     string
	typ      string // resource type; "" in organized output, where each line has its own
	index    int    // position among the manifest's entries of its kind
	url      string // current URL or local path
	expected *int64
	// organizedBy is the manifest's outputOrganizedBy; next is the file this one's last
	// resource block continues in (continuesInFile), published right after this one.
	organizedBy string
	next        *fileRun
	continued   bool // some file continues in this one

	cp        checkpoint
	committed checkpoint

	tombstones int64
	bytesRead  atomic.Int64
	finished   atomic.Bool // for the progress display
}

// label names f in messages: kind, position in the manifest and type (never its URL,
// which the errors of its requests name without their query).
func (f *fileRun) label() string {
	typ := f.typ
	if f.organizedBy != "" {
		typ = "organized by " + f.organizedBy
	}
	return fmt.Sprintf("%s file %d (%s)", f.kind, f.index, typ)
}

// opener opens a file's stream at an identity-byte offset.
type opener func(ctx context.Context, f *fileRun, offset int64) (io.ReadCloser, error)

// runner publishes files through a publisher; it holds what every file shares.
type runner struct {
	cfg       *Config
	pub       *publisher
	topics    schemas.Topics
	exportID  []byte
	txTime    []byte
	maxRec    int
	ensure    func(ctx context.Context, resourceType string) error
	resources atomic.Int64
	bytes     atomic.Int64

	// deleted holds the resources this run tombstoned, so that a deletion listed twice
	// (overlapping deleted files) is published once.
	deletedMu sync.Mutex
	deleted   map[string]struct{}
}

const recordOverhead = 1024 // key, headers and batch framing, generously

// publishFile streams f from its checkpoint to its end.
func (rn *runner) publishFile(ctx context.Context, f *fileRun, open opener) error {
	if f.cp.Done {
		f.finished.Store(true)
		return nil
	}
	if f.kind == kindOutput && f.organizedBy == "" {
		if err := rn.ensure(ctx, f.typ); err != nil {
			return err
		}
	}
	src, err := open(ctx, f, f.cp.Offset)
	if err != nil {
		return err
	}
	body := newReadAhead(src)
	defer body.Close()
	lr := newLineReader(&countingReader{r: body, n: &f.bytesRead, total: &rn.bytes}, rn.cfg.MaxLineBytes, f.cp.Offset, f.cp.Line)
	var parser fastjson.Parser
	// The source URL header names the file without its query: a signed URL's signature
	// is a credential, and records are read by every subscriber and kept in the lake.
	urlB := []byte(ehrhttp.Redact(f.url))
	var ft *fileTemplate // for lines of a plain output file, the only ones using it
	if f.kind == kindOutput && f.organizedBy == "" {
		ft = rn.fileTemplate(f.typ, urlB)
		defer ft.arena.release()
	}
	const batchLines, batchBytes = 256, 1 << 20
	for {
		rn.pub.enter()
		var produced int64
		var err error
		for i := 0; i < batchLines && produced < batchBytes; i++ {
			var line []byte
			var size int64
			line, size, err = lr.next()
			if err != nil {
				break
			}
			produced += size
			rn.handleLine(ctx, f, ft, &parser, line, size, lr.lineNo, urlB)
			f.cp.Line, f.cp.Offset = lr.lineNo, lr.offset
		}
		if err == io.EOF {
			f.cp.Done = true
		}
		rn.pub.leave(produced)
		if err == io.EOF {
			f.finished.Store(true)
			metricBytes.WithLabelValues(f.typ).Add(float64(f.bytesRead.Load()))
			return nil
		}
		if err != nil {
			return err
		}
		if perr := rn.pub.failed(); perr != nil {
			return perr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// fileTemplate is what every line of a file shares, built once per file rather than
// per line: at hundreds of thousands of lines a second, per-line topic names, header
// values and metric lookups are a measurable share of the fetcher's CPU.
type fileTemplate struct {
	rawTopic  string
	headers   [lineHeaderCount]kgo.RecordHeader // the line number's value left to each line
	resources prometheus.Counter
	arena     lineArena
}

func (rn *runner) fileTemplate(typ string, urlB []byte) *fileTemplate {
	ft := &fileTemplate{rawTopic: rn.topics.Raw(typ), resources: metricResources.WithLabelValues(typ)}
	ft.arena.blocks = &rn.pub.blocks
	copy(ft.headers[:], rn.headers(typ, urlB, 0))
	return ft
}

// lineRecord is a published line's record with its headers and line number, so that
// they take one allocation, not four.
type lineRecord struct {
	rec     kgo.Record
	headers [lineHeaderCount]kgo.RecordHeader
	lineNo  [20]byte
}

// lineArena hands out the records and the key and value bytes of a file's published
// lines from blocks that many lines share. Two allocations per line, at a few hundred
// thousand lines a second, cost the fetcher about a tenth of its CPU with the garbage
// collector's work on them. With a pool (blocks), a byte block is written again once
// the client has acknowledged every record in it; without one it stays in memory until
// the client has dropped the last record in it.
type lineArena struct {
	records []lineRecord
	cur     *arenaBlock
	// blocks, when set, recycles byte blocks (blockPool); nil allocates each afresh.
	blocks *blockPool
}

const (
	arenaRecords = 128
	arenaBytes   = 256 << 10
)

// record returns a zeroed lineRecord.
func (a *lineArena) record() *lineRecord {
	if len(a.records) == cap(a.records) {
		a.records = make([]lineRecord, 0, arenaRecords)
	}
	a.records = a.records[:len(a.records)+1]
	return &a.records[len(a.records)-1]
}

// alloc returns n bytes of capacity n (appending to them reallocates instead of running
// into the next line's bytes) and the block they are in, nil for bytes of their own. A
// piece of a block must be released (arenaBlock.release) once the client is done with
// the record holding it: the produce promise does that for records whose Context is
// the block's (blockOf). A line above a quarter of a block gets bytes of its own,
// so that a block's tail is not wasted on it.
func (a *lineArena) alloc(n int) ([]byte, *arenaBlock) {
	if n > arenaBytes/4 {
		return make([]byte, n), nil
	}
	if a.cur == nil || n > cap(a.cur.buf)-len(a.cur.buf) {
		a.release()
		a.cur = a.blocks.get()
	}
	b := a.cur
	b.refs.Add(1)
	start := len(b.buf)
	b.buf = b.buf[:start+n]
	return b.buf[start : start+n : start+n], b
}

// release gives up the arena's current block: when the file's lines are all produced,
// or when the block is full.
func (a *lineArena) release() {
	if a.cur != nil {
		a.cur.release()
		a.cur = nil
	}
}

// arenaBlock is a byte block of lineArenas with a count of its users: one for the arena
// filling it, one for each record holding a piece of it that the client has not
// acknowledged yet. The last to let go hands it back to its pool.
type arenaBlock struct {
	buf  []byte
	refs atomic.Int64
	pool *blockPool
	ctx  context.Context // carries the block in its records' Context, to the promise
}

type blockKey struct{}

// blockOf returns the block a record's bytes were carved from, if any.
func blockOf(r *kgo.Record) *arenaBlock {
	if r.Context == nil {
		return nil
	}
	b, _ := r.Context.Value(blockKey{}).(*arenaBlock)
	return b
}

func (b *arenaBlock) release() {
	if b.refs.Add(-1) == 0 && b.pool != nil {
		b.pool.put(b)
	}
}

// blockPool recycles the lineArenas' byte blocks. Without it every block was a fresh
// 256 KiB allocation, zeroed by the runtime before each use: copying lines into fresh
// blocks was over a quarter of the fetcher's CPU in its benchmark's profile. A block is
// recycled once the client has acknowledged every record in it (franz-go calls a
// record's promise when it is done with it), so the pool holds about what the client
// buffers, which was in memory anyway; free blocks beyond maxFreeBlocks go to the
// garbage collector.
type blockPool struct {
	mu   sync.Mutex
	free []*arenaBlock
}

// maxFreeBlocks bounds the pool's idle blocks (16 MiB), about the client's buffer.
const maxFreeBlocks = 64

// get returns an empty block with one user, the caller. A nil pool allocates a block
// that no pool takes back.
func (p *blockPool) get() *arenaBlock {
	var b *arenaBlock
	if p != nil {
		p.mu.Lock()
		if n := len(p.free); n > 0 {
			b = p.free[n-1]
			p.free[n-1] = nil
			p.free = p.free[:n-1]
		}
		p.mu.Unlock()
	}
	if b == nil {
		b = &arenaBlock{buf: make([]byte, 0, arenaBytes), pool: p}
		b.ctx = context.WithValue(context.Background(), blockKey{}, b)
	}
	b.buf = b.buf[:0]
	b.refs.Store(1)
	return b
}

func (p *blockPool) put(b *arenaBlock) {
	p.mu.Lock()
	if len(p.free) < maxFreeBlocks {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
}

// handleLine publishes one line; called inside the gate.
func (rn *runner) handleLine(ctx context.Context, f *fileRun, ft *fileTemplate, p *fastjson.Parser, line []byte, size, lineNo int64, urlB []byte) {
	if line == nil { // longer than MaxLineBytes
		f.cp.Read++
		rn.deadByRef(ctx, f, lineNo, size, schemas.ClassLineTooLong, fmt.Sprintf("line of %d bytes exceeds the %d-byte line limit", size, rn.cfg.MaxLineBytes))
		return
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	f.cp.Read++
	switch f.kind {
	case kindError:
		rn.exportError(ctx, f, p, line, lineNo, urlB)
		return
	case kindDeleted:
		rn.tombstones(ctx, f, p, line, lineNo, urlB)
		return
	}
	if f.organizedBy != "" {
		rn.organizedLine(ctx, f, p, line, size, lineNo, urlB)
		return
	}
	if int(size)+recordOverhead > rn.maxRec {
		rn.deadByRef(ctx, f, lineNo, size, schemas.ClassTooLarge, fmt.Sprintf("resource of %d bytes exceeds the %d-byte record limit", size, rn.maxRec))
		return
	}
	// The fast path: one scan checks the line and finds its type and id without building
	// a tree; a line it leaves undecided (bad, or with escapes) takes fastjson's path below.
	if rt, id, ok := scanResource(line); ok && string(rt) == f.typ && schemas.ValidResourceID(id) {
		// Value and key come from the file's arena, in one piece; the value's capacity
		// is capped so that nothing appending to it could run into the key.
		buf, block := ft.arena.alloc(len(line) + len(f.typ) + 1 + len(id))
		buf = append(buf[:0], line...)
		buf = append(append(append(buf, f.typ...), '/'), id...) // schemas.Key's form, without its string(id)
		lr := ft.arena.record()
		lr.headers = ft.headers
		lr.headers[lineHeaderIndex].Value = strconv.AppendInt(lr.lineNo[:0], lineNo, 10)
		lr.rec = kgo.Record{Topic: ft.rawTopic, Key: buf[len(line):], Value: buf[:len(line):len(line)], Headers: lr.headers[:]}
		if block != nil {
			lr.rec.Context = block.ctx // the promise releases the block's piece
		}
		f.cp.Published++
		rn.resources.Add(1)
		ft.resources.Inc()
		rn.pub.produce(ctx, &lr.rec)
		return
	}
	rawTopic := ft.rawTopic
	value := append([]byte(nil), line...)
	headers := rn.headers(f.typ, urlB, lineNo)
	key := []byte(nil)
	v, class, msg := parseObject(p, line)
	if class == "" {
		rt, id := v.GetStringBytes("resourceType"), v.GetStringBytes("id")
		switch {
		case rt == nil:
			class, msg = schemas.ClassMissingResourceType, "resource has no resourceType"
		case string(rt) != f.typ:
			class, msg = schemas.ClassTypeMismatch, fmt.Sprintf("resourceType %q in a %s file", truncate(string(rt), 64), f.typ)
		case id == nil:
			class, msg = schemas.ClassMissingID, "resource has no id"
		case !schemas.ValidResourceID(id):
			class, msg = schemas.ClassBadID, "id is not a FHIR id (1-64 of A-Z a-z 0-9 - .)"
		default:
			key = schemas.Key(f.typ, string(id))
		}
	}
	rec := &kgo.Record{Topic: rawTopic, Key: key, Value: value, Headers: headers}
	if class != "" {
		f.cp.Dead++
		rn.deadLetter(ctx, rec, rawTopic, class, msg)
		return
	}
	f.cp.Published++
	rn.resources.Add(1)
	metricResources.WithLabelValues(f.typ).Inc()
	rn.pub.produce(ctx, rec)
}

// parseObject parses a line that must be one JSON object; otherwise it returns the
// dead-letter class and message saying why it is not.
func parseObject(p *fastjson.Parser, line []byte) (v *fastjson.Value, class, msg string) {
	v, err := p.ParseBytes(line)
	switch {
	case err != nil:
		return nil, schemas.ClassInvalidJSON, "line is " + jsontree.SyntaxErrorOf(line).Error() // by position: fastjson's message quotes the line
	case v.Type() != fastjson.TypeObject:
		return nil, schemas.ClassNotObject, "line is a JSON " + v.Type().String() + ", not an object"
	}
	return v, "", ""
}

// organizedLine handles a line of organized output (organizeOutputBy): a block header
// is noted and not published; any other line goes to the raw topic of its own type.
func (rn *runner) organizedLine(ctx context.Context, f *fileRun, p *fastjson.Parser, line []byte, size, lineNo int64, urlB []byte) {
	if int(size)+recordOverhead > rn.maxRec {
		rn.deadByRef(ctx, f, lineNo, size, schemas.ClassTooLarge, fmt.Sprintf("resource of %d bytes exceeds the %d-byte record limit", size, rn.maxRec))
		return
	}
	typ, key := "", []byte(nil)
	v, class, msg := parseObject(p, line)
	if class == "" {
		rt, id := v.GetStringBytes("resourceType"), v.GetStringBytes("id")
		if string(rt) == "Parameters" && string(v.GetStringBytes("parameter", "0", "name")) == "header" {
			ref := string(v.GetStringBytes("parameter", "0", "valueReference", "reference"))
			f.cp.Headers++
			if f.cp.Headers == 1 {
				f.cp.FirstHeader = ref
			}
			f.cp.LastHeader = ref
			return
		}
		switch {
		case rt == nil:
			class, msg = schemas.ClassMissingResourceType, "resource has no resourceType"
		case !schemas.ValidResourceType(rt):
			class, msg = schemas.ClassBadResourceType, fmt.Sprintf("resourceType %q is not a FHIR resource type", truncate(string(rt), 64))
		case id == nil:
			class, msg = schemas.ClassMissingID, "resource has no id"
		case !schemas.ValidResourceID(id):
			class, msg = schemas.ClassBadID, "id is not a FHIR id (1-64 of A-Z a-z 0-9 - .)"
		default:
			typ, key = string(rt), schemas.Key(string(rt), string(id))
		}
	}
	if class != "" {
		f.cp.Dead++
		rn.deadLetter(ctx, &kgo.Record{Value: append([]byte(nil), line...), Headers: rn.headers("", urlB, lineNo)}, "", class, msg)
		return
	}
	// Types are known only line by line here; the topic is created on first sight.
	if err := rn.ensure(ctx, typ); err != nil {
		rn.pub.fail(err)
		return
	}
	f.cp.Published++
	rn.resources.Add(1)
	metricResources.WithLabelValues(typ).Inc()
	rn.pub.produce(ctx, &kgo.Record{Topic: rn.topics.Raw(typ), Key: key, Value: append([]byte(nil), line...), Headers: rn.headers(typ, urlB, lineNo)})
}

// lineHeaderCount is the number of headers headers returns; lineHeaderIndex is the
// position of the line number among them.
const lineHeaderCount, lineHeaderIndex = 6, 4

func (rn *runner) headers(typ string, urlB []byte, lineNo int64) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: schemas.ContentTypeHeader, Value: []byte(schemas.ContentTypeFHIR)},
		{Key: schemas.HeaderExportID, Value: rn.exportID},
		{Key: schemas.HeaderTransactionTime, Value: rn.txTime},
		{Key: schemas.HeaderSourceURL, Value: urlB},
		{Key: schemas.HeaderSourceLine, Value: strconv.AppendInt(nil, lineNo, 10)},
		{Key: schemas.HeaderResourceType, Value: []byte(typ)},
	}
}

// deadByRef dead-letters a line that cannot travel in a record: empty value, and headers
// saying where the line is (file URL, line, size) and why.
func (rn *runner) deadByRef(ctx context.Context, f *fileRun, lineNo, size int64, class, msg string) {
	f.cp.Dead++
	f.cp.Oversize++
	h := rn.headers(f.typ, []byte(ehrhttp.Redact(f.url)), lineNo)
	h = append(h, kgo.RecordHeader{Key: schemas.HeaderSourceSize, Value: strconv.AppendInt(nil, size, 10)})
	rn.deadLetter(ctx, &kgo.Record{Topic: rn.topics.Raw(f.typ), Headers: h}, rn.topics.Raw(f.typ), class, msg)
}

// exportError publishes a line of a manifest error file (an OperationOutcome) as a dead
// letter, its diagnostics as the message.
func (rn *runner) exportError(ctx context.Context, f *fileRun, p *fastjson.Parser, line []byte, lineNo int64, urlB []byte) {
	f.cp.Dead++
	msg := "export error reported by the server"
	if v, err := p.ParseBytes(line); err == nil {
		var texts []string
		for _, is := range v.GetArray("issue") {
			if d := is.GetStringBytes("diagnostics"); d != nil {
				texts = append(texts, string(d))
			} else if d := is.GetStringBytes("details", "text"); d != nil {
				texts = append(texts, string(d))
			}
		}
		if len(texts) > 0 {
			msg = ehrhttp.Bound(strings.Join(texts, "; "), 1000)
		}
	}
	rec := &kgo.Record{Value: append([]byte(nil), line...), Headers: rn.headers("OperationOutcome", urlB, lineNo)}
	rn.deadLetter(ctx, rec, "", schemas.ClassExportError, msg)
}

// tombstones turns a deleted-file Bundle into one tombstone per DELETE entry, on the
// entry type's raw topic, created first if need be.
func (rn *runner) tombstones(ctx context.Context, f *fileRun, p *fastjson.Parser, line []byte, lineNo int64, urlB []byte) {
	entries, err := deletedEntries(p, line)
	if err != nil {
		f.cp.Dead++
		rec := &kgo.Record{Value: append([]byte(nil), line...), Headers: rn.headers("Bundle", urlB, lineNo)}
		rn.deadLetter(ctx, rec, "", schemas.ClassBadDeleted, err.Error())
		return
	}
	for _, e := range entries {
		if err := rn.ensure(ctx, e[0]); err != nil {
			rn.pub.fail(err)
			return
		}
	}
	f.cp.Published++
	for _, e := range entries {
		if !rn.firstDeletion(e) {
			// Listed again, in this or another deleted file: one tombstone per resource.
			f.cp.Duplicates++
			continue
		}
		h := rn.headers(e[0], urlB, lineNo)
		h = append(h, kgo.RecordHeader{Key: schemas.HeaderDeleted, Value: []byte("true")})
		f.tombstones++
		rn.pub.produce(ctx, &kgo.Record{Topic: rn.topics.Raw(e[0]), Key: schemas.Key(e[0], e[1]), Headers: h})
	}
}

// firstDeletion reports whether this run has not seen the deletion of e before.
func (rn *runner) firstDeletion(e [2]string) bool {
	rn.deletedMu.Lock()
	defer rn.deletedMu.Unlock()
	key := e[0] + "/" + e[1]
	if _, seen := rn.deleted[key]; seen {
		return false
	}
	if rn.deleted == nil {
		rn.deleted = map[string]struct{}{}
	}
	rn.deleted[key] = struct{}{}
	return true
}

// deletedEntries returns the [type, id] of each DELETE entry of a Bundle line.
func deletedEntries(p *fastjson.Parser, line []byte) ([][2]string, error) {
	v, err := p.ParseBytes(line)
	if err != nil {
		return nil, fmt.Errorf("deleted file line is not valid JSON")
	}
	if string(v.GetStringBytes("resourceType")) != "Bundle" {
		return nil, fmt.Errorf("deleted file line is not a Bundle")
	}
	var out [][2]string
	for _, e := range v.GetArray("entry") {
		if string(e.GetStringBytes("request", "method")) != "DELETE" {
			continue
		}
		u := string(e.GetStringBytes("request", "url"))
		u, _, _ = strings.Cut(u, "/_history")
		parts := strings.Split(strings.TrimRight(u, "/"), "/")
		if len(parts) < 2 {
			return nil, fmt.Errorf("DELETE entry url %q is not Type/id", truncate(u, 100))
		}
		typ, id := parts[len(parts)-2], parts[len(parts)-1]
		if !schemas.ValidResourceType(typ) || !schemas.ValidResourceID(id) {
			return nil, fmt.Errorf("DELETE entry url %q is not Type/id", truncate(u, 100))
		}
		out = append(out, [2]string{typ, id})
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type countingReader struct {
	r     io.Reader
	n     *atomic.Int64
	total *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	c.total.Add(int64(n))
	return n, err
}
