package deid

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
)

// document is one resource being de-identified: its JSON tree, each value's FHIR type
// and element name, what the rules did to each value, and the writer of the result.
// Values are the tree's nodes; an array is a container, its elements are the values
// FHIRPath sees. A primitive's "_name" companion (its id and extensions) is the same
// FHIR element as the primitive: rules reach it through the primitive.
type document struct {
	s       *schema
	tree    jsontree.Tree
	src     []byte
	typ     []typeID
	nameID  []int32 // the id (schema.nameID) of the FHIRPath element name ("value" for valueQuantity)
	comp    []int32 // a primitive's companion, a companion's primitive; -1 for none
	flags   []nodeFlags
	repl    [][2]int32 // replacement JSON of replaced values: a span of arena, by node
	arena   []byte
	scratch []byte  // survives' output, thrown away
	buf     []byte  // a replacement being made
	res     []int32 // the resource each node belongs to (its root, or a contained one)
	roots   []int32 // resource roots, outermost first
	// today is the date ages are judged against (Engine's clock, read once per resource).
	today fhirDate
	// plain says the document's strings need no escaping when written as they are
	// (jsontree's scanner read it: no escapes, no control characters, all ASCII).
	plain bool
	// firstOfType and nextOfType chain the values of each type in document order, for
	// nodesByType: most rules of a configuration select by type, and one pass over the
	// document serves them all.
	firstOfType []int32
	nextOfType  []int32
	typesSeen   []typeID // the types firstOfType holds chains for
	chains      bool     // firstOfType and nextOfType are built

	// auto makes path states; dec is the rule deciding each value (noRule for none);
	// where lists the values where() rules select if their conditions hold; work the
	// values the apply pass visits (see noteWork), in document order unless
	// workUnsorted; fast says decideAndApply can apply the rules (see pathstate.go).
	auto         *automaton
	dec          []int32
	where        []candidate
	work         []int32
	workUnsorted bool
	fast         bool
}

type nodeFlags uint8

const (
	flagCompanion nodeFlags = 1 << iota // a "_name" value
	flagVisited                         // a rule has processed it
	flagRemoved
	flagReplaced
	flagResource  // the root of a resource (the document's, or a contained one)
	flagStructure // resourceType: never removed
)

func (d *document) reset(s *schema, a *automaton, src []byte) error {
	d.s, d.src, d.auto = s, src, a
	if err := d.tree.Parse(src); err != nil {
		return stage.Reject("invalid-json", "", "%v", err)
	}
	n := len(d.tree.Nodes)
	d.typ = grow(d.typ, n)
	d.nameID = grow(d.nameID, n)
	d.comp = grow(d.comp, n)
	d.flags = grow(d.flags, n)
	d.repl = grow(d.repl, n)
	d.dec = grow(d.dec, n)
	d.arena = d.arena[:0]
	d.res = grow(d.res, n)
	d.roots = d.roots[:0]
	d.where = d.where[:0]
	d.work = d.work[:0]
	d.chains = false
	for i := range n {
		d.typ[i], d.nameID[i], d.comp[i], d.flags[i], d.dec[i] = noType, noName, -1, 0, noRule
	}
	d.fast = true
	d.plain = d.tree.ASCII()
	if d.tree.Nodes[0].Type != jsontree.TypeObject {
		return stage.Reject("invalid-json", "", "a resource is a JSON object")
	}
	return d.annotate(0, s.resourceT, nil, noName, -1, noRule)
}

// buildChains links the values of each type (see firstOfType), for the rule-by-rule
// procedure's nodesByType.
func (d *document) buildChains() {
	if d.chains {
		return
	}
	d.chains = true
	s, n := d.s, len(d.tree.Nodes)
	if len(d.firstOfType) != len(s.types) {
		d.firstOfType = make([]int32, len(s.types))
		for t := range d.firstOfType {
			d.firstOfType[t] = -1
		}
	}
	for _, t := range d.typesSeen {
		d.firstOfType[t] = -1
	}
	d.typesSeen = d.typesSeen[:0]
	d.nextOfType = grow(d.nextOfType, n)
	for j := int32(n - 1); j > 0; j-- {
		if t := d.typ[j]; t != noType && d.item(j) {
			if d.firstOfType[t] < 0 {
				d.typesSeen = append(d.typesSeen, t)
			}
			d.nextOfType[j], d.firstOfType[t] = d.firstOfType[t], j
		}
	}
}

