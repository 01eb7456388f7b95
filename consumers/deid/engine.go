package deid

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/arena"
	"github.com/fhirstream/fhirstream/internal/jsontree"
	"github.com/fhirstream/fhirstream/schemas"
)

// ClassRule is the dead-letter class of a resource a rule cannot process (a value of a
// type its method does not take, an expression that fails on the resource's values).
const ClassRule = "deid-rule"

// rule is a compiled fhirPathRules entry.
type rule struct {
	index  int // 0-based position in fhirPathRules, for messages
	path   string
	method string
	kind   methodKind // method's
	expr   *expr
	// resourceType limits the rule to one resource type ("" for every type: paths
	// starting with nodesByType, nodesByName, Resource or DomainResource).
	resourceType string

	span        float64
	proportion  bool
	roundTo     int // -1: the type's default
	replaceWith string
	replaceObj  bool
	cases       []genCase
	otherKeep   bool

	// plan runs the rule without the evaluator when its path is a plain one.
	plan plan
	// fast is the path as path states follow it (see pathstate.go).
	fast fastPlan
}

// plan is a path of the commonest shape, walked without the evaluator and its
// collections: a start (the resource, or nodesByType('T')), element names, and an
// optional ofType(T) at the end. Patient.identifier, Resource.id,
// nodesByType('Reference').reference and Observation.value.ofType(string) are plans.
type plan struct {
	start     uint8 // planNone: use the evaluator
	startType typeID
	steps     []int32 // element name ids
	ofType    typeID
}

const (
	planNone uint8 = iota
	planRoot
	planByType
)

// planOf returns x's plan, or one with start planNone.
func (e *Engine) planOf(x *expr) plan {
	p := plan{ofType: noType}
	if x.op == "call" && x.name == "ofType" {
		p.ofType, x = x.typ, x.args[0]
		if p.ofType == noType {
			return plan{}
		}
	}
	var steps []int32
	for x.op == "ident" && x.args[0] != nil {
		steps = append([]int32{e.s.lookupName(x.name)}, steps...)
		x = x.args[0]
	}
	switch {
	case x.op == "ident" && x.args[0] == nil:
		p.start, p.startType = planRoot, x.typ
		if x.typ == noType || !e.s.types[x.typ].resource {
			p.startType, steps = e.s.resourceT, append([]int32{e.s.lookupName(x.name)}, steps...)
		}
	case x.op == "call" && x.name == "nodesByType" && x.args[0] == nil && x.typ != noType:
		p.start, p.startType = planByType, x.typ
	default:
		return plan{}
	}
	p.steps = steps
	return p
}

// runPlan calls fn with each value r's plan selects in resource root.
func (d *document) runPlan(root int32, p *plan, fn func(int32)) {
	emit := fn
	if p.ofType != noType {
		emit = func(i int32) {
			if d.s.is(d.typ[i], p.ofType) {
				fn(i)
			}
		}
	}
	switch p.start {
	case planRoot:
		if p.startType == d.s.domainResource && d.typ[root] == d.s.bundle {
			return
		}
		d.walk(root, p.steps, emit)
	case planByType:
		d.ofType(root, p.startType, func(i int32) { d.walk(i, p.steps, emit) })
	}
}

// walk calls fn with the values reached from i through the element names steps.
func (d *document) walk(i int32, steps []int32, fn func(int32)) {
	if len(steps) == 0 {
		fn(i)
		return
	}
	d.children(i, steps[0], func(c int32) { d.walk(c, steps[1:], fn) })
}

type genCase struct{ cond, value *expr }

func (r *rule) String() string { return fmt.Sprintf("rule %d (%s %q)", r.index+1, r.method, r.path) }

// Engine applies a configuration to resources. It is safe for concurrent use.
type Engine struct {
	s      *schema
	rules  []*rule
	byType [][]*rule // rules applying to each resource type, by typeID
	// typeRules are byType's rules as path states use them, by typeID.
	typeRules []typeRules
	params    Parameters
	keys      Keys
	scope     string // "resource" or "patient"
	block     cipher.Block
	now       func() time.Time
	// treeOnly makes Apply take the tree path for every resource (tests compare the
	// paths).
	treeOnly bool
	// idle holds workers between calls. Not a sync.Pool: a GC empties that, and a
	// worker's pseudonym cache and buffers are worth keeping (the stage allocates fast
	// enough to collect every few milliseconds).
	mu   sync.Mutex
	idle []*worker
}

