package deid

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// The FHIRPath subset rules and generalize cases are written in: enough for the
// anonymizer's configurations, parsed once at start so that a rule this package cannot
// evaluate is refused then, naming the rule, rather than discovered on a record.
//
//	paths       Patient.name.given, Resource.id, nodesByType('HumanName'),
//	            nodesByName('note'), a | b, (x as Quantity).value, x.ofType(Age),
//	            x.where(cond), x.first(), x.last()
//	conditions  = != < <= > >= and or xor, in, not(), exists(), empty(), count(),
//	            startsWith(), endsWith(), contains(), matches(), length(), upper(), lower()
//	values      'string', numbers, true/false, @2010-01-01 dates, $this, + - * / div mod &,
//	            substring(), replace(), replaceMatches(), toString()
//
// Anything else (other functions, external constants, implies, indexers) is refused.

// expr is a parsed FHIRPath expression.
type expr struct {
	op   string  // "ident", "lit", "this", "call", "not", or a binary operator
	name string  // identifier, function or type name
	lit  literal // for "lit"
	args []*expr // operands: for "call" the receiver (nil at a path's start) then arguments
	// typ is name resolved as a FHIR type (noType if none), set by resolveTypes: the
	// evaluator looks types up per record.
	typ typeID
	// nameID is name resolved as an element name (schema.lookupName).
	nameID int32
}

// resolveTypes sets typ on every node of e: for identifiers, type operators and
// ofType, the type named; for nodesByType, the type its argument names.
func (s *schema) resolveTypes(e *expr) {
	if e == nil {
		return
	}
	e.typ = noType
	e.nameID = s.lookupName(e.name)
	name := e.name
	switch {
	case e.op == "call" && e.name == "nodesByType":
		name = e.args[1].lit.s
	case e.op == "call" && e.name == "nodesByName":
		e.nameID = s.lookupName(e.args[1].lit.s)
	case e.op == "call" && e.name == "ofType":
		name = e.args[1].name
	}
	if t, ok := s.byName[name]; ok {
		e.typ = t
	}
	for _, a := range e.args {
		s.resolveTypes(a)
	}
}

type literalKind uint8

const (
	litString literalKind = iota
	litNumber
	litBool
	litDate
)

type literal struct {
	kind literalKind
	s    string
	f    float64
	b    bool
}

// functions names each supported function with its argument count (-1: 1 or 2) and
// whether it selects elements (allowed in a rule's path) or computes a value (allowed
// only in conditions and generalize cases).
var functions = map[string]struct {
	args    int
	selects bool
}{
	"where": {1, true}, "ofType": {1, true}, "first": {0, true}, "last": {0, true},
	"nodesByType": {1, true}, "nodesByName": {1, true},
	"exists": {0, false}, "empty": {0, false}, "not": {0, false}, "count": {0, false},
	"startsWith": {1, false}, "endsWith": {1, false}, "contains": {1, false}, "matches": {1, false},
	"length": {0, false}, "upper": {0, false}, "lower": {0, false}, "toString": {0, false},
	"substring": {-1, false}, "replace": {2, false}, "replaceMatches": {2, false},
}

type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number, 'd' date, 'v' $this, 'o' operator, 0 end
	text string
	pos  int
}

func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '\''; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					default:
						b.WriteByte(src[j])
					}
					continue
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			toks = append(toks, token{'s', b.String(), i})
			i = j + 1
		case c == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				return nil, fmt.Errorf("unterminated `identifier` at %d", i)
			}
			toks = append(toks, token{'i', src[i+1 : i+1+j], i})
			i += j + 2
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' && j+1 < len(src) && src[j+1] >= '0' && src[j+1] <= '9') {
				j++
			}
			toks = append(toks, token{'n', src[i:j], i})
			i = j
		case c == '@':
			j := i + 1
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || strings.IndexByte("-:T.Z+", src[j]) >= 0) {
				j++
			}
			if j == i+1 {
				return nil, fmt.Errorf("empty date literal at %d", i)
			}
			toks = append(toks, token{'d', src[i+1 : j], i})
			i = j
		case c == '$':
			if strings.HasPrefix(src[i:], "$this") {
				toks = append(toks, token{'v', "$this", i})
				i += len("$this")
				continue
			}
			return nil, fmt.Errorf("unsupported variable at %d (only $this)", i)
		case c == '_' || unicode.IsLetter(rune(c)):
			j := i
			for j < len(src) && (src[j] == '_' || src[j] >= '0' && src[j] <= '9' || unicode.IsLetter(rune(src[j]))) {
				j++
			}
			toks = append(toks, token{'i', src[i:j], i})
			i = j
		default:
			for _, op := range []string{"<=", ">=", "!=", "!~", "(", ")", ".", ",", "|", "=", "<", ">", "+", "-", "*", "/", "&", "~", "[", "]", "{", "}", "%"} {
				if strings.HasPrefix(src[i:], op) {
					toks = append(toks, token{'o', op, i})
					i += len(op)
					goto next
				}
			}
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		next:
		}
	}
	return append(toks, token{0, "", len(src)}), nil
}

