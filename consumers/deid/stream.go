package deid

import (
	"encoding/binary"
	"math/bits"
	"strings"
	"unsafe"

	"github.com/fhirstream/fhirstream/internal/jsontree"
	"github.com/fhirstream/fhirstream/schemas"
)

// The one-pass path.
//
// Most resources arrive as compact JSON of plain ASCII without escapes, and most of
// their bytes come out of de-identification unchanged. For those, streamer reads the
// resource once: it types each member with the path-state transitions (pathstate.go),
// applies the deciding rule's method to each primitive as it reads it (Engine.edit),
// and writes the result by copying the input in as few pieces as possible, with the
// edited values put in and the removed members, emptied objects and arrays and nulls
// left out, as document.write would write them. It declines, and the caller takes the
// tree path (parse, annotate, decideAndApply or the rule-by-rule procedure, write),
// on anything else: whitespace between tokens, escapes, control or non-ASCII bytes,
// companions ("_given"), where() candidates, a rule of the resource type the path
// states do not follow, an object replaced, perturb and generalize (they read the
// document), anything the tree path would reject, and a method failing. The tree path
// gives the same output for whatever the one-pass path writes (TestOnePassMatchesTree
// and TestGoldenOutput hold them to it), and the rejection for what it declines.
//
// Dates to shift come before the shift is known (the subject naming the patient may
// follow them): they are copied as they are, and overwritten at the end with the
// shifted date, which has the same length.
//
// JSON is read here rather than by jsontree (which the tree path uses) because reading,
// typing, deciding and writing in one pass over the bytes is what makes the stage as fast
// as its throughput target needs; the grammar read is strict JSON's (RFC 8259), and a
// narrower one than jsontree's, so that whatever this path accepts, jsontree reads alike.

// maxStreamDepth bounds the nesting the one-pass path follows (jsontree's scanner's).
const maxStreamDepth = 100

type streamer struct {
	e       *Engine
	w       *worker
	src     []byte
	str     string // src, viewed as a string (keys and values are views of it)
	out     []byte
	pending int // src[pending:] is not in out yet
	depth   int
	failed  bool
	patches []datePatch
	// What the date shift and the record's id are made of (see shiftScope).
	rootType typeID
	scope    shiftScope
	seen     [len(shiftElements) + 1]bool // the first id, subject, patient, beneficiary member read
	refSeen  [len(shiftElements)]bool     // the first reference member of each read
	id       []byte
	idOK     bool
	// The edit of the last primitive read, and where its replacement is in out.
	lastEdit         editKind
	lastFrom, lastTo int
}

// datePatch is a date copied as it is that is to be shifted: out[at:at+n].
type datePatch struct {
	at, n int
	date  fhirDate
}

// stream de-identifies resource in one pass, appending the result to dst; ok is false
// when it declines (see above), having changed nothing the tree path reads.
func (e *Engine) stream(w *worker, dst, src []byte) (out []byte, rt string, id []byte, ok bool) {
	if len(src) == 0 || src[0] != '{' {
		return nil, "", nil, false
	}
	s := &w.stream
	*s = streamer{e: e, w: w, src: src, str: unsafe.String(&src[0], len(src)), out: dst, patches: s.patches[:0], id: s.id[:0]}
	// The worker keeps s for its buffers, not this resource's bytes or the caller's.
	defer func() { s.src, s.str, s.out, s.scope = nil, "", nil, shiftScope{} }()
	w.doc.plain = true
	next, _ := s.resource(0, true)
	if s.failed || next != len(src) || !s.idOK {
		return nil, "", nil, false
	}
	s.flush(len(src))
	if len(s.patches) > 0 {
		shift := e.shiftOf(w, s.rootType, &s.scope)
		for _, p := range s.patches {
			b := p.date.appendShifted(w.doc.buf[:0], shift)
			w.doc.buf = b
			if len(b) != p.n {
				return nil, "", nil, false
			}
			copy(s.out[p.at:], b)
		}
	}
	return s.out, e.s.name(s.rootType), s.id, true
}

func (s *streamer) fail() { s.failed = true }

// flush copies the input up to to into out.
func (s *streamer) flush(to int) {
	if to > s.pending {
		s.out = append(s.out, s.src[s.pending:to]...)
		s.pending = to
	}
}

