// Package validate is the first stage after the fetcher: FHIR R4 structural validation
// that needs no terminology server. It reads <prefix>.raw.<Type> and forwards every
// resource that passes, unchanged (same bytes, key and headers), to <prefix>.valid.<Type>;
// every other one is rejected to the dead-letter topic with the element path and the
// rule it broke.
//
// Checks, in order:
//   - generic, for every type: the value is a JSON object; resourceType is a FHIR type
//     name and matches the topic; id is a valid FHIR id; the record key is <Type>/<id>;
//     meta.lastUpdated is an instant; every Reference.reference is well formed (Type/id,
//     Type?query, #id of an existing contained resource, an absolute URL or urn); every
//     Coding carries system and code; *DateTime elements are dateTimes; no JSON nulls or
//     empty strings;
//   - per type, from the table Rules: required elements, primitive formats, choice
//     elements ([x]) and required code bindings.
//
// The resource is parsed once with fastjson and only the elements the rules name are
// visited by path (the generic walk looks at keys, not at every value's meaning).
package validate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/schemas"
)

// Rejection classes: the rule a failure broke. They are the dead letter's error class.
const (
	ClassInvalidJSON     = "invalid-json"     // not JSON, or not an object
	ClassMissingRequired = "missing-required" // a required element is absent
	ClassBadFormat       = "bad-format"       // wrong JSON type or primitive format
	ClassBadCode         = "bad-code"         // a code outside its required value set
	ClassTypeMismatch    = "type-mismatch"    // resourceType differs from the topic's type
	ClassKeyMismatch     = "key-mismatch"     // the record key is not <Type>/<id>
	ClassBadReference    = "bad-reference"    // a malformed or dangling reference
	ClassBadCoding       = "bad-coding"       // a Coding without system or code
)

// Failure is one broken rule, OperationOutcome-like: where and why. Messages never quote
// element values (they may be PHI).
type Failure struct {
	Class   string
	Path    string
	Message string
}

func (f Failure) String() string {
	if f.Path == "" {
		return f.Class + ": " + f.Message
	}
	return f.Class + " at " + f.Path + ": " + f.Message
}

// Options tune a Validator.
type Options struct {
	// Relax lists rule classes (e.g. "bad-coding") that are not enforced, to let data
	// through that a source is known to get wrong; replaying its dead letters then
	// moves them on. Default: every rule enforced.
	Relax []string
	// MaxFailures bounds the failures collected per resource. Default 10.
	MaxFailures int
}

// Validator checks resources. It is safe for concurrent use.
type Validator struct {
	relax map[string]bool
	max   int
	rules map[string][]compiled
	pool  fastjson.ParserPool
	// checkers are reused: a checker's path stack and contained-id map would otherwise be
	// allocated for every resource.
	checkers sync.Pool
}

type compiled struct {
	Element
	segs   []string // parent path segments
	leaf   string   // last segment, without "[x]"
	choice bool
}

// New returns a Validator using the Rules table.
func New(o Options) *Validator {
	v := &Validator{relax: map[string]bool{}, max: o.MaxFailures, rules: map[string][]compiled{}}
	if v.max <= 0 {
		v.max = 10
	}
	for _, r := range o.Relax {
		v.relax[strings.TrimSpace(r)] = true
	}
	for typ, elems := range Rules {
		for _, e := range elems {
			segs := strings.Split(e.Path, ".")
			c := compiled{Element: e, segs: segs[:len(segs)-1], leaf: segs[len(segs)-1]}
			if name, ok := strings.CutSuffix(c.leaf, "[x]"); ok {
				c.leaf, c.choice = name, true
			}
			v.rules[typ] = append(v.rules[typ], c)
		}
	}
	return v
}