// ofType calls fn with every value of type t below resource root r (not those of
// resources contained in it), in document order.
func (d *document) ofType(r int32, t typeID, fn func(int32)) {
	for j := d.firstOfType[t]; j >= 0; j = d.nextOfType[j] {
		if d.res[j] == r && j != r {
			fn(j)
		}
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, 2*n)
	}
	return s[:n]
}

// annotate types node i, of type t (an object), and everything below it. st is i's
// path state (for a resource, its root state is taken here) and dec the rule deciding
// i (see pathstate.go).
func (d *document) annotate(i int32, t typeID, st *pathState, nameID int32, res int32, dec int32) error {
	nodes := d.tree.Nodes
	if nodes[i].Type != jsontree.TypeObject {
		return stage.Reject("type-mismatch", d.path(i), "%s is a JSON %s, not an object", d.s.name(t), nodes[i].Type)
	}
	if t == d.s.resourceT {
		rt := d.tree.Child(i, "resourceType")
		if rt < 0 || nodes[rt].Type != jsontree.TypeString {
			return stage.Reject("missing-required", d.path(i)+".resourceType", "a resource without resourceType")
		}
		real, ok := d.s.byName[d.tree.Str(rt)]
		if !ok || !d.s.types[real].resource {
			return stage.Reject("type-mismatch", d.path(i)+".resourceType", "resourceType is not a FHIR R4 resource type")
		}
		t, res = real, i
		d.flags[i] |= flagResource
		d.flags[rt] |= flagStructure
		d.roots = append(d.roots, i)
		st = d.auto.rootState(real)
		dec = st.rootMatch
		if st.general {
			d.fast = false
		}
		for _, r := range st.rootWhere {
			d.where = append(d.where, candidate{i, r})
		}
	}
	if d.flags[i]&flagCompanion == 0 {
		d.typ[i] = t // a companion has its primitive's type; its members are an Element's
	}
	d.nameID[i], d.res[i], d.dec[i] = nameID, res, dec
	d.noteWork(i)
	var prev *transition
	for j, end := i+1, nodes[i].End; j < end; j = nodes[j].End {
		key := d.tree.Key(j)
		d.res[j] = res
		if key == "resourceType" && d.flags[i]&flagResource != 0 {
			continue
		}
		tr := d.auto.step(st, prev, key)
		prev = tr
		if tr == nil {
			return d.unknownMember(t, j, key)
		}
		if tr.crosses {
			d.fast = false
		}
		if tr.companion {
			d.pair(i, j, key[1:])
		}
		if err := d.annotateMember(j, tr, res, dec); err != nil {
			return err
		}
	}
	return nil
}

// unknownMember is the rejection of member j, named key, of an object of type t.
func (d *document) unknownMember(t typeID, j int32, key string) error {
	def := &d.s.types[t]
	name := key
	if len(key) > 1 && key[0] == '_' {
		name = key[1:]
		if m, ok := def.members[name]; ok && !d.s.types[m.typ].primitive {
			return stage.Reject("unknown-element", d.path(j), "%s is not a primitive element", name)
		}
	}
	return stage.Reject("unknown-element", d.path(j), "%s has no element %s in FHIR R4", def.name, key)
}

