// Package jsontree reads a JSON document into a flat tree: its values in document
// (pre-)order in one slice, each knowing its parent and where its descendants end. The
// stages read a few fields of every FHIR resource, hundreds of thousands a second; a
// flat tree is built with one store per value and no pointers, is reset by truncating a
// slice, and leaves the strings where they are (views of the document, not copies).
//
// Parse takes strict JSON only (RFC 8259: no raw control characters or invalid escapes
// in strings). Its scanner reads the common case itself (no escapes, moderate nesting)
// and gives up on anything else; the document is then parsed by fastjson, whose parse
// is checked for what fastjson lets through and copied, unescaped, into the same tree.
// Whatever the scanner accepts fastjson reads as the same tree
// (FuzzScanMatchesFastjson), so the two paths agree.
//
// Written here rather than taken from a library: fastjson (which this wraps for the
// unusual documents) is about a third slower on FHIR resources once its lookups and
// reset are counted, and is lenient where FHIR JSON must be strict; encoding/json
// decodes whole documents at a tenth of the speed.
package jsontree

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"

	"github.com/valyala/fastjson"
)

// Type is a JSON value's type. Its String is the JSON name ("object", "number", ...).
type Type uint8

// The JSON types.
const (
	TypeNull Type = iota
	TypeObject
	TypeArray
	TypeString
	TypeNumber
	TypeTrue
	TypeFalse
)

