package validate

import (
	"math/bits"
	"strings"

	"github.com/valyala/fastjson"
)

// A resource is checked as a flat tree: its JSON values in document (pre-)order, each
// knowing its parent and where its descendants end. The generic checks are then one
// loop over a slice, and an element's path is rendered from the parent links only when
// it fails, instead of being kept up to date for every element visited.
//
// The tree comes from scan, a strict JSON scanner for the common case (no escapes, no
// raw control characters, moderate nesting), which gives up on anything else; the
// resource is then parsed with fastjson, which decides what is valid JSON exactly as
// before, and its parse is copied into the same tree (load). Whatever scan accepts is
// strict JSON, which fastjson parses to the same values (FuzzScanMatchesFastjson).

// node is one JSON value. It holds no pointers (its strings are spans of the tree's
// src), which makes building the tree a plain store per value. Spans are int32: a
// Kafka record is smaller than 2 GiB.
type node struct {
	keyAt, keyLen int32         // member name, when the parent is an object
	strAt, strLen int32         // the value of a string
	end           int32         // index just past the last descendant
	parent        int32         // index of the parent, -1 for the root
	typ           fastjson.Type // fastjson's type names keep the messages as they were
}

// tree is a parsed resource; nodes[0] is the root.
type tree struct {
	nodes []node
	// src holds the text of keys and strings: a view (see view) of the resource's
	// bytes after scan, of unescaped after load; valid during one Validate call.
	src string
	// unescaped holds the keys and strings of a fastjson parse, unescaped (load).
	unescaped []byte
	// high ORs together the bytes of every string scan read, in 8-byte words: its top
	// bits are clear when the document is ASCII, which is then valid UTF-8 without a
	// second pass (scan accepts no byte above 0x7f outside strings).
	high uint64
}

// ascii reports whether the document scan accepted last is all ASCII.
func (t *tree) ascii() bool { return t.high&0x8080808080808080 == 0 }

func (t *tree) key(i int32) string {
	return t.src[t.nodes[i].keyAt : t.nodes[i].keyAt+t.nodes[i].keyLen]
}

func (t *tree) str(i int32) string {
	return t.src[t.nodes[i].strAt : t.nodes[i].strAt+t.nodes[i].strLen]
}

// maxScanDepth bounds scan's recursion; deeper documents go to fastjson (MaxDepth 300).
const maxScanDepth = 100

// child returns the first member of object i named key, or -1 (fastjson's Get: the
// first of duplicate keys wins). It returns -1 when i is not an object.
func (t *tree) child(i int32, key string) int32 {
	if t.nodes[i].typ != fastjson.TypeObject {
		return -1
	}
	for j, end := i+1, t.nodes[i].end; j < end; j = t.nodes[j].end {
		if int(t.nodes[j].keyLen) == len(key) && t.key(j) == key {
			return j
		}
	}
	return -1
}

// index returns the position of node i in its parent array.
func (t *tree) index(i int32) int {
	n := 0
	for j := t.nodes[i].parent + 1; j < i; j = t.nodes[j].end {
		n++
	}
	return n
}

// load copies a fastjson parse into t.
func (t *tree) load(v *fastjson.Value) {
	t.nodes, t.unescaped = t.nodes[:0], t.unescaped[:0]
	t.add(v, -1, nil)
	t.src = view(t.unescaped)
}

func (t *tree) add(v *fastjson.Value, parent int32, key []byte) {
	i := int32(len(t.nodes))
	t.nodes = append(t.nodes, node{keyAt: int32(len(t.unescaped)), keyLen: int32(len(key)), parent: parent, typ: v.Type()})
	t.unescaped = append(t.unescaped, key...)
	switch v.Type() {
	case fastjson.TypeString:
		s := v.GetStringBytes()
		t.nodes[i].strAt, t.nodes[i].strLen = int32(len(t.unescaped)), int32(len(s))
		t.unescaped = append(t.unescaped, s...)
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for _, e := range arr {
			t.add(e, i, nil)
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		o.Visit(func(k []byte, e *fastjson.Value) { t.add(e, i, k) })
	}
	t.nodes[i].end = int32(len(t.nodes))
}

// scan parses b into t if b is strict JSON of the common kind, and reports whether it
// did; on false the caller parses b with fastjson.
func (t *tree) scan(b []byte) bool {
	t.nodes, t.src, t.high = t.nodes[:0], view(b), 0
	s := t.src
	i, ok := t.value(s, skipSpace(s, 0), -1, 0, 0, 0)
	return ok && skipSpace(s, i) == len(s)
}

// value scans the value at s[i:] as a child of parent, returning the offset after it.
// The member name, if any, is s[keyAt:keyAt+keyLen].
func (t *tree) value(s string, i int, parent int32, keyAt, keyLen int32, depth int) (int, bool) {
	if i >= len(s) || depth > maxScanDepth {
		return i, false
	}
	idx := int32(len(t.nodes))
	t.nodes = append(t.nodes, node{keyAt: keyAt, keyLen: keyLen, parent: parent})
	var ok bool
	switch c := s[i]; {
	case c == '{':
		t.nodes[idx].typ = fastjson.TypeObject
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
		t.nodes[idx].typ = fastjson.TypeArray
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
		t.nodes[idx].typ = fastjson.TypeString
		at := i + 1
		if i, ok = scanString(s, at, &t.high); !ok {
			return i, false
		}
		t.nodes[idx].strAt, t.nodes[idx].strLen = int32(at), int32(i-1-at)
	case c == 't' && strings.HasPrefix(s[i:], "true"):
		t.nodes[idx].typ, i = fastjson.TypeTrue, i+len("true")
	case c == 'f' && strings.HasPrefix(s[i:], "false"):
		t.nodes[idx].typ, i = fastjson.TypeFalse, i+len("false")
	case c == 'n' && strings.HasPrefix(s[i:], "null"):
		t.nodes[idx].typ, i = fastjson.TypeNull, i+len("null")
	case c == '-' || (c >= '0' && c <= '9'):
		if i, ok = scanNumber(s, i); !ok {
			return i, false
		}
		t.nodes[idx].typ = fastjson.TypeNumber // its value is not needed, only its type
	default:
		return i, false
	}
	t.nodes[idx].end = int32(len(t.nodes))
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