// annotateMember types member j of an object: an array of values, or one value. FHIR
// JSON has an array exactly where the element repeats; either shape is read here (the
// values are typed the same), since refusing the other would dead-letter resources
// validate passes, and nothing about a value's type depends on it. dec is the rule
// deciding the object.
func (d *document) annotateMember(j int32, tr *transition, res int32, dec int32) error {
	nodes := d.tree.Nodes
	m := tr.m
	if nodes[j].Type == jsontree.TypeArray {
		d.typ[j], d.nameID[j], d.res[j], d.dec[j] = m.typ, m.elem.id, res, dec
		for k, end := j+1, nodes[j].End; k < end; k = nodes[k].End {
			d.res[k] = res
			if err := d.annotateValue(k, tr, res, dec); err != nil {
				return err
			}
		}
		return nil
	}
	return d.annotateValue(j, tr, res, dec)
}

func (d *document) annotateValue(k int32, tr *transition, res int32, dec int32) error {
	nodes := d.tree.Nodes
	m := tr.m
	dec = min(dec, tr.match)
	if tr.companion {
		d.flags[k] |= flagCompanion
		d.typ[k], d.nameID[k], d.dec[k] = m.typ, m.elem.id, dec
		if nodes[k].Type == jsontree.TypeNull {
			d.noteWork(k)
			return nil
		}
		st := tr.nonItem
		if d.item(k) {
			st = tr.item
			d.addWhere(k, tr.where)
		}
		return d.annotate(k, d.s.element, st, m.elem.id, res, dec)
	}
	if d.s.types[m.typ].primitive {
		d.typ[k], d.nameID[k], d.dec[k] = m.typ, m.elem.id, dec
		d.noteWork(k)
		switch nodes[k].Type {
		case jsontree.TypeObject, jsontree.TypeArray:
			return stage.Reject("type-mismatch", d.path(k), "%s is a %s: FHIR JSON has a primitive here", m.elem.name, d.s.name(m.typ))
		}
		d.addWhere(k, tr.where)
		return nil
	}
	if tr.resource {
		return d.annotate(k, m.typ, nil, m.elem.id, res, noRule)
	}
	d.addWhere(k, tr.where)
	return d.annotate(k, m.typ, tr.item, m.elem.id, res, dec)
}

// noteWork lists value k in work when the apply pass has something to do with it: a
// method to apply, or free text to remove if no rule reaches it.
func (d *document) noteWork(k int32) {
	if r := d.dec[k]; r != noRule && d.auto.e.rules[r].kind != kindKeep || d.freeText(k) {
		d.work = append(d.work, k)
	}
}

// freeText reports whether value k is of a kind removed unless a rule reaches it (see
// schema.freeText).
func (d *document) freeText(k int32) bool { return d.s.freeText(d.typ[k], d.nameID[k]) }

// candidate is a value a where() rule selects if its condition holds for it.
type candidate struct{ node, rule int32 }

func (d *document) addWhere(k int32, rules []int32) {
	for _, r := range rules {
		d.where = append(d.where, candidate{k, r})
	}
}

// pair links the primitive member key of object i with its companion member c, element
// by element for arrays. A companion paired otherwise (one side an array, the other
// not; a primitive with two companions) takes the rule-by-rule procedure: the rules
// reach such a companion in ways path states do not follow.
func (d *document) pair(i, c int32, key string) {
	p := d.tree.Child(i, key)
	if p < 0 {
		return
	}
	nodes := d.tree.Nodes
	if nodes[p].Type != jsontree.TypeArray || nodes[c].Type != jsontree.TypeArray {
		if nodes[p].Type == jsontree.TypeArray || nodes[c].Type == jsontree.TypeArray || d.comp[p] >= 0 {
			d.fast = false
		}
		d.comp[p], d.comp[c] = c, p
		return
	}
	pe, ce := p+1, c+1
	for pe < nodes[p].End && ce < nodes[c].End {
		if d.comp[pe] >= 0 {
			d.fast = false
		}
		d.comp[pe], d.comp[ce] = ce, pe
		pe, ce = nodes[pe].End, nodes[ce].End
	}
}

// isArray reports whether node i is an array container.
func (d *document) isArray(i int32) bool { return d.tree.Nodes[i].Type == jsontree.TypeArray }

