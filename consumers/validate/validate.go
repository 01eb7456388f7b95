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
// The resource is read once into a flat tree (internal/jsontree): by a strict scanner in
// the common case, by fastjson otherwise. The generic checks are one loop over that tree
// (they look at keys, not at every value's meaning), the rules visit only the elements
// they name, and an element's path is rendered only when it fails.
package validate

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/fhirstream/fhirstream/internal/jsontree"

	"github.com/fhirstream/fhirstream/schemas"
)

// Rejection classes: the rule a failure broke. They are the dead letter's error class
// (the contract's constants in schemas, named here for the rules' readers).
const (
	ClassInvalidJSON     = schemas.ClassInvalidJSON     // not JSON, or not an object
	ClassMissingRequired = schemas.ClassMissingRequired // a required element is absent
	ClassBadFormat       = schemas.ClassBadFormat       // wrong JSON type or primitive format
	ClassBadCode         = schemas.ClassBadCode         // a code outside its required value set
	ClassTypeMismatch    = schemas.ClassTypeMismatch    // resourceType differs from the topic's type
	ClassKeyMismatch     = schemas.ClassKeyMismatch     // the record key is not <Type>/<id>
	ClassBadReference    = schemas.ClassBadReference    // a malformed or dangling reference
	ClassBadCoding       = schemas.ClassBadCoding       // a Coding without system or code
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
	// checkers are reused: a checker's tree and lists would otherwise be allocated for
	// every resource.
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
	if err := c.t.Parse(value); err != nil {
		c.fail(ClassInvalidJSON, "", "%s", err) // by position only (jsontree.SyntaxError)
		return c.fails
	}
	if !c.t.ASCII() && !utf8.Valid(value) {
		c.fail(ClassInvalidJSON, "", "not valid UTF-8")
		return c.fails
	}
	t := &c.t
	if t.Nodes[0].Type != jsontree.TypeObject {
		c.fail(ClassInvalidJSON, "", "a resource must be a JSON object, got %s", t.Nodes[0].Type)
		return c.fails
	}
	rtv := t.Child(0, "resourceType")
	if rtv < 0 {
		c.fail(ClassMissingRequired, "resourceType", "resourceType is required")
		return c.fails
	}
	if t.Nodes[rtv].Type != jsontree.TypeString || !schemas.ValidResourceType(t.Str(rtv)) {
		c.fail(ClassBadFormat, "resourceType", "resourceType must be a FHIR resource type name")
		return c.fails
	}
	rt := wantType
	if rtb := t.Str(rtv); rtb != wantType {
		rt = strings.Clone(rtb) // only when it differs from the topic's type: a failure follows
	}
	c.rt = rt
	if wantType != "" && rt != wantType {
		c.fail(ClassTypeMismatch, "resourceType", "resourceType %s does not match the topic's type %s", rt, wantType)
	}
	idv := t.Child(0, "id")
	var id string
	switch {
	case idv < 0:
		c.fail(ClassMissingRequired, rt+".id", "id is required")
	case t.Nodes[idv].Type != jsontree.TypeString || !schemas.ValidResourceID(t.Str(idv)):
		c.fail(ClassBadFormat, rt+".id", "id must be 1-64 of A-Z a-z 0-9 - .")
	default:
		id = t.Str(idv)
	}
	if key != nil && len(id) > 0 && !schemas.IsKey(key, rt, id) {
		c.fail(ClassKeyMismatch, rt+".id", "record key is not %s/<id>", rt)
	}
	if meta := t.Child(0, "meta"); meta >= 0 {
		if lu := t.Child(meta, "lastUpdated"); lu >= 0 {
			c.primitive(lu, Instant, nil)
		}
		if vid := t.Child(meta, "versionId"); vid >= 0 && (t.Nodes[vid].Type != jsontree.TypeString || !schemas.ValidResourceID(t.Str(vid))) {
			c.fail(ClassBadFormat, rt+".meta.versionId", "versionId must be a FHIR id")
		}
	}
	if cont := t.Child(0, "contained"); cont >= 0 && t.Nodes[cont].Type == jsontree.TypeArray {
		for j := cont + 1; j < t.Nodes[cont].End; j = t.Nodes[j].End {
			if cid := t.Child(j, "id"); cid >= 0 && t.Nodes[cid].Type == jsontree.TypeString && t.Str(cid) != "" {
				c.contained = append(c.contained, t.Str(cid))
			}
		}
	}
	c.generic()
	rules := v.rules[rt]
	for i := range rules {
		c.rule(0, &rules[i], 0)
	}
	return c.fails
}

