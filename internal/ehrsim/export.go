package ehrsim

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"
)

type level int

const (
	levelSystem level = iota
	levelPatient
	levelGroup
)

// nonPatientTypes are left out of patient- and group-level exports: they are not in the
// Patient compartment.
var nonPatientTypes = map[string]bool{"Organization": true, "Location": true, "Practitioner": true,
	"PractitionerRole": true, "Medication": true, "HealthcareService": true, "Endpoint": true}

// request is a parsed kickoff.
type request struct {
	types       []string
	since       time.Time
	until       time.Time
	elements    map[string][]string     // _elements by type; "" holds those given without a type
	typeFilters map[string][]url.Values // by type, OR'd
	patients    map[string]bool         // POST patient parameter
	organizeBy  string                  // organizeOutputBy: "" or "Patient"
	level       level
}

// job is one export.
type job struct {
	id      string
	request string // the kickoff URL
	// organizedBy is the organizeOutputBy type, set before the job is shared.
	organizedBy string
	txTime      time.Time
	dir         string // materialized files, when filtering or splitting
	mu          sync.Mutex
	ready       bool
	err         error
	polls       int
	gen         int
	files       []jobFile
	fileState   map[int]*fileFaults
}

type jobFile struct {
	kind  string // "output", "error" or "deleted"
	typ   string // "" in output organized by patient, which mixes types
	path  string
	size  int64
	lines int64
	// gzPath is a ready gzip copy of the file ("" when it must be compressed as served).
	gzPath string
	// continues is the index of the file the last resource block of this one continues
	// in (organized output), or 0 when it does not continue: a file never continues in
	// the first file.
	continues int
}

type fileFaults struct {
	truncated int
	expired   int
}

func (j *job) remove() {
	if j.dir != "" {
		os.RemoveAll(j.dir)
	}
}

func (s *Server) handleKickoff(w http.ResponseWriter, r *http.Request, lvl level, group string) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeOutcome(w, http.StatusMethodNotAllowed, "error", "not-supported", "kickoff takes GET or POST")
		return
	}
	if a := r.Header.Get("Accept"); a != "application/fhir+json" {
		writeOutcome(w, http.StatusBadRequest, "error", "invalid", fmt.Sprintf("Accept must be application/fhir+json, got %q", a))
		return
	}
	if !strings.Contains(r.Header.Get("Prefer"), "respond-async") {
		writeOutcome(w, http.StatusBadRequest, "error", "invalid", "Prefer: respond-async is required")
		return
	}
	if lvl == levelGroup && !slices.Contains(s.cfg.GroupIDs, group) {
		writeOutcome(w, http.StatusNotFound, "error", "not-found", fmt.Sprintf("Group/%s is not known", group))
		return
	}
	params, err := kickoffParams(r)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "error", "invalid", err.Error())
		return
	}
	req, err := parseRequest(params, lvl)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, "error", "invalid", err.Error())
		return
	}
	s.stats.Kickoffs.Add(1)
	j := &job{id: newID(), request: s.URL + r.URL.RequestURI(), txTime: time.Now().UTC().Truncate(time.Millisecond),
		fileState: map[int]*fileFaults{}, organizedBy: req.organizeBy}
	if s.cfg.Faults.ReuseStatusURL {
		j.id = "reused"
	}
	s.mu.Lock()
	if old := s.jobs[j.id]; old != nil {
		old.mu.Lock()
		old.remove()
		old.mu.Unlock()
	}
	s.jobs[j.id] = j
	s.mu.Unlock()
	go s.build(j, req)
	w.Header().Set("Content-Location", s.URL+"/status/"+j.id)
	w.WriteHeader(http.StatusAccepted)
}

