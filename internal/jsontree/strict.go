package jsontree

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

// view is the bytes b as a string without a copy: the tree's keys and strings are
// spans of it, and a copy of every document would be most of a parse's cost. b must
// not change while the string is in use.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// stringFault finds what fastjson lets through inside the strings of a document it
// parsed and RFC 8259 forbids: a raw control character (below 0x20), or an escape
// other than \" \\ \/ \b \f \n \r \t and \u followed by four hex digits. It returns
// the offset of the first such byte and what it is, or -1.
func stringFault(b []byte) (at int, fault string) {
	if !hasControl(b) && bytes.IndexByte(b, '\\') < 0 {
		return -1, "" // the common case, found eight bytes at a time
	}
	in := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case in && c == '\\':
			if i+1 >= len(b) {
				return i, "an unfinished escape"
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return i, `a \u escape without four hex digits`
				}
				i += 5
			default:
				return i, "an invalid escape"
			}
		case c == '"':
			in = !in
		case in && c < 0x20:
			return i, "a raw control character"
		}
	}
	return -1, ""
}

func isHex4(h []byte) bool {
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
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