// item reports whether node i is a value FHIRPath sees: not an array container, and
// not a companion whose primitive is there (the primitive stands for both).
func (d *document) item(i int32) bool {
	if d.isArray(i) {
		return false
	}
	if d.flags[i]&flagCompanion != 0 && d.comp[i] >= 0 && d.tree.Nodes[d.comp[i]].Type != jsontree.TypeNull {
		return false
	}
	return true
}

// children calls fn with each child value of item i whose name has id name (anyName
// for all), in order.
func (d *document) children(i int32, name int32, fn func(int32)) {
	nodes := d.tree.Nodes
	if nodes[i].Type != jsontree.TypeObject {
		return
	}
	for j, end := i+1, nodes[i].End; j < end; j = nodes[j].End {
		if d.flags[j]&flagStructure != 0 || name != anyName && d.nameID[j] != name {
			continue
		}
		if d.isArray(j) {
			for k, kend := j+1, nodes[j].End; k < kend; k = nodes[k].End {
				if d.item(k) {
					fn(k)
				}
			}
		} else if d.item(j) {
			fn(j)
		}
	}
}

// descendants calls fn with every value below resource root r in document order,
// except those of resources contained in it (the anonymizer's nodesByType and
// nodesByName leave them to their own resource's rules).
func (d *document) descendants(r int32, fn func(int32)) {
	nodes := d.tree.Nodes
	for j := r + 1; j < nodes[r].End; {
		if d.flags[j]&flagResource != 0 {
			j = nodes[j].End
			continue
		}
		if d.item(j) {
			fn(j)
		}
		j++
	}
}

// primitive reports whether node i holds a primitive's value (a string, number or
// boolean), as opposed to an object or a companion.
func (d *document) primitive(i int32) bool {
	switch d.tree.Nodes[i].Type {
	case jsontree.TypeString, jsontree.TypeNumber, jsontree.TypeTrue, jsontree.TypeFalse:
		return d.flags[i]&flagCompanion == 0
	}
	return false
}

// path names node i for messages: "Patient.name[0].given[1]". It carries element
// names and indexes only, never values.
func (d *document) path(i int32) string {
	var parts []string
	nodes := d.tree.Nodes
	for j := i; j >= 0; j = nodes[j].Parent {
		p := nodes[j].Parent
		switch {
		case p < 0:
			rt := d.tree.Child(j, "resourceType")
			name := "Resource"
			if rt >= 0 {
				if t, ok := d.s.byName[d.tree.Str(rt)]; ok && d.s.types[t].resource {
					name = d.tree.Str(rt)
				}
			}
			parts = append(parts, name)
		case nodes[p].Type == jsontree.TypeArray:
			parts = append(parts, d.tree.Key(p)+"["+strconv.Itoa(d.tree.Index(j))+"]")
			j = p
		default:
			parts = append(parts, d.tree.Key(j))
		}
	}
	for l, r := 0, len(parts)-1; l < r; l, r = l+1, r-1 {
		parts[l], parts[r] = parts[r], parts[l]
	}
	return strings.Join(parts, ".")
}

// remove marks node i removed.
func (d *document) remove(i int32) { d.flags[i] |= flagRemoved }

// replace sets the JSON text node i is written as.
func (d *document) replace(i int32, json string) {
	d.flags[i] |= flagReplaced
	at := len(d.arena)
	d.arena = append(d.arena, json...)
	d.repl[i] = [2]int32{int32(at), int32(len(d.arena))}
}

// replacement returns the JSON text node i is replaced by.
func (d *document) replacement(i int32) []byte { return d.arena[d.repl[i][0]:d.repl[i][1]] }

// replaceString sets node i to the JSON string s.
func (d *document) replaceString(i int32, s string) {
	d.flags[i] |= flagReplaced
	at := len(d.arena)
	d.arena = appendJSONString(d.arena, s)
	d.repl[i] = [2]int32{int32(at), int32(len(d.arena))}
}

// str returns the string at node i.
func (d *document) str(i int32) string { return d.tree.Str(i) }