// Validate checks one resource. wantType is the resource type of the topic it came
// from ("" to skip that check) and key its record key (nil to skip that check). It
// returns the failures, none when the resource passes.
func (v *Validator) Validate(wantType string, key, value []byte) []Failure {
	c, _ := v.checkers.Get().(*checker)
	if c == nil {
		c = &checker{v: v}
	}
	defer c.release()
	p := v.pool.Get()
	defer v.pool.Put(p)
	root, err := p.ParseBytes(value)
	if err != nil {
		c.fail(ClassInvalidJSON, "", "%s", jsonError(value))
		return c.fails
	}
	// fastjson is lenient about raw control characters in strings and does not check
	// UTF-8; FHIR JSON must be strict JSON in UTF-8, or consumers downstream choke.
	if at := rawControlInString(value); at >= 0 {
		c.fail(ClassInvalidJSON, "", "not valid JSON: raw control character in a string at byte %d", at)
		return c.fails
	}
	if !utf8.Valid(value) {
		c.fail(ClassInvalidJSON, "", "not valid UTF-8")
		return c.fails
	}
	obj, err := root.Object()
	if err != nil {
		c.fail(ClassInvalidJSON, "", "a resource must be a JSON object, got %s", root.Type())
		return c.fails
	}
	rtv := obj.Get("resourceType")
	if rtv == nil {
		c.fail(ClassMissingRequired, "resourceType", "resourceType is required")
		return c.fails
	}
	rtb, err := rtv.StringBytes()
	if err != nil || !schemas.ValidResourceType(rtb) {
		c.fail(ClassBadFormat, "resourceType", "resourceType must be a FHIR resource type name")
		return c.fails
	}
	rt := wantType
	if string(rtb) != wantType {
		rt = string(rtb) // only when it differs from the topic's type: a failure follows
	}
	c.rt = rt
	if wantType != "" && rt != wantType {
		c.fail(ClassTypeMismatch, "resourceType", "resourceType %s does not match the topic's type %s", rt, wantType)
	}
	idv := obj.Get("id")
	var id []byte
	switch {
	case idv == nil:
		c.fail(ClassMissingRequired, rt+".id", "id is required")
	case idv.Type() != fastjson.TypeString || !schemas.ValidResourceID(idv.GetStringBytes()):
		c.fail(ClassBadFormat, rt+".id", "id must be 1-64 of A-Z a-z 0-9 - .")
	default:
		id = idv.GetStringBytes()
	}
	if key != nil && len(id) > 0 && !keyIs(key, rt, id) {
		c.fail(ClassKeyMismatch, rt+".id", "record key is not %s/<id>", rt)
	}
	if meta := obj.Get("meta"); meta != nil {
		if lu := meta.Get("lastUpdated"); lu != nil {
			c.push("meta")
			c.push("lastUpdated")
			c.primitive(lu, Instant, nil)
			c.stack = c.stack[:0]
		}
		if vid := meta.Get("versionId"); vid != nil && (vid.Type() != fastjson.TypeString || !schemas.ValidResourceID(vid.GetStringBytes())) {
			c.fail(ClassBadFormat, rt+".meta.versionId", "versionId must be a FHIR id")
		}
	}
	for _, cv := range obj.Get("contained").GetArray() {
		if cid := cv.GetStringBytes("id"); len(cid) > 0 {
			if c.contained == nil {
				c.contained = map[string]bool{}
			}
			c.contained[string(cid)] = true
		}
	}
	c.generic(root, false)
	rules := v.rules[rt]
	for i := range rules {
		c.rule(root, &rules[i], 0)
	}
	return c.fails
}

// release returns c to its validator's pool. The failures belong to the caller now.
func (c *checker) release() {
	clear(c.contained)
	c.fails, c.rt, c.stack = nil, "", c.stack[:0]
	c.v.checkers.Put(c)
}

// view is the bytes b as a string without a copy, for checks that only read it during
// the call (the checks below run on every element: a copy each would be most of
// their cost). b must not change while the string is in use; the parser's buffers do
// not until the next resource.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// rawControlInString returns the offset of the first unescaped control character
// (below 0x20) inside a JSON string of a parsed document, or -1.
func rawControlInString(b []byte) int {
	if !hasControl(b) {
		return -1 // the common case (compact JSON), found eight bytes at a time
	}
	in, esc := false, false
	for i, c := range b {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case in && c < 0x20:
			return i
		}
	}
	return -1
}