// kickoffParams collects parameters from the query (GET) or a Parameters body (POST).
func kickoffParams(r *http.Request) (map[string][]string, error) {
	out := map[string][]string{}
	for k, v := range r.URL.Query() {
		out[k] = append(out[k], v...)
	}
	if r.Method != http.MethodPost {
		return out, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read Parameters body: %w", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return out, nil
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string                      `json:"name"`
			ValueString    *string                     `json:"valueString"`
			ValueInstant   *string                     `json:"valueInstant"`
			ValueBoolean   *bool                       `json:"valueBoolean"`
			ValueCode      *string                     `json:"valueCode"`
			ValueReference *struct{ Reference string } `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("kickoff body is not a Parameters resource: %w", err)
	}
	if p.ResourceType != "Parameters" {
		return nil, fmt.Errorf("kickoff body has resourceType %q, want Parameters", p.ResourceType)
	}
	for _, prm := range p.Parameter {
		switch {
		case prm.ValueString != nil:
			out[prm.Name] = append(out[prm.Name], *prm.ValueString)
		case prm.ValueInstant != nil:
			out[prm.Name] = append(out[prm.Name], *prm.ValueInstant)
		case prm.ValueCode != nil:
			out[prm.Name] = append(out[prm.Name], *prm.ValueCode)
		case prm.ValueBoolean != nil:
			out[prm.Name] = append(out[prm.Name], strconv.FormatBool(*prm.ValueBoolean))
		case prm.ValueReference != nil:
			out[prm.Name] = append(out[prm.Name], prm.ValueReference.Reference)
		}
	}
	return out, nil
}

func parseRequest(p map[string][]string, lvl level) (request, error) {
	req := request{level: lvl, typeFilters: map[string][]url.Values{}}
	for _, v := range p["_type"] {
		req.types = append(req.types, splitList(v)...)
	}
	if v := p["_since"]; len(v) > 0 {
		t, err := time.Parse(time.RFC3339Nano, v[0])
		if err != nil {
			return req, fmt.Errorf("_since %q is not a FHIR instant", v[0])
		}
		req.since = t
	}
	if v := p["_until"]; len(v) > 0 {
		t, err := time.Parse(time.RFC3339Nano, v[0])
		if err != nil {
			return req, fmt.Errorf("_until %q is not a FHIR instant", v[0])
		}
		req.until = t
	}
	if !req.since.IsZero() && !req.until.IsZero() && !req.until.After(req.since) {
		return req, fmt.Errorf("_until %s is not after _since %s", req.until.Format(time.RFC3339), req.since.Format(time.RFC3339))
	}
	for _, v := range p["_elements"] {
		for _, el := range splitList(v) {
			typ, name, hasType := strings.Cut(el, ".")
			if !hasType {
				typ, name = "", el
			}
			if name == "" || strings.Contains(name, ".") {
				return req, fmt.Errorf("_elements %q: want element or Type.element (root elements only)", el)
			}
			if req.elements == nil {
				req.elements = map[string][]string{}
			}
			req.elements[typ] = append(req.elements[typ], name)
		}
	}
	for _, f := range p["_outputFormat"] {
		switch f {
		case "application/fhir+ndjson", "application/ndjson", "ndjson":
		default:
			return req, fmt.Errorf("_outputFormat %q is not supported", f)
		}
	}
	for _, tf := range p["_typeFilter"] {
		for _, one := range splitList(tf) {
			typ, q, ok := strings.Cut(one, "?")
			if !ok {
				return req, fmt.Errorf("_typeFilter %q: want Type?search", one)
			}
			vals, err := url.ParseQuery(q)
			if err != nil {
				return req, fmt.Errorf("_typeFilter %q: %w", one, err)
			}
			req.typeFilters[typ] = append(req.typeFilters[typ], vals)
		}
	}
	if v := p["organizeOutputBy"]; len(v) > 0 && v[0] != "" {
		if v[0] != "Patient" {
			return req, fmt.Errorf("organizeOutputBy %q is not supported (only Patient)", v[0])
		}
		req.organizeBy = v[0]
	}
	if refs := p["patient"]; len(refs) > 0 {
		if lvl == levelSystem {
			return req, fmt.Errorf("the patient parameter needs a Patient or Group level export")
		}
		req.patients = map[string]bool{}
		for _, ref := range refs {
			req.patients[strings.TrimPrefix(ref, "Patient/")] = true
		}
	}
	return req, nil
}

// build prepares a job's files: the source files as they are when nothing is filtered
// or split, otherwise filtered copies streamed into a job directory.
func (s *Server) build(j *job, req request) {
	files, dir, err := s.buildFiles(j, req)
	s.mu.Lock()
	live := s.jobs[j.id] == j
	s.mu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	j.files, j.dir, j.err, j.ready = files, dir, err, true
	if !live {
		// Deleted, or the server closed, while the files were being written: nobody
		// else will remove them.
		j.remove()
	}
}

func (s *Server) buildFiles(j *job, req request) ([]jobFile, string, error) {
	filtering := req.organizeBy != "" || !req.since.IsZero() || !req.until.IsZero() || len(req.elements) > 0 || len(req.typeFilters) > 0 ||
		req.patients != nil || s.cfg.ResourcesPerFile > 0
	f := s.cfg.Faults
	var dir string
	if filtering || f.ErrorLines > 0 || f.DeletedLines > 0 {
		d, err := os.MkdirTemp("", "ehrsim-job-")
		if err != nil {
			return nil, "", err
		}
		dir = d
	}
	var files []jobFile
	if req.organizeBy != "" {
		var err error
		if files, err = s.organizeByPatient(dir, req); err != nil {
			return nil, dir, err
		}
	}
	for _, sf := range s.src.files {
		if req.organizeBy != "" {
			break
		}
		if len(req.types) > 0 && !slices.Contains(req.types, sf.typ) {
			continue
		}
		if req.level != levelSystem && nonPatientTypes[sf.typ] {
			continue
		}
		if !filtering {
			files = append(files, jobFile{kind: "output", typ: sf.typ, path: sf.path, size: sf.size, lines: sf.lines, gzPath: sf.gzPath})
			continue
		}
		out, err := s.filterFile(dir, sf, req, len(files))
		if err != nil {
			return nil, dir, err
		}
		files = append(files, out...)
	}
	if f.ErrorLines > 0 {
		var b strings.Builder
		for i := range f.ErrorLines {
			fmt.Fprintf(&b, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"simulated export error %d: a resource could not be exported"}]}`+"\n", i+1)
		}
		jf, err := writeJobFile(dir, "error.ndjson", "error", "OperationOutcome", b.String(), int64(f.ErrorLines))
		if err != nil {
			return nil, dir, err
		}
		files = append(files, jf)
	}
	if f.DeletedLines > 0 {
		deleted, err := deletedFiles(dir, f.DeletedLines, f.OverlappingDeleted)
		if err != nil {
			return nil, dir, err
		}
		files = append(files, deleted...)
	}
	return files, dir, nil
}