// release returns c to its validator's pool. The failures belong to the caller now;
// the views of this resource's bytes are dropped.
func (c *checker) release() {
	clear(c.contained)
	c.t.Release()
	c.fails, c.rt, c.contained = nil, "", c.contained[:0]
	c.v.checkers.Put(c)
}

// checker collects the failures of one resource.
type checker struct {
	v         *Validator
	t         jsontree.Tree
	rt        string
	fails     []Failure
	contained []string // ids of the contained resources (few: a list beats a map)
	path      []int32  // scratch for rendering a path
}

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

// nodePath renders the path of node i, then suffix (".name" of an element that is not
// in the tree, such as a missing one): Observation.code.coding[0].system.
func (c *checker) nodePath(i int32, suffix string) string {
	c.path = c.path[:0]
	for ; i > 0; i = c.t.Nodes[i].Parent {
		c.path = append(c.path, i)
	}
	var b strings.Builder
	b.WriteString(c.rt)
	for k := len(c.path) - 1; k >= 0; k-- {
		n := c.path[k]
		if c.t.Nodes[c.t.Nodes[n].Parent].Type == jsontree.TypeArray {
			b.WriteString("[" + strconv.Itoa(c.t.Index(n)) + "]")
			continue
		}
		b.WriteByte('.')
		b.WriteString(c.t.Key(n))
	}
	b.WriteString(suffix)
	return b.String()
}

// failAt fails node i (or its missing element suffix, see nodePath).
func (c *checker) failAt(i int32, suffix, class, format string, args ...any) {
	if c.v.relax[class] || c.full() {
		return
	}
	c.fail(class, c.nodePath(i, suffix), format, args...)
}

// generic runs the checks that apply to every type, on every element in document order.
func (c *checker) generic() {
	t := &c.t
	nodes := t.Nodes
	for i := int32(1); i < int32(len(nodes)); i++ {
		if c.full() {
			return
		}
		n := &nodes[i]
		// FHIR allows null only inside arrays, to align primitive extensions.
		inArray := nodes[n.Parent].Type == jsontree.TypeArray
		if !inArray {
			switch {
			case n.Type == jsontree.TypeString && t.Key(i) == "reference":
				c.reference(i, t.Str(i))
			case n.Type == jsontree.TypeArray && t.Key(i) == "coding":
				for j := i + 1; j < n.End; j = nodes[j].End {
					c.coding(j)
				}
			case n.Type == jsontree.TypeString && strings.HasSuffix(t.Key(i), "DateTime"):
				if msg := checkDateTime(t.Str(i)); msg != "" {
					c.failAt(i, "", ClassBadFormat, "%s", msg)
				}
			}
		}
		switch {
		case n.Type == jsontree.TypeNull && !inArray:
			c.failAt(i, "", ClassBadFormat, "null is not allowed")
		case n.Type == jsontree.TypeString && n.StrLen == 0:
			c.failAt(i, "", ClassBadFormat, "empty strings are not allowed")
		}
	}
}

func (c *checker) reference(i int32, ref string) {
	if msg := checkReference(ref); msg != "" {
		c.failAt(i, "", ClassBadReference, "%s", msg)
		return
	}
	if ref[0] == '#' && !contains(c.contained, ref[1:]) {
		c.failAt(i, "", ClassBadReference, "no contained resource with this id")
	}
}

func (c *checker) coding(cd int32) {
	t := &c.t
	if t.Nodes[cd].Type != jsontree.TypeObject {
		c.failAt(cd, "", ClassBadFormat, "a Coding must be an object")
		return
	}
	sys, code := t.Child(cd, "system"), t.Child(cd, "code")
	switch {
	case sys < 0:
		c.failAt(cd, ".system", ClassBadCoding, "a Coding must carry a system")
	case t.Nodes[sys].Type != jsontree.TypeString || checkURI(t.Str(sys)) != "":
		c.failAt(sys, "", ClassBadFormat, "system must be a uri")
	}
	switch {
	case code < 0:
		c.failAt(cd, ".code", ClassBadCoding, "a Coding must carry a code")
	case t.Nodes[code].Type != jsontree.TypeString || checkCode(t.Str(code)) != "":
		c.failAt(code, "", ClassBadFormat, "code must be a FHIR code")
	}
}