// binding powers of the binary operators, loosest first (FHIRPath's precedence).
var infix = map[string]int{
	"or": 2, "xor": 2, "and": 3, "in": 4, "contains": 4,
	"=": 5, "!=": 5, "<": 6, "<=": 6, ">": 6, ">=": 6, "|": 7, "as": 8, "is": 8,
	"+": 9, "-": 9, "&": 9, "*": 10, "/": 10, "div": 10, "mod": 10,
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

// parseFHIRPath parses src. It checks the expression's shape, not its meaning: the
// evaluator refuses functions in the wrong place when the rule is compiled.
func parseFHIRPath(src string) (*expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != 0 {
		return nil, fmt.Errorf("unexpected %q at %d", t.text, t.pos)
	}
	return e, nil
}

func (p *parser) expr(minPower int) (*expr, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != 'o' && t.kind != 'i' {
			return left, nil
		}
		power, ok := infix[t.text]
		if !ok {
			if t.kind == 'i' && (t.text == "implies") {
				return nil, fmt.Errorf("operator %q is not supported", t.text)
			}
			return left, nil
		}
		if power <= minPower {
			return left, nil
		}
		p.next()
		if t.text == "as" || t.text == "is" {
			typ := p.next()
			if typ.kind != 'i' {
				return nil, fmt.Errorf("%s needs a type name at %d", t.text, typ.pos)
			}
			left = &expr{op: t.text, name: typ.text, args: []*expr{left}}
			continue
		}
		right, err := p.expr(power)
		if err != nil {
			return nil, err
		}
		left = &expr{op: t.text, args: []*expr{left, right}}
	}
}

func (p *parser) unary() (*expr, error) {
	if t := p.peek(); t.kind == 'o' && (t.text == "-" || t.text == "+") {
		p.next()
		operand, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return operand, nil
		}
		return &expr{op: "-", args: []*expr{{op: "lit", lit: literal{kind: litNumber}}, operand}}, nil
	}
	e, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind == 'o' && t.text == "[" {
			return nil, fmt.Errorf("indexers ([n]) are not supported, at %d", t.pos)
		}
		if t.kind != 'o' || t.text != "." {
			return e, nil
		}
		p.next()
		if e, err = p.invocation(e); err != nil {
			return nil, err
		}
	}
}

// invocation reads an identifier or a function call after a '.', on receiver recv (nil
// at the start of a path).
func (p *parser) invocation(recv *expr) (*expr, error) {
	t := p.next()
	if t.kind != 'i' {
		return nil, fmt.Errorf("expected a name at %d", t.pos)
	}
	if n := p.peek(); n.kind == 'o' && n.text == "(" {
		p.next()
		call := &expr{op: "call", name: t.text, args: []*expr{recv}}
		if c := p.peek(); c.kind == 'o' && c.text == ")" {
			p.next()
		} else {
			for {
				a, err := p.expr(0)
				if err != nil {
					return nil, err
				}
				call.args = append(call.args, a)
				c := p.next()
				if c.kind == 'o' && c.text == ")" {
					break
				}
				if c.kind != 'o' || c.text != "," {
					return nil, fmt.Errorf("expected , or ) at %d", c.pos)
				}
			}
		}
		f, ok := functions[t.text]
		if !ok {
			return nil, fmt.Errorf("function %s() is not supported", t.text)
		}
		if n := len(call.args) - 1; f.args >= 0 && n != f.args || f.args < 0 && (n < 1 || n > 2) {
			return nil, fmt.Errorf("%s() takes %d arguments, got %d", t.text, max(f.args, 1), n)
		}
		return call, nil
	}
	return &expr{op: "ident", name: t.text, args: []*expr{recv}}, nil
}

func (p *parser) term() (*expr, error) {
	t := p.peek()
	switch t.kind {
	case 's':
		p.next()
		return &expr{op: "lit", lit: literal{kind: litString, s: t.text}}, nil
	case 'n':
		p.next()
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("number %q at %d", t.text, t.pos)
		}
		return &expr{op: "lit", lit: literal{kind: litNumber, f: f, s: t.text}}, nil
	case 'd':
		p.next()
		if _, ok := datePrefix(t.text); !ok {
			return nil, fmt.Errorf("date literal @%s at %d is not a FHIR date or dateTime", t.text, t.pos)
		}
		return &expr{op: "lit", lit: literal{kind: litDate, s: t.text}}, nil
	case 'v':
		p.next()
		return &expr{op: "this"}, nil
	case 'i':
		switch t.text {
		case "true", "false":
			p.next()
			return &expr{op: "lit", lit: literal{kind: litBool, b: t.text == "true"}}, nil
		}
		return p.invocation(nil)
	case 'o':
		if t.text == "(" {
			p.next()
			e, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if c := p.next(); c.kind != 'o' || c.text != ")" {
				return nil, fmt.Errorf("expected ) at %d", c.pos)
			}
			return e, nil
		}
	}
	if t.kind == 0 {
		return nil, fmt.Errorf("unexpected end of expression")
	}
	return nil, fmt.Errorf("unexpected %q at %d", t.text, t.pos)
}

// checkPath refuses in a rule's path what cannot select elements: values, and
// functions that compute rather than select (they may appear inside where()).
func checkPath(e *expr) error {
	if e == nil {
		return nil
	}
	switch e.op {
	case "ident", "as":
		return checkPath(e.args[0])
	case "|":
		if err := checkPath(e.args[0]); err != nil {
			return err
		}
		return checkPath(e.args[1])
	case "call":
		if !functions[e.name].selects {
			return fmt.Errorf("%s() computes a value; a rule's path must select elements", e.name)
		}
		if e.name == "nodesByType" || e.name == "nodesByName" {
			if e.args[0] != nil {
				return fmt.Errorf("%s() must start a path", e.name)
			}
			if e.args[1].op != "lit" || e.args[1].lit.kind != litString {
				return fmt.Errorf("%s() takes a quoted name", e.name)
			}
		}
		if e.name == "ofType" && e.args[1].op != "ident" {
			return fmt.Errorf("ofType() takes a type name")
		}
		return checkPath(e.args[0])
	case "this":
		return nil
	}
	return fmt.Errorf("operator or value %q cannot select elements", e.op)
}