// deletedFiles writes the deleted list: one Bundle line listing n deleted Patients, or
// with overlap two files, split in the middle, that both list the middle deletion.
func deletedFiles(dir string, n int, overlap bool) ([]jobFile, error) {
	bundle := func(from, to int) string { // Patients deleted-from .. deleted-to
		var b strings.Builder
		b.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
		for i := from; i <= to; i++ {
			if i > from {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"request":{"method":"DELETE","url":"Patient/deleted-%d"}}`, i)
		}
		b.WriteString("]}\n")
		return b.String()
	}
	if !overlap {
		jf, err := writeJobFile(dir, "deleted.ndjson", "deleted", "Bundle", bundle(1, n), 1)
		return []jobFile{jf}, err
	}
	mid := (n + 1) / 2
	a, err := writeJobFile(dir, "deleted.1.ndjson", "deleted", "Bundle", bundle(1, mid), 1)
	if err != nil {
		return nil, err
	}
	b, err := writeJobFile(dir, "deleted.2.ndjson", "deleted", "Bundle", bundle(mid, n), 1)
	return []jobFile{a, b}, err
}

func writeJobFile(dir, name, kind, typ, content string, lines int64) (jobFile, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		return jobFile{}, err
	}
	return jobFile{kind: kind, typ: typ, path: p, size: int64(len(content)), lines: lines}, nil
}

// filterFile streams sf through the request's filters into one or more files of dir.
func (s *Server) filterFile(dir string, sf srcFile, req request, base int) ([]jobFile, error) {
	in, err := os.Open(sf.path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var (
		w     jobWriter
		p     fastjson.Parser
		arena fastjson.Arena
		buf   []byte
		seq   int
		limit = int64(s.cfg.ResourcesPerFile)
	)
	defer w.close()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		v, err := p.ParseBytes(line)
		if err == nil && !keep(v, sf.typ, req) {
			continue
		}
		if err == nil && len(req.elements) > 0 {
			arena.Reset()
			if subset(v, &arena, sf.typ, req.elements) {
				buf = v.MarshalTo(buf[:0])
				line = buf
			}
		}
		if !w.open() || (limit > 0 && w.lines >= limit) {
			seq++
			name := fmt.Sprintf("%04d-%s.%03d.ndjson", base+len(w.files), sf.typ, seq)
			if err := w.next(filepath.Join(dir, name), jobFile{kind: "output", typ: sf.typ}); err != nil {
				return nil, err
			}
		}
		w.writeLine(line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", sf.path, err)
	}
	if err := w.close(); err != nil {
		return nil, err
	}
	return w.files, nil
}

// keep applies _since, _until, the patient list and _typeFilter to one resource. A
// resource without meta.lastUpdated passes _since and _until: its age is unknown.
func keep(v *fastjson.Value, typ string, req request) bool {
	if !req.since.IsZero() || !req.until.IsZero() {
		if lu := v.GetStringBytes("meta", "lastUpdated"); lu != nil {
			if t, err := time.Parse(time.RFC3339Nano, string(lu)); err == nil {
				if !req.since.IsZero() && !t.After(req.since) {
					return false
				}
				if !req.until.IsZero() && t.After(req.until) {
					return false
				}
			}
		}
	}
	if req.patients != nil {
		var pid string
		if typ == "Patient" {
			pid = string(v.GetStringBytes("id"))
		} else {
			for _, f := range []string{"subject", "patient", "beneficiary"} {
				if ref := v.GetStringBytes(f, "reference"); ref != nil {
					pid = strings.TrimPrefix(string(ref), "Patient/")
					break
				}
			}
		}
		if !req.patients[pid] {
			return false
		}
	}
	filters := req.typeFilters[typ]
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if matches(v, f) {
			return true
		}
	}
	return false
}

// matches evaluates a simple search: each parameter is a token (code, system|code) or a
// string compared with the element of the same name, or, with a date prefix (ge, le, gt,
// lt, eq), a date compared with effectiveDateTime / authoredOn / onsetDateTime / date.
func matches(v *fastjson.Value, q url.Values) bool {
	for name, vals := range q {
		for _, want := range vals {
			if !matchParam(v, name, want) {
				return false
			}
		}
	}
	return true
}

func matchParam(v *fastjson.Value, name, want string) bool {
	if name == "date" || strings.HasSuffix(name, "date") {
		return matchDate(v, want)
	}
	el := v.Get(name)
	if el == nil {
		return false
	}
	for _, alt := range strings.Split(want, ",") {
		if matchToken(el, alt) {
			return true
		}
	}
	return false
}

func matchToken(el *fastjson.Value, want string) bool {
	system, code, hasSystem := strings.Cut(want, "|")
	if !hasSystem {
		code, system = want, ""
	}
	switch el.Type() {
	case fastjson.TypeString:
		return string(el.GetStringBytes()) == code
	case fastjson.TypeArray:
		for _, e := range el.GetArray() {
			if matchToken(e, want) {
				return true
			}
		}
	case fastjson.TypeObject:
		for _, c := range el.GetArray("coding") {
			if string(c.GetStringBytes("code")) == code && (!hasSystem || system == "" || string(c.GetStringBytes("system")) == system) {
				return true
			}
		}
	}
	return false
}

func matchDate(v *fastjson.Value, want string) bool {
	prefix := "eq"
	if len(want) > 2 && want[0] >= 'a' && want[0] <= 'z' {
		prefix, want = want[:2], want[2:]
	}
	var got string
	for _, f := range []string{"effectiveDateTime", "authoredOn", "onsetDateTime", "date", "recordedDate"} {
		if s := v.GetStringBytes(f); s != nil {
			got = string(s)
			break
		}
	}
	if got == "" {
		if s := v.GetStringBytes("period", "start"); s != nil {
			got = string(s)
		}
	}
	if got == "" {
		return false
	}
	// ISO dates compare as strings over their common precision.
	n := min(len(got), len(want))
	c := strings.Compare(got[:n], want[:n])
	switch prefix {
	case "ge":
		return c >= 0
	case "gt":
		return c > 0
	case "le":
		return c <= 0
	case "lt":
		return c < 0
	}
	return c == 0
}

func (s *Server) lookupJob(w http.ResponseWriter, r *http.Request) *job {
	s.mu.Lock()
	j := s.jobs[r.PathValue("job")]
	s.mu.Unlock()
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "error", "not-found", "no such export (finished and deleted, or never started)")
	}
	return j
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	j := s.lookupJob(w, r)
	if j == nil {
		return
	}
	s.stats.StatusPolls.Add(1)
	s.mu.Lock()
	s.pollTimes = append(s.pollTimes, time.Now())
	s.mu.Unlock()
	if s.statusFault(w) {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if s.cfg.Faults.FailExport {
		writeOutcome(w, http.StatusInternalServerError, "fatal", "exception", "simulated: the export failed and will not complete")
		return
	}
	j.polls++
	if !j.ready || j.polls <= s.cfg.PollsBeforeReady {
		pct := 100 * j.polls / (s.cfg.PollsBeforeReady + 1)
		w.Header().Set("X-Progress", fmt.Sprintf("%d%% (poll %d)", pct, j.polls))
		w.Header().Set("Retry-After", s.retryAfter(s.cfg.RetryAfter))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if j.err != nil {
		writeOutcome(w, http.StatusInternalServerError, "error", "exception", "export failed: "+j.err.Error())
		return
	}
	page := 1
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			writeOutcome(w, http.StatusBadRequest, "error", "invalid", "bad page")
			return
		}
		page = n
	}
	s.writeManifest(w, j, page)
}

type manifestEntry struct {
	Type            string `json:"type,omitempty"`
	URL             string `json:"url"`
	ContinuesInFile string `json:"continuesInFile,omitempty"`
	Count           *int64 `json:"count,omitempty"`
}

type manifest struct {
	TransactionTime     string          `json:"transactionTime"`
	Request             string          `json:"request"`
	RequiresAccessToken bool            `json:"requiresAccessToken"`
	OutputOrganizedBy   string          `json:"outputOrganizedBy,omitempty"`
	Output              []manifestEntry `json:"output"`
	Error               []manifestEntry `json:"error"`
	Deleted             []manifestEntry `json:"deleted,omitempty"`
	Link                []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link,omitempty"`
}

// writeManifest writes page of the manifest; j.mu is held.
func (s *Server) writeManifest(w http.ResponseWriter, j *job, page int) {
	m := manifest{TransactionTime: j.txTime.Format(time.RFC3339Nano), Request: j.request,
		RequiresAccessToken: s.cfg.Auth, OutputOrganizedBy: j.organizedBy, Output: []manifestEntry{}, Error: []manifestEntry{}}
	var outputs []int
	for i, f := range j.files {
		entry := manifestEntry{Type: f.typ, URL: fmt.Sprintf("%s/files/%s/%d/%d", s.URL, j.id, j.gen, i)}
		switch f.kind {
		case "output":
			outputs = append(outputs, i)
		case "error":
			if page == 1 {
				m.Error = append(m.Error, entry)
			}
		case "deleted":
			if page == 1 {
				m.Deleted = append(m.Deleted, entry)
			}
		}
	}
	size := s.cfg.ManifestPageSize
	if size <= 0 {
		size = max(len(outputs), 1)
	}
	from := (page - 1) * size
	if from > len(outputs) || (from == len(outputs) && page > 1) {
		writeOutcome(w, http.StatusNotFound, "error", "not-found", "no such manifest page")
		return
	}
	to := min(from+size, len(outputs))
	for _, i := range outputs[from:to] {
		f := j.files[i]
		n := f.lines
		if s.cfg.Faults.WrongCount {
			n++
		}
		entry := manifestEntry{Type: f.typ, URL: fmt.Sprintf("%s/files/%s/%d/%d", s.URL, j.id, j.gen, i), Count: &n}
		if f.continues > 0 {
			next := f.continues
			if s.cfg.Faults.ContinuesOffByOne {
				next++
			}
			entry.ContinuesInFile = fmt.Sprintf("%s/files/%s/%d/%d", s.URL, j.id, j.gen, next)
		}
		m.Output = append(m.Output, entry)
	}
	if to < len(outputs) {
		m.Link = append(m.Link, struct {
			Relation string `json:"relation"`
			URL      string `json:"url"`
		}{"next", fmt.Sprintf("%s/status/%s?page=%d", s.URL, j.id, page+1)})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	_ = json.NewEncoder(w).Encode(m)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	j := s.lookupJob(w, r)
	if j == nil {
		return
	}
	s.stats.Deletes.Add(1)
	s.mu.Lock()
	delete(s.jobs, j.id)
	s.mu.Unlock()
	j.mu.Lock()
	j.remove()
	j.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// writeOutcome answers with an OperationOutcome, the FHIR way to explain an error.
func writeOutcome(w http.ResponseWriter, status int, severity, code, msg string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	b, _ := json.Marshal(msg)
	fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":%q,"code":%q,"diagnostics":%s}]}`, severity, code, b)
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func countLines(path string) (lines, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<16)
	inLine := false // counts non-empty lines, as clients skip empty ones
	for {
		n, err := f.Read(buf)
		size += int64(n)
		for _, c := range buf[:n] {
			switch c {
			case '\n':
				if inLine {
					lines++
				}
				inLine = false
			case '\r', ' ', '\t':
			default:
				inLine = true
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("count lines of %s: %w", path, err)
		}
	}
	if inLine {
		lines++
	}
	return lines, size, nil
}