// rule applies one table element: walk its parent segments from node i (arrays element
// by element), then check the leaf in each parent instance.
func (c *checker) rule(i int32, r *compiled, depth int) {
	if c.full() {
		return
	}
	t := &c.t
	switch t.Nodes[i].Type {
	case jsontree.TypeArray:
		for j := i + 1; j < t.Nodes[i].End; j = t.Nodes[j].End {
			c.rule(j, r, depth)
		}
		return
	case jsontree.TypeObject:
	default:
		c.failAt(i, "", ClassBadFormat, "must be an object")
		return
	}
	if depth < len(r.segs) {
		if child := t.Child(i, r.segs[depth]); child >= 0 {
			c.rule(child, r, depth+1)
		}
		return
	}
	if r.choice {
		c.choice(i, r)
		return
	}
	leaf := t.Child(i, r.leaf)
	switch {
	case leaf >= 0:
		c.value(leaf, r.Kind, r.Values)
	case r.Required:
		c.failAt(i, "."+r.leaf, ClassMissingRequired, "%s is required", r.leaf)
	}
}

func (c *checker) choice(o int32, r *compiled) {
	t := &c.t
	found := 0
	for j := o + 1; j < t.Nodes[o].End; j = t.Nodes[j].End {
		suffix, ok := strings.CutPrefix(t.Key(j), r.leaf)
		if !ok || len(suffix) == 0 || suffix[0] < 'A' || suffix[0] > 'Z' {
			continue
		}
		found++
		if kind, allowed := r.Choices[suffix]; allowed {
			c.value(j, kind, nil)
		} else {
			c.failAt(j, "", ClassBadFormat, "%s is not an allowed type of %s[x]", suffix, r.leaf)
		}
	}
	if found == 0 && r.Required {
		c.failAt(o, "."+r.leaf+"[x]", ClassMissingRequired, "%s[x] is required", r.leaf)
	} else if found > 1 {
		c.failAt(o, "."+r.leaf+"[x]", ClassBadFormat, "%s[x] appears with %d types; one is allowed", r.leaf, found)
	}
}

// value checks element i (each item, if it is a repeating element) against kind.
func (c *checker) value(i int32, kind Kind, values []string) {
	t := &c.t
	typ := t.Nodes[i].Type
	if typ == jsontree.TypeArray {
		for j := i + 1; j < t.Nodes[i].End; j = t.Nodes[j].End {
			c.value(j, kind, values)
		}
		return
	}
	switch kind {
	case Any:
	case String, Boolean, Code, URI, Date, DateTime, Instant, Decimal:
		c.primitive(i, kind, values)
	case Coding:
		if typ != jsontree.TypeObject {
			c.failAt(i, "", ClassBadFormat, "want a Coding object")
			return
		}
		if t.Child(i, "system") < 0 {
			c.failAt(i, ".system", ClassBadCoding, "a Coding must carry a system")
		}
		if t.Child(i, "code") < 0 {
			c.failAt(i, ".code", ClassBadCoding, "a Coding must carry a code")
		}
	case CodeableConcept, Reference:
		if typ != jsontree.TypeObject {
			c.failAt(i, "", ClassBadFormat, "want a %s object", kind)
		}
	case Period:
		if typ != jsontree.TypeObject {
			c.failAt(i, "", ClassBadFormat, "want a Period object")
			return
		}
		for _, k := range [...]string{"start", "end"} {
			if e := t.Child(i, k); e >= 0 {
				c.primitive(e, DateTime, nil)
			}
		}
	case Quantity:
		if typ != jsontree.TypeObject {
			c.failAt(i, "", ClassBadFormat, "want a Quantity object")
			return
		}
		if e := t.Child(i, "value"); e >= 0 {
			c.primitive(e, Decimal, nil)
		}
		if e := t.Child(i, "system"); e >= 0 {
			c.primitive(e, URI, nil)
		}
	}
}

func (c *checker) primitive(i int32, kind Kind, values []string) {
	typ := c.t.Nodes[i].Type
	switch kind {
	case Boolean:
		if typ != jsontree.TypeTrue && typ != jsontree.TypeFalse {
			c.failAt(i, "", ClassBadFormat, "want a boolean")
		}
		return
	case Decimal:
		if typ != jsontree.TypeNumber {
			c.failAt(i, "", ClassBadFormat, "want a decimal (a JSON number)")
		}
		return
	}
	if typ != jsontree.TypeString {
		c.failAt(i, "", ClassBadFormat, "want a %s (a JSON string)", kind)
		return
	}
	s := c.t.Str(i)
	var msg string
	switch kind {
	case Code:
		msg = checkCode(s)
		if msg == "" && len(values) > 0 && !contains(values, s) {
			c.failAt(i, "", ClassBadCode, "code not in the required value set (%s)", strings.Join(values, ", "))
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
		c.failAt(i, "", ClassBadFormat, "%s", msg)
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