// write appends the de-identified document to dst: every value kept, replaced values
// as replaced, members in their original order, objects and arrays left empty by
// removals dropped. A primitive array with a companion keeps its positions: a removed
// element is written null in it, as FHIR JSON does for an element with only extensions.
func (d *document) write(dst []byte) []byte {
	dst, _ = d.writeValue(dst, 0)
	return dst
}

func (d *document) writeValue(dst []byte, i int32) ([]byte, bool) {
	n := &d.tree.Nodes[i]
	if d.flags[i]&flagReplaced != 0 {
		return append(dst, d.replacement(i)...), true
	}
	switch n.Type {
	case jsontree.TypeObject:
		start := len(dst)
		dst = append(dst, '{')
		count := 0
		for j := i + 1; j < n.End; j = d.tree.Nodes[j].End {
			if d.flags[j]&flagRemoved != 0 {
				continue
			}
			at := len(dst)
			if count > 0 {
				dst = append(dst, ',')
			}
			if d.plain {
				dst = append(dst, '"')
				dst = append(dst, d.tree.Key(j)...)
				dst = append(dst, '"')
			} else {
				dst = appendJSONString(dst, d.tree.Key(j))
			}
			dst = append(dst, ':')
			var ok bool
			if dst, ok = d.writeValue(dst, j); !ok {
				dst = dst[:at]
				continue
			}
			count++
		}
		if count == 0 {
			return dst[:start], false
		}
		return append(dst, '}'), true
	case jsontree.TypeArray:
		start := len(dst)
		dst = append(dst, '[')
		count, values := 0, 0
		positional := d.positional(i)
		for j := i + 1; j < n.End; j = d.tree.Nodes[j].End {
			if positional && !d.survives(j) && (d.comp[j] < 0 || !d.survives(d.comp[j])) {
				continue // the element and its companion are both gone: drop the position
			}
			at := len(dst)
			if count > 0 {
				dst = append(dst, ',')
			}
			ok := false
			if d.flags[j]&flagRemoved == 0 {
				dst, ok = d.writeValue(dst, j)
			}
			if !ok {
				if !positional {
					dst = dst[:at]
					continue
				}
				dst = append(dst[:at+min(count, 1)], "null"...)
			} else if d.tree.Nodes[j].Type != jsontree.TypeNull {
				values++
			}
			count++
		}
		if values == 0 {
			return dst[:start], false
		}
		return append(dst, ']'), true
	case jsontree.TypeString:
		if d.plain {
			dst = append(dst, '"')
			dst = append(dst, d.tree.Str(i)...)
			return append(dst, '"'), true
		}
		return appendJSONString(dst, d.tree.Str(i)), true
	case jsontree.TypeNumber:
		return append(dst, d.tree.Str(i)...), true
	case jsontree.TypeTrue:
		return append(dst, "true"...), true
	case jsontree.TypeFalse:
		return append(dst, "false"...), true
	}
	// null: kept only as a placeholder in a positional array.
	return append(dst, "null"...), d.tree.Nodes[i].Parent >= 0 && d.isArray(d.tree.Nodes[i].Parent)
}

// survives reports whether value j is written as something other than null.
func (d *document) survives(j int32) bool {
	if d.flags[j]&flagRemoved != 0 || d.tree.Nodes[j].Type == jsontree.TypeNull && d.flags[j]&flagReplaced == 0 {
		return false
	}
	var ok bool
	d.scratch, ok = d.writeValue(d.scratch[:0], j)
	return ok
}

// positional reports whether array i pairs element by element with a companion (or is
// one), so that its positions must be kept.
func (d *document) positional(i int32) bool {
	for j := i + 1; j < d.tree.Nodes[i].End; j = d.tree.Nodes[j].End {
		if d.comp[j] >= 0 {
			return true
		}
	}
	return false
}

// plainByte marks the bytes a JSON string holds as they are: printable ASCII but the
// quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, "\ufffd"...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