// Option tunes an Engine.
type Option func(*Engine)

// WithClock sets the clock that decides which dates indicate an age over 89
// (default time.Now); tests fix it.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// New compiles cfg: every rule's path and expressions are parsed and checked, and a
// configuration this package cannot apply in full is refused, naming the rule.
func New(cfg *Config, keys Keys, opts ...Option) (*Engine, error) {
	s, err := loadR4()
	if err != nil {
		return nil, err
	}
	switch cfg.FHIRVersion {
	case "", "R4":
	default:
		return nil, fmt.Errorf("fhirVersion %q: only R4 is supported", cfg.FHIRVersion)
	}
	switch cfg.ProcessingErrors {
	case "", "raise", "skip":
	default:
		return nil, fmt.Errorf("processingErrors %q: want raise or skip", cfg.ProcessingErrors)
	}
	e := &Engine{s: s, params: cfg.Parameters, keys: keys.withConfigKeys(cfg.Parameters), now: time.Now}
	for _, o := range opts {
		o(e)
	}
	switch strings.ToLower(cfg.Parameters.DateShiftScope) {
	case "", "resource":
		e.scope = "resource"
	case "patient":
		e.scope = "patient"
	case "file", "folder":
		return nil, fmt.Errorf("dateShiftScope %q: a stream has no files or folders; use patient (one shift per patient, intervals kept across resources) or resource", cfg.Parameters.DateShiftScope)
	default:
		return nil, fmt.Errorf("dateShiftScope %q: want resource or patient", cfg.Parameters.DateShiftScope)
	}
	needs := map[string]bool{}
	for i, rc := range cfg.Rules {
		r, err := e.compile(i, rc)
		if err != nil {
			return nil, fmt.Errorf("fhirPathRules[%d] (%q, %s): %w", i, rc.Path, rc.Method, err)
		}
		needs[r.method] = true
		e.rules = append(e.rules, r)
	}
	if (needs[methodCryptoHash] || needs[methodPerturb]) && len(e.keys.CryptoHash) == 0 {
		return nil, errors.New("cryptoHash and perturb need a cryptoHashKey: give it in the key file or " + EnvCryptoHashKey)
	}
	if needs[methodDateShift] && len(e.keys.DateShift) == 0 {
		return nil, errors.New("dateShift needs a dateShiftKey: give it in the key file or " + EnvDateShiftKey)
	}
	if needs[methodEncrypt] {
		if n := len(e.keys.Encrypt); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("encrypt needs an encryptKey of 16, 24 or 32 bytes (128, 192 or 256 bits), got %d bytes", n)
		}
		if e.block, err = aes.NewCipher(e.keys.Encrypt); err != nil {
			return nil, fmt.Errorf("encryptKey: %w", err)
		}
	}
	e.byType = make([][]*rule, len(s.types))
	for t := range s.types {
		if !s.types[t].resource {
			continue
		}
		for _, r := range e.rules {
			if r.resourceType == "" || r.resourceType == s.types[t].name {
				e.byType[t] = append(e.byType[t], r)
			}
		}
	}
	e.compileTypeRules()
	return e, nil
}

