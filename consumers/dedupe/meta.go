package dedupe

import (
	"bytes"
	"errors"
	"time"

	"github.com/valyala/fastjson"
)

// errNotObject is Meta's error for a value that is not a JSON object.
var errNotObject = errors.New("not a JSON object")

// Meta extracts meta.versionId and meta.lastUpdated. An absent or unparseable
// lastUpdated is reported as ok=false for that field, not as an error: versioning is a
// hint, content is the fallback. err is set only when value is not a JSON object (as
// far as it is read).
//
// It is a scanner, not a parser: it walks the bytes up to the end of the top-level
// "meta" object (usually near the start), decoding only the two strings it needs and
// skipping every other value, with no allocation for a resource without escapes in
// those strings. Dedupe reads what validate has already parsed in full, so
// it does not check the rest again. It matches member names as written, without
// unescaping them ("m\u0065ta" is not "meta"; exporters write names plainly), and the
// first of duplicate names wins.
func Meta(value []byte) (versionID string, lastUpdated time.Time, luOK bool, err error) {
	s := scanner{b: value}
	s.ws()
	if !s.eat('{') {
		return "", time.Time{}, false, errNotObject
	}
	var vid, lu []byte
	var seenVid, seenLu bool
	err = s.object(func(key []byte) bool {
		if string(key) != "meta" {
			return s.skip()
		}
		if s.peek() != '{' {
			s.stop = true // the first meta is the one
			return s.skip()
		}
		s.i++
		ok := s.object(func(key []byte) bool {
			var dst *[]byte
			switch {
			case string(key) == "versionId" && !seenVid:
				dst, seenVid = &vid, true
			case string(key) == "lastUpdated" && !seenLu:
				dst, seenLu = &lu, true
			default:
				return s.skip()
			}
			if s.peek() != '"' {
				return s.skip()
			}
			v, ok := s.str()
			*dst = v
			return ok
		}) == nil
		s.stop = true
		return ok
	})
	if err == nil && !s.stop {
		if s.ws(); s.i != len(s.b) {
			err = errNotObject
		}
	}
	if err != nil {
		return "", time.Time{}, false, err
	}
	versionID = string(vid)
	if lu != nil {
		if t, perr := time.Parse(time.RFC3339Nano, string(lu)); perr == nil {
			lastUpdated, luOK = t, true
		}
	}
	return versionID, lastUpdated, luOK, nil
}

// structural marks the bytes that matter when skipping an object or array.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// scanner walks JSON bytes.
type scanner struct {
	b    []byte
	i    int
	stop bool // set by a member function: the object need not be read further
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// object reads the members of an object whose '{' has been read, through its '}'.
// member is called with each key as written (escapes not decoded), positioned at the value (after the ':' and
// white space), and must consume the value; setting s.stop ends the read there.
func (s *scanner) object(member func(key []byte) bool) error {
	s.ws()
	if s.eat('}') {
		return nil
	}
	for {
		if s.peek() != '"' {
			return errNotObject
		}
		key, ok := s.skipStr() // raw: fastjson too matches keys as written
		if !ok {
			return errNotObject
		}
		s.ws()
		if !s.eat(':') {
			return errNotObject
		}
		s.ws()
		if !member(key) {
			return errNotObject
		}
		if s.stop {
			return nil
		}
		s.ws()
		if s.eat('}') {
			return nil
		}
		if !s.eat(',') {
			return errNotObject
		}
		s.ws()
	}
}

// str reads the string at s.i and returns its content, unescaped (by fastjson, as
// validate reads it) when it has escapes.
func (s *scanner) str() ([]byte, bool) {
	start := s.i
	raw, ok := s.skipStr()
	if !ok || bytes.IndexByte(raw, '\\') < 0 {
		return raw, ok
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(s.b[start:s.i])
	if err != nil || v.Type() != fastjson.TypeString {
		return nil, false
	}
	return v.GetStringBytes(), true
}

// skipStr passes over the string at s.i and returns its raw content. It finds the
// closing quote with bytes.IndexByte and does not check what is inside.
func (s *scanner) skipStr() ([]byte, bool) {
	start := s.i + 1
	for i := start; ; {
		q := bytes.IndexByte(s.b[i:], '"')
		if q < 0 {
			return nil, false
		}
		q += i
		k := q - 1 // the quote is escaped if an odd number of backslashes precede it
		for k >= start && s.b[k] == '\\' {
			k--
		}
		if (q-1-k)%2 == 0 {
			s.i = q + 1
			return s.b[start:q], true
		}
		i = q + 1
	}
}

// skip passes over the value at s.i: a string, an object or array (nesting is counted,
// strings inside skipped), or a literal or number (up to the next delimiter).
func (s *scanner) skip() bool {
	switch s.peek() {
	case '"':
		_, ok := s.skipStr()
		return ok
	case '{', '[':
		depth := 0
		for {
			for s.i < len(s.b) && !structural[s.b[s.i]] {
				s.i++
			}
			if s.i == len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case '"':
				if _, ok := s.skipStr(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			default:
				if depth--; depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
	case 0, ',', '}', ']', ':':
		return false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.i > start
		}
		s.i++
	}
	return s.i > start
}