// hasControl reports whether b has a byte below 0x20, testing eight bytes at a time:
// (x - 0x20 in every byte) &^ x has a byte's top bit set exactly where that byte is
// below 0x20 (for bytes below 0x80; larger ones have the top bit of x set).
func hasControl(b []byte) bool {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		if x := binary.LittleEndian.Uint64(b); (x-0x20*ones)&^x&tops != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

func keyIs(key []byte, rt string, id []byte) bool {
	return len(key) == len(rt)+1+len(id) && string(key[:len(rt)]) == rt && key[len(rt)] == '/' && bytes.Equal(key[len(rt)+1:], id)
}

// jsonError describes a JSON syntax error by position only: parser messages quote the
// input, which may be PHI.
func jsonError(value []byte) string {
	if len(bytes.TrimSpace(value)) == 0 {
		return "empty value"
	}
	var x any
	err := json.Unmarshal(value, &x)
	var se *json.SyntaxError
	if ok := asSyntax(err, &se); ok {
		return "not valid JSON: syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	return "not valid JSON"
}

func asSyntax(err error, se **json.SyntaxError) bool {
	s, ok := err.(*json.SyntaxError)
	if ok {
		*se = s
	}
	return ok
}

// checker collects the failures of one resource.
type checker struct {
	v         *Validator
	rt        string
	fails     []Failure
	contained map[string]bool
	stack     []seg // the current element's path below the resource, rendered only on failure
}

// seg is one step of an element path: a key or an array index.
type seg struct {
	key string // a view of the document's bytes (see view) or a rule's name
	idx int    // array index, or -1
}

func (c *checker) push(name string) { c.stack = append(c.stack, seg{key: name, idx: -1}) }
func (c *checker) pushKey(k []byte) { c.stack = append(c.stack, seg{key: view(k), idx: -1}) }
func (c *checker) pushIndex(i int)  { c.stack = append(c.stack, seg{idx: i}) }
func (c *checker) pop()             { c.stack = c.stack[:len(c.stack)-1] }

func (c *checker) full() bool { return len(c.fails) >= c.v.max }

func (c *checker) fail(class, path, format string, args ...any) {
	if c.v.relax[class] || c.full() {
		return
	}
	for _, f := range c.fails {
		if f.Class == class && f.Path == path {
			return // the generic walk and a rule may both see one element
		}
	}
	c.fails = append(c.fails, Failure{Class: class, Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) stackPath() string {
	var b strings.Builder
	b.WriteString(c.rt)
	for _, s := range c.stack {
		if s.idx >= 0 {
			b.WriteString("[" + strconv.Itoa(s.idx) + "]")
			continue
		}
		b.WriteByte('.')
		b.WriteString(s.key)
	}
	return b.String()
}

// failHere fails the element at the top of the path stack.
func (c *checker) failHere(class, format string, args ...any) {
	if c.v.relax[class] || c.full() {
		return
	}
	c.fail(class, c.stackPath(), format, args...)
}

// generic walks the whole resource for the checks that apply to every type.
func (c *checker) generic(v *fastjson.Value, inArray bool) {
	if c.full() {
		return
	}
	switch v.Type() {
	case fastjson.TypeNull:
		// FHIR allows null only inside arrays, to align primitive extensions.
		if !inArray {
			c.failHere(ClassBadFormat, "null is not allowed")
		}
	case fastjson.TypeString:
		if len(v.GetStringBytes()) == 0 {
			c.failHere(ClassBadFormat, "empty strings are not allowed")
		}
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for i, e := range arr {
			c.pushIndex(i)
			c.generic(e, true)
			c.pop()
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		o.Visit(func(k []byte, e *fastjson.Value) {
			c.pushKey(k)
			switch {
			case string(k) == "reference" && e.Type() == fastjson.TypeString:
				c.reference(view(e.GetStringBytes()))
			case string(k) == "coding" && e.Type() == fastjson.TypeArray:
				arr, _ := e.Array()
				for i, cd := range arr {
					c.pushIndex(i)
					c.coding(cd)
					c.pop()
				}
			case bytes.HasSuffix(k, []byte("DateTime")) && e.Type() == fastjson.TypeString:
				if msg := checkDateTime(view(e.GetStringBytes())); msg != "" {
					c.failHere(ClassBadFormat, "%s", msg)
				}
			}
			c.generic(e, false)
			c.pop()
		})
	}
}

func (c *checker) reference(ref string) {
	if msg := checkReference(ref); msg != "" {
		c.failHere(ClassBadReference, "%s", msg)
		return
	}
	if ref[0] == '#' && !c.contained[ref[1:]] {
		c.failHere(ClassBadReference, "no contained resource with this id")
	}
}

func (c *checker) coding(cd *fastjson.Value) {
	if cd.Type() != fastjson.TypeObject {
		c.failHere(ClassBadFormat, "a Coding must be an object")
		return
	}
	sys, code := cd.Get("system"), cd.Get("code")
	c.push("system")
	switch {
	case sys == nil:
		c.failHere(ClassBadCoding, "a Coding must carry a system")
	case sys.Type() != fastjson.TypeString || checkURI(view(sys.GetStringBytes())) != "":
		c.failHere(ClassBadFormat, "system must be a uri")
	}
	c.pop()
	c.push("code")
	switch {
	case code == nil:
		c.failHere(ClassBadCoding, "a Coding must carry a code")
	case code.Type() != fastjson.TypeString || checkCode(view(code.GetStringBytes())) != "":
		c.failHere(ClassBadFormat, "code must be a FHIR code")
	}
	c.pop()
}

// rule applies one table element: walk its parent segments from v (arrays element by
// element), then check the leaf in each parent instance. The path of v is on the stack.
func (c *checker) rule(v *fastjson.Value, r *compiled, depth int) {
	if c.full() {
		return
	}
	if v.Type() == fastjson.TypeArray {
		arr, _ := v.Array()
		for i, e := range arr {
			c.pushIndex(i)
			c.rule(e, r, depth)
			c.pop()
		}
		return
	}
	o, err := v.Object()
	if err != nil {
		c.failHere(ClassBadFormat, "must be an object")
		return
	}
	if depth < len(r.segs) {
		if child := o.Get(r.segs[depth]); child != nil {
			c.push(r.segs[depth])
			c.rule(child, r, depth+1)
			c.pop()
		}
		return
	}
	if r.choice {
		c.choice(o, r)
		return
	}
	leaf := o.Get(r.leaf)
	if leaf == nil && !r.Required {
		return
	}
	c.push(r.leaf)
	if leaf == nil {
		c.failHere(ClassMissingRequired, "%s is required", r.leaf)
	} else {
		c.value(leaf, r.Kind, r.Values)
	}
	c.pop()
}

func (c *checker) choice(o *fastjson.Object, r *compiled) {
	found := 0
	o.Visit(func(k []byte, e *fastjson.Value) {
		suffix, ok := bytes.CutPrefix(k, []byte(r.leaf))
		if !ok || len(suffix) == 0 || suffix[0] < 'A' || suffix[0] > 'Z' {
			return
		}
		found++
		c.pushKey(k)
		if kind, allowed := r.Choices[view(suffix)]; allowed {
			c.value(e, kind, nil)
		} else {
			c.failHere(ClassBadFormat, "%s is not an allowed type of %s[x]", suffix, r.leaf)
		}
		c.pop()
	})
	if (found == 0 && r.Required) || found > 1 {
		c.push(r.leaf + "[x]")
		if found == 0 {
			c.failHere(ClassMissingRequired, "%s[x] is required", r.leaf)
		} else {
			c.failHere(ClassBadFormat, "%s[x] appears with %d types; one is allowed", r.leaf, found)
		}
		c.pop()
	}
}

// value checks an element (each item, if it is a repeating element) against kind. Its
// path is on the stack.
func (c *checker) value(v *fastjson.Value, kind Kind, values []string) {
	if v.Type() == fastjson.TypeArray {
		arr, _ := v.Array()
		for i, e := range arr {
			c.pushIndex(i)
			c.value(e, kind, values)
			c.pop()
		}
		return
	}
	switch kind {
	case Any:
	case String, Boolean, Code, URI, Date, DateTime, Instant, Decimal:
		c.primitive(v, kind, values)
	case Coding:
		if v.Type() != fastjson.TypeObject {
			c.failHere(ClassBadFormat, "want a Coding object")
			return
		}
		if !v.Exists("system") {
			c.push("system")
			c.failHere(ClassBadCoding, "a Coding must carry a system")
			c.pop()
		}
		if !v.Exists("code") {
			c.push("code")
			c.failHere(ClassBadCoding, "a Coding must carry a code")
			c.pop()
		}
	case CodeableConcept, Reference:
		if v.Type() != fastjson.TypeObject {
			c.failHere(ClassBadFormat, "want a %s object", kind)
		}
	case Period:
		if v.Type() != fastjson.TypeObject {
			c.failHere(ClassBadFormat, "want a Period object")
			return
		}
		for _, k := range [...]string{"start", "end"} {
			if e := v.Get(k); e != nil {
				c.push(k)
				c.primitive(e, DateTime, nil)
				c.pop()
			}
		}
	case Quantity:
		if v.Type() != fastjson.TypeObject {
			c.failHere(ClassBadFormat, "want a Quantity object")
			return
		}
		if e := v.Get("value"); e != nil {
			c.push("value")
			c.primitive(e, Decimal, nil)
			c.pop()
		}
		if e := v.Get("system"); e != nil {
			c.push("system")
			c.primitive(e, URI, nil)
			c.pop()
		}
	}
}

func (c *checker) primitive(v *fastjson.Value, kind Kind, values []string) {
	switch kind {
	case Boolean:
		if t := v.Type(); t != fastjson.TypeTrue && t != fastjson.TypeFalse {
			c.failHere(ClassBadFormat, "want a boolean")
		}
		return
	case Decimal:
		if v.Type() != fastjson.TypeNumber {
			c.failHere(ClassBadFormat, "want a decimal (a JSON number)")
		}
		return
	}
	if v.Type() != fastjson.TypeString {
		c.failHere(ClassBadFormat, "want a %s (a JSON string)", kind)
		return
	}
	s := view(v.GetStringBytes())
	var msg string
	switch kind {
	case Code:
		msg = checkCode(s)
		if msg == "" && len(values) > 0 && !contains(values, s) {
			c.failHere(ClassBadCode, "code not in the required value set (%s)", strings.Join(values, ", "))
			return
		}
	case URI:
		msg = checkURI(s)
	case Date:
		msg = checkDate(s)
	case DateTime:
		msg = checkDateTime(s)
	case Instant:
		msg = checkInstant(s)
	}
	if msg != "" {
		c.failHere(ClassBadFormat, "%s", msg)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