func (e *Engine) compile(i int, rc RuleConfig) (*rule, error) {
	r := &rule{index: i, path: rc.Path, method: normalMethod(rc.Method), roundTo: -1}
	x, err := parseFHIRPath(rc.Path)
	if err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	if err := checkPath(x); err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	if err := e.checkNames(x); err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	e.s.resolveTypes(x)
	r.expr = x
	r.resourceType = e.ruleType(x)
	r.plan = e.planOf(x)
	r.fast = e.fastPlanOf(x)
	settings := map[string]bool{
		"span": rc.Span != nil, "rangeType": rc.RangeType != "", "roundTo": rc.RoundTo != nil,
		"replaceWith": rc.ReplaceWith != nil, "cases": rc.Cases != nil, "otherValues": rc.OtherValues != "",
	}
	allowed := map[string][]string{
		methodPerturb: {"span", "rangeType", "roundTo"}, methodSubstitute: {"replaceWith"},
		methodGeneralize: {"cases", "otherValues"},
	}
	switch r.method {
	case methodKeep, methodRedact, methodDateShift, methodCryptoHash, methodEncrypt, methodSubstitute, methodPerturb, methodGeneralize:
	default:
		return nil, fmt.Errorf("method %q is not one of keep, redact, dateShift, cryptoHash, encrypt, substitute, perturb, generalize", rc.Method)
	}
	r.kind = methodKinds[r.method]
	for name, set := range settings {
		if set && !containsString(allowed[r.method], name) {
			return nil, fmt.Errorf("%s is not a setting of %s", name, rc.Method)
		}
	}
	switch r.method {
	case methodPerturb:
		if rc.Span == nil || *rc.Span < 0 {
			return nil, errors.New("perturb needs a non-negative span")
		}
		r.span = *rc.Span
		switch strings.ToLower(rc.RangeType) {
		case "", "fixed":
		case "proportional":
			r.proportion = true
		default:
			return nil, fmt.Errorf("rangeType %q: want fixed or proportional", rc.RangeType)
		}
		if rc.RoundTo != nil {
			if *rc.RoundTo < 0 || *rc.RoundTo > 28 {
				return nil, fmt.Errorf("roundTo %d: want 0 to 28", *rc.RoundTo)
			}
			r.roundTo = *rc.RoundTo
		}
	case methodSubstitute:
		var v any
		if rc.ReplaceWith == nil || json.Unmarshal(rc.ReplaceWith, &v) != nil || v == nil {
			return nil, errors.New("substitute needs replaceWith: a value or a JSON object")
		}
		if _, isArray := v.([]any); isArray {
			return nil, errors.New("replaceWith: an array is not a FHIR value")
		}
		_, r.replaceObj = v.(map[string]any)
		compact, _ := json.Marshal(v)
		if r.replaceObj {
			// Keep the member order as written.
			var b bytes.Buffer
			if err := json.Compact(&b, rc.ReplaceWith); err != nil {
				return nil, fmt.Errorf("replaceWith: %w", err)
			}
			compact = b.Bytes()
		}
		r.replaceWith = string(compact)
	case methodGeneralize:
		if len(rc.Cases) == 0 {
			return nil, errors.New("generalize needs cases")
		}
		switch strings.ToLower(rc.OtherValues) {
		case "", "redact":
		case "keep":
			r.otherKeep = true
		default:
			return nil, fmt.Errorf("otherValues %q: want redact or keep", rc.OtherValues)
		}
		for _, c := range rc.Cases {
			cond, err := parseFHIRPath(c.cond)
			if err != nil {
				return nil, fmt.Errorf("case %q: %w", c.cond, err)
			}
			val, err := parseFHIRPath(c.value)
			if err != nil {
				return nil, fmt.Errorf("case %q value %q: %w", c.cond, c.value, err)
			}
			for _, x := range []*expr{cond, val} {
				e.s.resolveTypes(x)
				if err := e.checkNames(x); err != nil {
					return nil, fmt.Errorf("case %q: %w", c.cond, err)
				}
			}
			r.cases = append(r.cases, genCase{cond, val})
		}
	}
	return r, nil
}

// checkNames refuses what the evaluator would not understand on any record: a type
// name that FHIR R4 does not have, a regular expression that does not compile.
func (e *Engine) checkNames(x *expr) error {
	if x == nil {
		return nil
	}
	switch {
	case x.op == "as" || x.op == "is" || x.op == "call" && x.name == "ofType" || x.op == "call" && x.name == "nodesByType":
		name := x.name
		if x.op == "call" {
			name = x.args[1].name
			if x.name == "nodesByType" {
				name = x.args[1].lit.s
			}
		}
		if _, ok := e.s.byName[name]; !ok && !containsString([]string{"string", "boolean", "decimal", "integer", "date", "dateTime"}, name) {
			return fmt.Errorf("%s is not a FHIR R4 type", name)
		}
	case x.op == "call" && (x.name == "matches" || x.name == "replaceMatches"):
		if p := x.args[1]; p.op == "lit" {
			if _, err := (&evaluator{}).regexp(p.lit.s); err != nil {
				return err
			}
		}
	}
	for _, a := range x.args {
		if x.op == "call" && x.name == "ofType" && a != nil && a.op == "ident" && a.args[0] == nil {
			continue
		}
		if err := e.checkNames(a); err != nil {
			return err
		}
	}
	return nil
}