// mark is the state of the output at the start of a member or an element, to return
// to when it is left out.
type mark struct{ out, pending, patches int }

func (s *streamer) mark() mark { return mark{len(s.out), s.pending, len(s.patches)} }

// leaveOut drops the member or element that started at m, whose text (with the comma
// before it, if any) is src[lead:end].
func (s *streamer) leaveOut(m mark, lead, end int) {
	s.out, s.pending, s.patches = s.out[:m.out], m.pending, s.patches[:m.patches]
	s.flush(lead)
	s.pending = end
}

// resource reads the resource object at src[i], whose first member must be its
// resourceType.
func (s *streamer) resource(i int, root bool) (int, bool) {
	const prefix = `{"resourceType":"`
	if !strings.HasPrefix(s.str[i:], prefix) {
		s.fail()
		return i, false
	}
	j := i + len(prefix)
	end, ok := s.scanString(j)
	if !ok {
		s.fail()
		return i, false
	}
	sc := s.e.s
	t, known := sc.byName[s.str[j:end]]
	if !known || !sc.types[t].resource {
		s.fail()
		return i, false
	}
	st := s.w.auto.rootState(t)
	if st.general || len(st.rootWhere) > 0 || st.rootMatch != noRule && !s.objectMethod(st.rootMatch) {
		s.fail()
		return i, false
	}
	if root {
		s.rootType = t
	}
	if s.depth++; s.depth > maxStreamDepth {
		s.fail()
		return i, false
	}
	next, _ := s.members(end+1, st, st.rootMatch, true, false, root, -1)
	s.depth--
	return next, true // resourceType is always written
}

// objectMethod reports whether rule r leaves an object it decides to the values below
// (all methods but substitute, which replaces it: the tree path does that).
func (s *streamer) objectMethod(r int32) bool {
	return s.e.rules[r].kind != kindSubstitute
}

// object reads the object at src[i] of path state st, decided by rule dec; ref >= 0
// says it is the first subject, patient or beneficiary member of the resource (its
// reference is part of the date shift's scope).
func (s *streamer) object(i int, st *pathState, dec int32, ref int) (int, bool) {
	if s.depth++; s.depth > maxStreamDepth {
		s.fail()
		return i, false
	}
	i++
	if i < len(s.src) && s.src[i] == '}' {
		s.depth--
		return i + 1, false
	}
	next, kept := s.members(i, st, dec, false, true, false, ref)
	s.depth--
	return next, kept
}

// members reads an object's members from src[i]: the first member when first, else
// what follows a member (a comma and the next, or the closing brace). wrote says a
// member is written already. It returns the offset after the object and whether
// anything of it is written.
func (s *streamer) members(i int, st *pathState, dec int32, wrote, first, root bool, ref int) (int, bool) {
	src := s.src
	var prev *transition
	for ; ; first = false {
		lead := i // where the member's text starts: its key, or the comma before it
		if !first {
			if i >= len(src) {
				s.fail()
				return i, false
			}
			switch src[i] {
			case '}':
				return i + 1, wrote
			case ',':
				i++
			default:
				s.fail()
				return i, false
			}
		}
		if i >= len(src) || src[i] != '"' {
			s.fail()
			return i, false
		}
		// The member the last object in this state had here is likely this one: its
		// name is checked in place, with no scan and no lookup.
		guess := st.first
		if prev != nil {
			guess = prev.after
		}
		var tr *transition
		kEnd := i + 1
		if guess != nil {
			kEnd += len(guess.key)
			if kEnd+1 < len(src) && src[kEnd] == '"' && src[kEnd+1] == ':' && s.str[i+1:kEnd] == guess.key {
				tr = guess
			}
		}
		if tr == nil {
			var ok bool
			kEnd, ok = s.scanString(i + 1)
			if !ok || kEnd+1 >= len(src) || src[kEnd+1] != ':' {
				s.fail()
				return i, false
			}
			if tr = s.w.auto.step(st, prev, s.str[i+1:kEnd]); tr == nil {
				s.fail() // not an element of the type: the tree path rejects it
				return i, false
			}
		}
		key := tr.key
		prev = tr
		if tr.companion || tr.crosses || len(tr.where) > 0 {
			s.fail()
			return i, false
		}
		m := s.mark()
		if !first && !wrote {
			// Nothing of the object is written yet: if this member is, the comma before
			// it is not.
			if s.pending != lead {
				s.fail()
				return i, false
			}
			s.pending = lead + 1
		}
		capture := -1 // which of the resource's first id, subject, patient or beneficiary this is
		if root {
			capture = s.rootCapture(key)
		}
		v := kEnd + 2
		next, kept := s.member(v, tr, dec, st.typ, capture)
		if s.failed {
			return next, false
		}
		if ref >= 0 && key == "reference" && !s.refSeen[ref] {
			s.refSeen[ref] = true
			if src[v] == '"' {
				s.scope.ref[ref], s.scope.has[ref] = s.str[v+1:next-1], true
			}
		}
		if capture == 0 && !s.captureID(v, next, kept) {
			return next, false
		}
		if kept {
			wrote = true
		} else {
			s.leaveOut(m, lead, next)
		}
		i = next
	}
}