var typeNames = [...]string{"null", "object", "array", "string", "number", "true", "false"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// typeOf maps fastjson's types to the tree's.
func typeOf(v *fastjson.Value) Type {
	switch v.Type() {
	case fastjson.TypeObject:
		return TypeObject
	case fastjson.TypeArray:
		return TypeArray
	case fastjson.TypeString:
		return TypeString
	case fastjson.TypeNumber:
		return TypeNumber
	case fastjson.TypeTrue:
		return TypeTrue
	case fastjson.TypeFalse:
		return TypeFalse
	}
	return TypeNull
}

// Node is one JSON value. It holds no pointers (its strings are spans of the tree's
// text), which makes building the tree a plain store per value. Spans are int32: a
// Kafka record is smaller than 2 GiB.
type Node struct {
	KeyAt, KeyLen int32 // member name, when the parent is an object
	StrAt, StrLen int32 // the text of a string (unescaped) or of a number
	End           int32 // index just past the last descendant
	Parent        int32 // index of the parent, -1 for the root
	Type          Type
}

// Tree is a parsed document; Nodes[0] is the root. Its zero value is ready to use, and
// a Tree is reused from one document to the next (it is not safe for concurrent use).
type Tree struct {
	Nodes []Node
	// src holds the text of keys and strings: a view (see view) of the document after
	// scan, of unescaped after load; valid until the next Parse, and while the
	// document's bytes are unchanged.
	src string
	// unescaped holds the keys and strings of a fastjson parse, unescaped (load).
	unescaped []byte
	// high ORs together the bytes of every string scan read, in 8-byte words: its top
	// bits are clear when the document is ASCII (scan accepts no byte above 0x7f
	// outside strings).
	high    uint64
	scanned bool
	// badNumber says that a fastjson parse held a number JSON does not allow (load).
	badNumber bool
	parser    fastjson.Parser
	values    []Value // Value handles, filled as they are asked for (see value)
}

// SyntaxError is a document Parse refuses: what is wrong and where, never a quote of
// the document. Parsers' own messages quote the input, which may be PHI, and these
// messages reach dead-letter headers, which are shown without the payload.
type SyntaxError struct {
	Offset int // -1 when unknown
	Msg    string
}

// SyntaxErrorOf says where doc, which a parser has refused, stops being JSON: the
// position encoding/json gives, for a path that fastjson refused.
func SyntaxErrorOf(doc []byte) *SyntaxError {
	if len(bytes.TrimSpace(doc)) == 0 {
		return &SyntaxError{Offset: -1, Msg: "empty value"}
	}
	var x any
	err := json.Unmarshal(doc, &x)
	if se, ok := err.(*json.SyntaxError); ok {
		return &SyntaxError{Offset: int(se.Offset), Msg: "syntax error"}
	}
	if err == nil {
		// encoding/json nests deeper than fastjson does.
		return &SyntaxError{Offset: -1, Msg: fmt.Sprintf("nested deeper than %d levels", fastjson.MaxDepth)}
	}
	return &SyntaxError{Offset: -1, Msg: "syntax error"}
}

func (e *SyntaxError) Error() string {
	if e.Offset < 0 {
		return "not valid JSON: " + e.Msg
	}
	return fmt.Sprintf("not valid JSON: %s at byte %d", e.Msg, e.Offset)
}

// Parse reads doc into t, replacing what it held. The tree's strings are views of doc
// (or of t's own copy, for documents with escapes): doc must not change while they are
// in use. Parse does not check UTF-8 (see ASCII).
func (t *Tree) Parse(doc []byte) error {
	t.scanned = t.scan(doc)
	if !t.scanned {
		root, err := t.parser.ParseBytes(doc)
		if err != nil {
			t.Release()
			return SyntaxErrorOf(doc)
		}
		// fastjson is lenient about raw control characters and escapes in strings; FHIR
		// JSON must be strict JSON, or consumers downstream choke.
		if at, fault := stringFault(doc); at >= 0 {
			t.Release()
			return &SyntaxError{Offset: at, Msg: fault + " in a string"}
		}
		if err := t.load(root); err != nil {
			t.Release()
			return err
		}
	}
	if n := len(t.Nodes); cap(t.values) < n {
		t.values = make([]Value, n, 2*n)
	} else {
		t.values = t.values[:n]
	}
	return nil
}

// Release drops the tree's views of the last document, so that a tree kept for reuse
// does not keep that document's bytes alive; the tree is empty until the next Parse.
func (t *Tree) Release() {
	t.Nodes, t.values, t.src = t.Nodes[:0], t.values[:0], ""
}

// ASCII reports whether the document Parse read last is known to be all ASCII, and so
// valid UTF-8 without a pass over it; false means it may or may not be.
func (t *Tree) ASCII() bool { return t.scanned && t.high&0x8080808080808080 == 0 }

// Key returns the member name of node i ("" for an array element or the root).
func (t *Tree) Key(i int32) string {
	return t.src[t.Nodes[i].KeyAt : t.Nodes[i].KeyAt+t.Nodes[i].KeyLen]
}

// Str returns the text of node i: a string's value, a number's digits, else "".
func (t *Tree) Str(i int32) string {
	return t.src[t.Nodes[i].StrAt : t.Nodes[i].StrAt+t.Nodes[i].StrLen]
}

// maxScanDepth bounds scan's recursion; deeper documents go to fastjson (MaxDepth 300).
const maxScanDepth = 100

// Child returns the first member of object i named key, or -1 (fastjson's Get: the
// first of duplicate keys wins). It returns -1 when i is not an object.
func (t *Tree) Child(i int32, key string) int32 {
	if t.Nodes[i].Type != TypeObject {
		return -1
	}
	for j, end := i+1, t.Nodes[i].End; j < end; j = t.Nodes[j].End {
		if int(t.Nodes[j].KeyLen) == len(key) && t.Key(j) == key {
			return j
		}
	}
	return -1
}

// Index returns the position of node i in its parent array.
func (t *Tree) Index(i int32) int {
	n := 0
	for j := t.Nodes[i].Parent + 1; j < i; j = t.Nodes[j].End {
		n++
	}
	return n
}

// load copies a fastjson parse into t.
func (t *Tree) load(v *fastjson.Value) error {
	t.Nodes, t.unescaped, t.badNumber = t.Nodes[:0], t.unescaped[:0], false
	t.add(v, -1, nil)
	t.src = view(t.unescaped)
	if t.badNumber {
		// The number is not quoted: error messages reach dead letters and logs, and
		// carry no part of a resource.
		return &SyntaxError{Offset: -1, Msg: "a number outside JSON's grammar (such as 01, 1. or NaN)"}
	}
	return nil
}

func (t *Tree) add(v *fastjson.Value, parent int32, key []byte) {
	i := int32(len(t.Nodes))
	typ := typeOf(v)
	t.Nodes = append(t.Nodes, Node{KeyAt: int32(len(t.unescaped)), KeyLen: int32(len(key)), Parent: parent, Type: typ})
	t.unescaped = append(t.unescaped, key...)
	switch typ {
	case TypeString:
		s := v.GetStringBytes()
		t.Nodes[i].StrAt, t.Nodes[i].StrLen = int32(len(t.unescaped)), int32(len(s))
		t.unescaped = append(t.unescaped, s...)
	case TypeNumber:
		at := len(t.unescaped)
		t.unescaped = v.MarshalTo(t.unescaped)
		t.Nodes[i].StrAt, t.Nodes[i].StrLen = int32(at), int32(len(t.unescaped)-at)
		// fastjson reads numbers lazily and takes what JSON does not ("." "01" "NaN").
		if !t.badNumber {
			num := view(t.unescaped[at:])
			end, ok := scanNumber(num, 0)
			t.badNumber = !ok || end != len(num)
		}
	case TypeArray:
		arr, _ := v.Array()
		for _, e := range arr {
			t.add(e, i, nil)
		}
	case TypeObject:
		o, _ := v.Object()
		o.Visit(func(k []byte, e *fastjson.Value) { t.add(e, i, k) })
	}
	t.Nodes[i].End = int32(len(t.Nodes))
}

// scan parses b into t if b is strict JSON of the common kind, and reports whether it
// did; on false Parse gives b to fastjson.
func (t *Tree) scan(b []byte) bool {
	t.Nodes, t.src, t.high = t.Nodes[:0], view(b), 0
	s := t.src
	i, ok := t.value(s, skipSpace(s, 0), -1, 0, 0, 0)
	return ok && skipSpace(s, i) == len(s)
}

// value scans the value at s[i:] as a child of parent, returning the offset after it.
// The member name, if any, is s[keyAt:keyAt+keyLen].
func (t *Tree) value(s string, i int, parent int32, keyAt, keyLen int32, depth int) (int, bool) {
	if i >= len(s) || depth > maxScanDepth {
		return i, false
	}
	idx := int32(len(t.Nodes))
	t.Nodes = append(t.Nodes, Node{KeyAt: keyAt, KeyLen: keyLen, Parent: parent})
	var ok bool
	switch c := s[i]; {
	case c == '{':
		t.Nodes[idx].Type = TypeObject
		if i = skipSpace(s, i+1); i < len(s) && s[i] == '}' {
			i++
			break
		}
		for more := true; more; {
			if i >= len(s) || s[i] != '"' {
				return i, false
			}
			keyAt := i + 1
			if i, ok = scanString(s, keyAt, &t.high); !ok {
				return i, false
			}
			keyLen := i - 1 - keyAt
			if i = skipSpace(s, i); i >= len(s) || s[i] != ':' {
				return i, false
			}
			if i, ok = t.value(s, skipSpace(s, i+1), idx, int32(keyAt), int32(keyLen), depth+1); !ok {
				return i, false
			}
			if i, more, ok = afterElement(s, i, '}'); !ok {
				return i, false
			}
		}
	case c == '[':
		t.Nodes[idx].Type = TypeArray
		if i = skipSpace(s, i+1); i < len(s) && s[i] == ']' {
			i++
			break
		}
		for more := true; more; {
			if i, ok = t.value(s, i, idx, 0, 0, depth+1); !ok {
				return i, false
			}
			if i, more, ok = afterElement(s, i, ']'); !ok {
				return i, false
			}
		}
	case c == '"':
		t.Nodes[idx].Type = TypeString
		at := i + 1
		if i, ok = scanString(s, at, &t.high); !ok {
			return i, false
		}
		t.Nodes[idx].StrAt, t.Nodes[idx].StrLen = int32(at), int32(i-1-at)
	case c == 't' && strings.HasPrefix(s[i:], "true"):
		t.Nodes[idx].Type, i = TypeTrue, i+len("true")
	case c == 'f' && strings.HasPrefix(s[i:], "false"):
		t.Nodes[idx].Type, i = TypeFalse, i+len("false")
	case c == 'n' && strings.HasPrefix(s[i:], "null"):
		t.Nodes[idx].Type, i = TypeNull, i+len("null")
	case c == '-' || (c >= '0' && c <= '9'):
		at := i
		if i, ok = scanNumber(s, i); !ok {
			return i, false
		}
		t.Nodes[idx].Type, t.Nodes[idx].StrAt, t.Nodes[idx].StrLen = TypeNumber, int32(at), int32(i-at)
	default:
		return i, false
	}
	t.Nodes[idx].End = int32(len(t.Nodes))
	return i, true
}

// afterElement reads what follows a member of an object or an element of an array at
// s[i:]: a comma, and more is true with i past it and the space after it; or the closing
// bracket, and i is past it.
func afterElement(s string, i int, closing byte) (next int, more, ok bool) {
	if i = skipSpace(s, i); i >= len(s) {
		return i, false, false
	}
	switch s[i] {
	case ',':
		return skipSpace(s, i+1), true, true
	case closing:
		return i + 1, false, true
	}
	return i, false, false
}

// stringStop marks the bytes that end scan's fast reading of a string: the closing
// quote, and what it leaves to fastjson (escapes, raw control characters).
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// scanString reads a string whose opening quote is before s[i] and returns the offset
// after its closing quote; ok is false if it has an escape or a raw control character
// or is not closed. It tests eight bytes at a time
// for a stop byte (see hasControl), as most of a resource's bytes are in strings.
func scanString(s string, i int, high *uint64) (next int, ok bool) {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	var acc uint64
	j := i
	for ; j+8 <= len(s); j += 8 {
		x := uint64(s[j]) | uint64(s[j+1])<<8 | uint64(s[j+2])<<16 | uint64(s[j+3])<<24 |
			uint64(s[j+4])<<32 | uint64(s[j+5])<<40 | uint64(s[j+6])<<48 | uint64(s[j+7])<<56
		quote, backslash := x^('"'*ones), x^('\\'*ones)
		if m := ((x-0x20*ones)&^x | (quote-ones)&^quote | (backslash-ones)&^backslash) & tops; m != 0 {
			// A stop byte in these eight. A borrow only carries into higher bytes, so the
			// lowest flagged byte is the first stop byte.
			k := bits.TrailingZeros64(m) >> 3
			*high |= acc | x&(1<<(8*k)-1)
			return j + k + 1, s[j+k] == '"'
		}
		acc |= x
	}
	for ; j < len(s); j++ {
		if stringStop[s[j]] {
			*high |= acc
			return j + 1, s[j] == '"'
		}
		acc |= uint64(s[j])
	}
	*high |= acc
	return len(s), false
}

// scanNumber reads a JSON number (RFC 8259 grammar) starting at s[i].
func scanNumber(s string, i int) (int, bool) {
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

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}
