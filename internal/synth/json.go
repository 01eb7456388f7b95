package synth

import (
	"strconv"
	"time"
)

// enc appends JSON to a buffer reused for every resource. encoding/json over structs is
// several times slower for output this regular, and the generator's throughput is what
// the benchmarks and the demo wait on. The only state needed is whether the next value
// must be preceded by a comma; keys are trusted constants and are not escaped.
type enc struct {
	b     []byte
	comma bool
}

func (e *enc) reset() { e.b = e.b[:0]; e.comma = false }

func (e *enc) sep() {
	if e.comma {
		e.b = append(e.b, ',')
	}
}

func (e *enc) key(k string) {
	e.sep()
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
	e.comma = false
}

func (e *enc) obj()    { e.sep(); e.b = append(e.b, '{'); e.comma = false }
func (e *enc) endObj() { e.b = append(e.b, '}'); e.comma = true }
func (e *enc) arr()    { e.sep(); e.b = append(e.b, '['); e.comma = false }
func (e *enc) endArr() { e.b = append(e.b, ']'); e.comma = true }

func (e *enc) str(s string) {
	e.sep()
	e.b = appendString(e.b, s)
	e.comma = true
}

func (e *enc) field(k, v string) { e.key(k); e.str(v) }

func (e *enc) fieldInt(k string, v int) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, int64(v), 10)
	e.comma = true
}

// fieldNum writes v with prec decimals: measured values carry the precision of the device
// that produced them, not float64 noise.
func (e *enc) fieldNum(k string, v float64, prec int) {
	e.key(k)
	e.b = strconv.AppendFloat(e.b, v, 'f', prec, 64)
	e.comma = true
}

func (e *enc) fieldBool(k string, v bool) {
	e.key(k)
	e.b = strconv.AppendBool(e.b, v)
	e.comma = true
}

// fieldTime writes a FHIR dateTime/instant with seconds and the offset of t's location.
func (e *enc) fieldTime(k string, t time.Time) {
	e.key(k)
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339)
	e.b = append(e.b, '"')
	e.comma = true
}

func (e *enc) fieldDate(k string, t time.Time) {
	e.key(k)
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.DateOnly)
	e.b = append(e.b, '"')
	e.comma = true
}

// fieldID writes an id-valued string field.
func (e *enc) fieldID(k string, id *uuid) {
	e.key(k)
	e.b = append(e.b, '"')
	e.b = append(e.b, id[:]...)
	e.b = append(e.b, '"')
	e.comma = true
}

// ref writes a Reference object {"reference":"Type/id"} as the next value.
func (e *enc) ref(typ string, id *uuid, display string) {
	e.obj()
	e.key("reference")
	e.b = append(e.b, '"')
	e.b = append(e.b, typ...)
	e.b = append(e.b, '/')
	e.b = append(e.b, id[:]...)
	e.b = append(e.b, '"')
	e.comma = true
	if display != "" {
		e.field("display", display)
	}
	e.endObj()
}

func (e *enc) fieldRef(k, typ string, id *uuid, display string) {
	e.key(k)
	e.ref(typ, id, display)
}

// appendString appends s as a JSON string. Generated text is ASCII, so only the characters
// JSON requires to be escaped are handled; UTF-8 passes through as is. Nearly every string
// needs no escaping, so it is scanned eight bytes at a time first: this was a third of the
// generator's CPU time when done byte by byte.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if needsEscape(w) {
			break
		}
	}
	start := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// needsEscape reports whether any byte of w is a control character, '"' or '\\', using
// the "has a byte less than n" and "has a zero byte" bit tricks; bytes >= 0x80 never match.
func needsEscape(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(x uint64) uint64 { return (x - ones) & ^x & highs }
	control := (w - ones*0x20) & ^w & highs
	return control|hasZero(w^(ones*'"'))|hasZero(w^(ones*'\\')) != 0
}