// ruleType is the resource type a path is limited to: its first name when that is a
// resource type other than Resource and DomainResource (for a union, when every branch
// names the same one).
func (e *Engine) ruleType(x *expr) string {
	switch x.op {
	case "|":
		l, r := e.ruleType(x.args[0]), e.ruleType(x.args[1])
		if l == r {
			return l
		}
		return ""
	case "ident", "as", "call":
		if x.args[0] != nil {
			return e.ruleType(x.args[0])
		}
		if x.op == "ident" {
			if t, ok := e.s.byName[x.name]; ok && e.s.types[t].resource && x.name != "Resource" && x.name != "DomainResource" {
				return x.name
			}
		}
	}
	return ""
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// worker holds one goroutine's reusable state.
type worker struct {
	doc     document
	auto    automaton
	ev      evaluator
	ids     macCache    // under the cryptoHash key
	shifts  macCache    // under the dateShift key
	out     []byte      // applyRecord's output before it is copied to the record
	records arena.Bytes // where applyRecord copies records to (see recordChunk)
	id      []byte      // apply1's id when it is the resource's own
	stream  streamer    // the one-pass path's state (see stream.go)
}

// maxIdleWorkers bounds the workers kept between calls: more than the goroutines that
// call Apply at once are never needed.
const maxIdleWorkers = 64

func (e *Engine) getWorker() *worker {
	e.mu.Lock()
	if n := len(e.idle); n > 0 {
		w := e.idle[n-1]
		e.idle = e.idle[:n-1]
		e.mu.Unlock()
		return w
	}
	e.mu.Unlock()
	w := &worker{ids: newMACCache(e.keys.CryptoHash), shifts: newMACCache(e.keys.DateShift), records: arena.Bytes{Chunk: recordChunk}}
	w.auto.init(e)
	return w
}

func (e *Engine) putWorker(w *worker) {
	e.mu.Lock()
	if len(e.idle) < maxIdleWorkers {
		e.idle = append(e.idle, w)
	}
	e.mu.Unlock()
}

// Result is a de-identified resource.
type Result struct {
	// JSON is the resource; valid until the next Apply with the same buffer.
	JSON []byte
	// Type and ID are the resource's type and de-identified id, for its record key.
	Type, ID string
}

// Apply de-identifies resource, appending the result to dst. A resource a rule cannot
// process, or whose JSON is not a FHIR R4 resource this package can type, is a
// *stage.Rejection naming the rule and the element, never a value.
func (e *Engine) Apply(dst, resource []byte) (Result, error) {
	w := e.getWorker()
	defer e.putWorker(w)
	json, rt, id, err := e.apply1(w, dst, resource)
	if err != nil {
		return Result{}, err
	}
	return Result{JSON: json, Type: rt, ID: string(id)}, nil
}

// applyRecord de-identifies resource into a record's key (<Type>/<de-identified id>)
// and value, made in one allocation at their size: the resource is written after room
// left for the key, the key put before it, and both copied out at once.
func (e *Engine) applyRecord(resource []byte) (typ string, key, value []byte, err error) {
	w := e.getWorker()
	defer e.putWorker(w)
	if cap(w.out) < keyRoom {
		w.out = make([]byte, keyRoom, keyRoom+len(resource)+len(resource)/4)
	}
	json, rt, id, err := e.apply1(w, w.out[:keyRoom], resource)
	if err != nil {
		return "", nil, nil, err
	}
	w.out = json
	k := len(rt) + 1 + len(id)
	if k > keyRoom { // not for a FHIR type name and id
		return "", nil, nil, stage.Reject(ClassRule, rt+".id", "the record key is longer than %d bytes", keyRoom)
	}
	at := keyRoom - k
	copy(json[at+copy(json[at:], rt):], "/")
	copy(json[at+len(rt)+1:], id)
	rec := w.records.Copy(json[at:])
	return rt, rec[:k:k], rec[k:], nil
}

// recordChunk is the size of the chunks records are copied to: with an allocation per
// record, de-identifying a record for the stage took 1,390 ns against 1,200 (medians of
// six runs on two goroutines). A chunk lives as long as any record in it, which the
// producer holds until the batch's transaction ends.
const recordChunk = 256 << 10

// keyRoom is the room applyRecord leaves for a record key: a resource type name (the
// longest R4 name has 35 characters), a slash and an id (at most 64).
const keyRoom = 128

// apply1 de-identifies resource with w, appending the result to dst. id is the
// de-identified id, a view of the resource or of w's buffers.
func (e *Engine) apply1(w *worker, dst, resource []byte) (json []byte, rt string, id []byte, err error) {
	d := &w.doc
	w.auto.trim()
	d.today = dateOf(e.now())
	if !e.treeOnly {
		if json, rt, id, ok := e.stream(w, dst, resource); ok {
			return json, rt, id, nil
		}
	}
	defer d.tree.Release()
	if err := d.reset(e.s, &w.auto, resource); err != nil {
		return nil, "", nil, err
	}
	root := int32(0)
	rt = e.s.name(d.typ[root])
	shift := 0
	if len(e.keys.DateShift) > 0 {
		shift = e.shiftDays(w, d)
	}
	w.ev = evaluator{d: d, regexps: w.ev.regexps}
	if !d.fast || !e.decideAndApply(w, shift) {
		// The rule-by-rule procedure, from a clean slate.
		d.arena = d.arena[:0]
		for i := range d.flags {
			d.flags[i] &= flagCompanion | flagResource | flagStructure
		}
		d.buildChains()
		for _, r := range d.roots {
			if err := e.applyRules(w, r, shift); err != nil {
				return nil, "", nil, err
			}
		}
		e.removeFreeText(d)
	}
	if i := d.tree.Child(root, "id"); i >= 0 && d.flags[i]&flagRemoved == 0 {
		if d.flags[i]&flagReplaced != 0 {
			// A FHIR id needs no escapes: a quoted string with a backslash is not one.
			s := d.replacement(i)
			if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' || bytes.IndexByte(s, '\\') >= 0 {
				return nil, "", nil, stage.Reject(ClassRule, rt+".id", "the de-identified id is not a FHIR id")
			}
			id = s[1 : len(s)-1]
		} else {
			w.id = append(w.id[:0], d.str(i)...)
			id = w.id
		}
	}
	if !schemas.ValidResourceID(id) {
		return nil, "", nil, stage.Reject(ClassRule, rt+".id", "no FHIR id after de-identification: the configuration must keep or cryptoHash Resource.id (the record key is <Type>/<id>)")
	}
	return d.write(dst), rt, id, nil
}

