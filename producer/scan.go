package producer

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// scanResource checks, in one pass and without allocating, that line is a JSON object,
// and returns its top-level resourceType and id string values (nil when absent or not
// a string). It accepts exactly the lines fastjson.Parser accepts (including its
// leniencies: unchecked string contents, loose numbers, NaN and Inf), so that a line is
// published or dead-lettered the same whichever of the two looks at it; the fuzz test
// holds the two to that.
//
// ok is false when the scanner leaves the decision to fastjson: the line is not valid
// JSON or not an object (fastjson then words the dead letter's reason), or a top-level
// key, resourceType or id holds a backslash escape (fastjson unescapes those). Such
// lines are rare, and parsing them twice costs little.
func scanResource(line []byte) (resourceType, id []byte, ok bool) {
	i := skipJSONSpace(line, 0)
	if i >= len(line) || line[i] != '{' {
		return nil, nil, false
	}
	i = skipJSONSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return nil, nil, skipJSONSpace(line, i+1) == len(line)
	}
	var seenType, seenID bool
	for {
		i = skipJSONSpace(line, i)
		if i >= len(line) || line[i] != '"' {
			return nil, nil, false
		}
		end, escaped := jsonStringEnd(line, i+1)
		if end < 0 || escaped {
			return nil, nil, false
		}
		key := line[i+1 : end]
		i = skipJSONSpace(line, end+1)
		if i >= len(line) || line[i] != ':' {
			return nil, nil, false
		}
		i = skipJSONSpace(line, i+1)
		// fastjson's Get returns the first member of a name, and GetStringBytes nil when
		// that member is not a string: only the first occurrence counts.
		target := (*[]byte)(nil)
		switch {
		case !seenType && string(key) == "resourceType":
			seenType, target = true, &resourceType
		case !seenID && string(key) == "id":
			seenID, target = true, &id
		}
		if target != nil && i < len(line) && line[i] == '"' {
			end, escaped := jsonStringEnd(line, i+1)
			if end < 0 || escaped {
				return nil, nil, false
			}
			*target, i = line[i+1:end], end+1
		} else if i = skipJSONValue(line, i, 1); i < 0 {
			return nil, nil, false
		}
		i = skipJSONSpace(line, i)
		if i >= len(line) {
			return nil, nil, false
		}
		switch line[i] {
		case ',':
			i++
			continue
		case '}':
			if skipJSONSpace(line, i+1) != len(line) {
				return nil, nil, false
			}
			return resourceType, id, true
		}
		return nil, nil, false
	}
}

// maxJSONDepth is fastjson's MaxDepth: deeper nesting is an error there, so here too.
const maxJSONDepth = 300

// skipJSONValue returns the index just past the value starting at b[i] (at nesting
// depth depth, the top-level value being at 0), or -1 where fastjson would fail.
func skipJSONValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	depth++
	if depth > maxJSONDepth {
		return -1
	}
	switch c := b[i]; c {
	case '{':
		i = skipJSONSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1
		}
		for {
			i = skipJSONSpace(b, i)
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			if i, _ = jsonStringEnd(b, i+1); i < 0 {
				return -1
			}
			i = skipJSONSpace(b, i+1)
			if i >= len(b) || b[i] != ':' {
				return -1
			}
			if i = skipJSONValue(b, skipJSONSpace(b, i+1), depth); i < 0 {
				return -1
			}
			var more bool
			if i, more = afterJSONElement(b, i, '}'); !more {
				return i
			}
		}
	case '[':
		i = skipJSONSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			if i = skipJSONValue(b, skipJSONSpace(b, i), depth); i < 0 {
				return -1
			}
			var more bool
			if i, more = afterJSONElement(b, i, ']'); !more {
				return i
			}
		}
	case '"':
		if i, _ = jsonStringEnd(b, i+1); i < 0 {
			return -1
		}
		return i + 1
	case 't':
		return literalEnd(b, i, "true")
	case 'f':
		return literalEnd(b, i, "false")
	case 'n':
		if end := literalEnd(b, i, "null"); end >= 0 {
			return end
		}
		if len(b)-i >= 3 && bytes.EqualFold(b[i:i+3], []byte("nan")) {
			return i + 3
		}
		return -1
	}
	return jsonNumberEnd(b, i)
}

func literalEnd(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// jsonNumberEnd mirrors fastjson's parseRawNumber: a run of number characters, or an
// optionally signed Inf or NaN.
func jsonNumberEnd(b []byte, i int) int {
	s := b[i:]
	for k, c := range s {
		if c >= '0' && c <= '9' || c == '.' || c == '-' || c == 'e' || c == 'E' || c == '+' {
			continue
		}
		if k == 0 || k == 1 && (s[0] == '-' || s[0] == '+') {
			if len(s)-k >= 3 && (bytes.EqualFold(s[k:k+3], []byte("inf")) || bytes.EqualFold(s[k:k+3], []byte("nan"))) {
				return i + k + 3
			}
			return -1
		}
		return i + k
	}
	return len(b)
}

// jsonStringEnd returns the index of the quote closing the string whose contents start
// at b[start], or -1, and whether the string holds a backslash escape. The closing quote
// is the first one a backslash does not escape: the first not preceded by an odd run of
// backslashes, as fastjson finds it. It tests eight bytes at a time for a quote or a
// backslash (the trick of consumers/validate's scanString) instead of calling
// bytes.IndexByte per string, whose set-up costs about as much as the search on the
// short strings that make up most of a FHIR line.
func jsonStringEnd(b []byte, start int) (end int, escaped bool) {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	i := start
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		// (v - ones) &^ v has a byte's top bit set where v has a zero byte, and maybe in
		// bytes above it (a borrow only carries upwards): in either mask the lowest set
		// bit is exact, and so is the lowest set bit of the two together.
		quote, backslash := x^('"'*ones), x^('\\'*ones)
		quotes, backslashes := (quote-ones)&^quote&tops, (backslash-ones)&^backslash&tops
		if quotes|backslashes == 0 {
			i += 8
			continue
		}
		first := quotes | backslashes
		first &= -first
		if quotes&first != 0 {
			return i + bits.TrailingZeros64(first)>>3, escaped
		}
		// The escaped byte, whatever it is, does not end the string.
		escaped, i = true, i+bits.TrailingZeros64(first)>>3+2
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i, escaped
		case '\\':
			escaped = true
			i++
		}
	}
	return -1, escaped
}

// skipJSONSpace returns the index of the first byte at or after b[i] that is not JSON
// whitespace. Every JSON space is at most ' ', so one comparison settles the usual case,
// a compact line's next token.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' {
		switch b[i] {
		case ' ', '\n', '\t', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// afterJSONElement reads what follows a member of an object or an element of an array
// at b[i:]: a comma (more is true, next is past it), or the closing bracket (next is
// past it); anything else is an error (next is -1).
func afterJSONElement(b []byte, i int, closing byte) (next int, more bool) {
	i = skipJSONSpace(b, i)
	switch {
	case i >= len(b):
		return -1, false
	case b[i] == ',':
		return i + 1, true
	case b[i] == closing:
		return i + 1, false
	}
	return -1, false
}