// rootCapture says which of the members the shift's scope and the record's id are made
// of key is, if it is the first of its name: 0 id, 1 + k shiftElements[k]; -1 none.
func (s *streamer) rootCapture(key string) int {
	k := -1
	switch key {
	case "id":
		k = 0
	case shiftElements[0]:
		k = 1
	case shiftElements[1]:
		k = 2
	case shiftElements[2]:
		k = 3
	default:
		return -1
	}
	if s.seen[k] {
		return -1
	}
	s.seen[k] = true
	return k
}

// captureID takes the resource's id, a string at src[v:next]: for the shift's scope
// as it is, and for the record as written (reporting false, having declined, when it
// is not a FHIR id: the tree path rejects the resource).
func (s *streamer) captureID(v, next int, kept bool) bool {
	if s.src[v] != '"' || !kept {
		s.fail()
		return false
	}
	s.scope.id = s.str[v+1 : next-1]
	id := s.src[v+1 : next-1]
	if s.lastEdit == editReplace {
		r := s.out[s.lastFrom:s.lastTo]
		if len(r) < 2 || r[0] != '"' || r[len(r)-1] != '"' {
			s.fail()
			return false
		}
		id = r[1 : len(r)-1]
	}
	s.id = append(s.id[:0], id...)
	if !schemas.ValidResourceID(s.id) {
		s.fail()
		return false
	}
	s.idOK = true
	return true
}

// member reads a member's value (an array of values, or one) at src[v]; parent is the
// type of the object holding it.
func (s *streamer) member(v int, tr *transition, dec int32, parent typeID, capture int) (int, bool) {
	if v >= len(s.src) {
		s.fail()
		return v, false
	}
	ref := -1
	if capture > 0 {
		ref = capture - 1
	}
	if s.src[v] == '[' {
		if capture == 0 {
			s.fail()
			return v, false
		}
		return s.array(v, tr, dec, parent)
	}
	next, kept, _ := s.value(v, tr, dec, parent, false, ref)
	return next, kept
}

// array reads an array of values of member tr at src[i].
func (s *streamer) array(i int, tr *transition, dec int32, parent typeID) (int, bool) {
	if s.depth++; s.depth > maxStreamDepth {
		s.fail()
		return i, false
	}
	src := s.src
	i++
	if i < len(src) && src[i] == ']' {
		s.depth--
		return i + 1, false
	}
	count, values := 0, 0
	for first := true; ; first = false {
		lead := i
		if !first {
			if i >= len(src) {
				s.fail()
				return i, false
			}
			switch src[i] {
			case ']':
				s.depth--
				return i + 1, values > 0
			case ',':
				i++
			default:
				s.fail()
				return i, false
			}
		}
		m := s.mark()
		if !first && count == 0 {
			if s.pending != lead {
				s.fail()
				return i, false
			}
			s.pending = lead + 1
		}
		next, kept, value := s.value(i, tr, dec, parent, true, -1)
		if s.failed {
			return next, false
		}
		if kept {
			count++
			if value {
				values++
			}
		} else {
			s.leaveOut(m, lead, next)
		}
		i = next
	}
}