// PseudonymID is the id a resource with id gets: what Resource.id's rule makes of it
// (cryptoHash in the presets), for keys of records without a resource (tombstones).
func (e *Engine) PseudonymID(resourceType, id string) (string, error) {
	if !schemas.ValidResourceType(resourceType) || !schemas.ValidResourceID(id) {
		return "", stage.Reject("type-mismatch", "", "not a resource key")
	}
	doc := `{"resourceType":"` + resourceType + `","id":"` + id + `"}`
	res, err := e.Apply(nil, []byte(doc))
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// decideAndApply settles the where() rules' candidates, then applies to each value the
// method of the rule deciding it and removes unreached free text, in one pass in
// document order. It reports false, having changed only what the rule-by-rule procedure
// clears, when a method or condition fails or a method removes or replaces an object
// (the procedure then gives the error or the result).
func (e *Engine) decideAndApply(w *worker, shift int) bool {
	d := &w.doc
	nodes := d.tree.Nodes
	d.workUnsorted = false
	for _, c := range d.where {
		w.ev.root = d.res[c.node]
		one := []item{{node: c.node}}
		t, err := w.ev.truth(e.rules[c.rule].fast.where, one, one)
		if err != nil {
			return false
		}
		if t == 1 {
			d.decideBelow(c.node, c.rule)
			if p := d.comp[c.node]; p >= 0 && d.flags[c.node]&flagCompanion == 0 {
				d.decideBelow(p, c.rule)
			}
		}
	}
	if d.workUnsorted {
		slices.Sort(d.work)
		d.work = slices.Compact(d.work)
	}
	skip := int32(0) // free text: values below a removed or replaced one are left alone
	for _, j := range d.work {
		if r := d.dec[j]; r != noRule && nodes[j].Type != jsontree.TypeArray {
			if rule := e.rules[r]; rule.kind != kindKeep {
				if err := e.apply(w, rule, j, shift); err != nil {
					return false
				}
				if d.flags[j]&(flagReplaced|flagRemoved) != 0 && !d.primitive(j) {
					return false
				}
			}
		}
		if j == 0 || j < skip {
			continue
		}
		if d.flags[j]&(flagRemoved|flagReplaced) != 0 {
			skip = nodes[j].End
			continue
		}
		if d.dec[j] == noRule && nodes[j].Type != jsontree.TypeArray && d.freeText(j) {
			d.remove(j)
			if c := d.comp[j]; c >= 0 {
				d.remove(c)
			}
			skip = nodes[j].End
		}
	}
	return true
}

// decideBelow makes rule r decide value i and what is below it, where no earlier rule
// does (not the resources contained in it: rules reach them from their own root).
func (d *document) decideBelow(i, r int32) {
	nodes := d.tree.Nodes
	for j := i; j < nodes[i].End; {
		if j != i && d.flags[j]&flagResource != 0 {
			j = nodes[j].End
			continue
		}
		if r < d.dec[j] {
			d.dec[j] = r
			d.work = append(d.work, j)
			d.workUnsorted = true
		}
		j++
	}
}

// applyRules runs the rules of root's resource type over it, in configuration order.
func (e *Engine) applyRules(w *worker, root int32, shift int) error {
	d := &w.doc
	w.ev.root = root
	focus := []item{{node: root}}
	for _, r := range e.byType[d.typ[root]] {
		if r.plan.start != planNone {
			var err error
			d.runPlan(root, &r.plan, func(i int32) {
				if err == nil {
					err = e.process(w, r, i, shift)
				}
			})
			if err != nil {
				return err
			}
			continue
		}
		matches, err := w.ev.eval(r.expr, focus, nil)
		if err != nil {
			return stage.Reject(ClassRule, d.path(root), "%s: %v", r, err)
		}
		for _, m := range matches {
			if m.node < 0 {
				return stage.Reject(ClassRule, d.path(root), "%s selects a computed value, not an element", r)
			}
			if err := e.process(w, r, m.node, shift); err != nil {
				return err
			}
		}
	}
	return nil
}

// process applies r's method to value i and everything below it that no earlier rule
// processed (the anonymizer's rule: the first rule to reach a value decides it).
func (e *Engine) process(w *worker, r *rule, i int32, shift int) error {
	d := &w.doc
	if d.flags[i]&flagVisited != 0 || d.flags[i]&flagStructure != 0 {
		return nil
	}
	d.flags[i] |= flagVisited
	if err := e.apply(w, r, i, shift); err != nil {
		return err
	}
	nodes := d.tree.Nodes
	if d.flags[i]&(flagReplaced|flagRemoved) != 0 && !d.primitive(i) {
		for j := i + 1; j < nodes[i].End; j++ {
			d.flags[j] |= flagVisited
		}
		return nil
	}
	for j, end := i+1, nodes[i].End; j < end; j = nodes[j].End {
		if d.flags[j]&flagResource != 0 {
			continue
		}
		if d.isArray(j) {
			d.flags[j] |= flagVisited
			for k, kend := j+1, nodes[j].End; k < kend; k = nodes[k].End {
				if err := e.process(w, r, k, shift); err != nil {
					return err
				}
			}
			continue
		}
		if err := e.process(w, r, j, shift); err != nil {
			return err
		}
	}
	if c := d.comp[i]; c >= 0 && d.flags[i]&flagCompanion == 0 {
		return e.process(w, r, c, shift)
	}
	return nil
}

// removeFreeText removes what no rule processed and may hold free text: narratives,
// annotations (notes), attachments and comment elements.
func (e *Engine) removeFreeText(d *document) {
	nodes := d.tree.Nodes
	for j := int32(1); j < int32(len(nodes)); {
		if d.flags[j]&(flagRemoved|flagReplaced) != 0 {
			j = nodes[j].End
			continue
		}
		if d.flags[j]&flagVisited == 0 && !d.isArray(j) && d.freeText(j) {
			d.remove(j)
			if c := d.comp[j]; c >= 0 {
				d.remove(c)
			}
			j = nodes[j].End
			continue
		}
		j++
	}
}