// value reads one value of member tr at src[i]: it returns the offset after it,
// whether it is written and whether it counts as a value (a null in an array is written
// but does not keep the array).
func (s *streamer) value(i int, tr *transition, dec int32, parent typeID, inArray bool, ref int) (next int, kept, value bool) {
	src := s.src
	if i >= len(src) {
		s.fail()
		return i, false, false
	}
	dec = min(dec, tr.match)
	isPrimitive := tr.primitive
	s.lastEdit = editKeep
	switch c := src[i]; {
	case c == '{':
		if isPrimitive {
			s.fail()
			return i, false, false
		}
		if tr.resource {
			next, kept = s.resource(i, false)
			return next, kept, kept
		}
		if dec != noRule && !s.objectMethod(dec) {
			s.fail()
			return i, false, false
		}
		next, kept = s.object(i, tr.item, dec, ref)
		if kept && dec == noRule && tr.freeText {
			kept = false
		}
		return next, kept, kept
	case !isPrimitive:
		s.fail() // a complex element's value is an object
		return i, false, false
	case c == '"':
		end, ok := s.scanString(i + 1)
		if !ok {
			s.fail()
			return i, false, false
		}
		return s.primitive(i, end+1, jsontree.TypeString, s.str[i+1:end], tr, dec, parent)
	case c == 't' && strings.HasPrefix(s.str[i:], "true"):
		return s.primitive(i, i+4, jsontree.TypeTrue, "", tr, dec, parent)
	case c == 'f' && strings.HasPrefix(s.str[i:], "false"):
		return s.primitive(i, i+5, jsontree.TypeFalse, "", tr, dec, parent)
	case c == 'n' && strings.HasPrefix(s.str[i:], "null"):
		if dec != noRule && s.e.rules[dec].kind == kindSubstitute {
			s.fail() // substitute of a null: the tree path replaces it or rejects
			return i, false, false
		}
		if dec == noRule && tr.freeText {
			return i + 4, false, false
		}
		return i + 4, inArray, false // a null member is left out, a null element kept
	case c == '-' || c >= '0' && c <= '9':
		end, ok := scanJSONNumber(s.str, i)
		if !ok {
			s.fail()
			return i, false, false
		}
		return s.primitive(i, end, jsontree.TypeNumber, s.str[i:end], tr, dec, parent)
	}
	s.fail()
	return i, false, false
}

// primitive applies rule dec to the primitive value src[at:next] (text as the tree
// path reads it).
func (s *streamer) primitive(at, next int, json jsontree.Type, text string, tr *transition, dec int32, parent typeID) (int, bool, bool) {
	if dec == noRule {
		return next, !tr.freeText, !tr.freeText
	}
	r := s.e.rules[dec]
	switch r.kind {
	case kindKeep:
		return next, true, true
	case kindPerturb, kindGeneralize:
		s.fail()
		return next, false, false
	}
	s.flush(at)
	from := len(s.out)
	v := primValue{text: text, json: json, typ: tr.m.typ, name: tr.name, parent: parent}
	ed, out, date, err := s.e.edit(s.w, r, &v, s.out, 0, true)
	if err != nil {
		s.fail()
		return next, false, false
	}
	s.out = out
	s.lastEdit, s.lastFrom, s.lastTo = ed, from, len(out)
	switch ed {
	case editRemove:
		return next, false, false
	case editReplace:
		s.pending = next
	case editShift:
		s.flush(next)
		s.patches = append(s.patches, datePatch{at: from + 1, n: len(text), date: date})
	}
	return next, true, true
}

// scanString reads a string whose opening quote is before src[i] and returns the
// offset of its closing quote; ok is false at an escape, a control or non-ASCII byte, or
// the end of the input. It tests eight bytes at a time, as jsontree does.
func (s *streamer) scanString(i int) (int, bool) {
	src := s.src
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(src); i += 8 {
		x := binary.LittleEndian.Uint64(src[i:])
		quote, backslash := x^('"'*ones), x^('\\'*ones)
		if m := ((x-0x20*ones)&^x | (quote-ones)&^quote | (backslash-ones)&^backslash | x) & tops; m != 0 {
			// A borrow only carries into higher bytes: the lowest flagged byte is the
			// first stop byte.
			k := i + bits.TrailingZeros64(m)>>3
			return k, src[k] == '"'
		}
	}
	for ; i < len(src); i++ {
		switch c := src[i]; {
		case c == '"':
			return i, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return i, false
		}
	}
	return i, false
}

// scanJSONNumber reads a JSON number (RFC 8259 grammar) at s[i], returning the offset
// after it.
func scanJSONNumber(s string, i int) (int, bool) {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
