package deid

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/fhirstream/fhirstream/internal/jsontree"
)

// item is one element of a FHIRPath collection: a value of the document (node >= 0)
// or a value computed by the expression (a literal, a function's result).
type item struct {
	node int32
	kind literalKind
	s    string
	f    float64
	b    bool
}

func scalar(l literal) item { return item{node: -1, kind: l.kind, s: l.s, f: l.f, b: l.b} }

// evaluator evaluates compiled expressions over one document.
type evaluator struct {
	d       *document
	root    int32 // the resource the rule applies to
	regexps map[string]*regexp.Regexp
}

// errEval is an expression that cannot be evaluated on this document's values (a
// function of a string given a number): the resource is rejected, naming the rule.
type errEval struct{ msg string }

func (e *errEval) Error() string { return e.msg }

func evalErr(format string, args ...any) error { return &errEval{fmt.Sprintf(format, args...)} }

func (ev *evaluator) eval(e *expr, focus, this []item) ([]item, error) {
	switch e.op {
	case "lit":
		return []item{scalar(e.lit)}, nil
	case "this":
		return this, nil
	case "ident":
		return ev.ident(e, focus, this)
	case "as", "is":
		recv, err := ev.eval(e.args[0], focus, this)
		if err != nil {
			return nil, err
		}
		kept := ev.ofType(recv, e.name, e.typ)
		if e.op == "is" {
			return []item{{node: -1, kind: litBool, b: len(kept) == 1 && len(recv) == 1}}, nil
		}
		return kept, nil
	case "|":
		return ev.union(e, focus, this)
	case "call":
		return ev.call(e, focus, this)
	case "and", "or", "xor":
		l, err := ev.truth(e.args[0], focus, this)
		if err != nil {
			return nil, err
		}
		r, err := ev.truth(e.args[1], focus, this)
		if err != nil {
			return nil, err
		}
		return logic(e.op, l, r), nil
	}
	// The remaining operators are binary.
	l, err := ev.eval(e.args[0], focus, this)
	if err != nil {
		return nil, err
	}
	r, err := ev.eval(e.args[1], focus, this)
	if err != nil {
		return nil, err
	}
	return ev.binary(e.op, l, r)
}

// ident evaluates a member name or, for a resource type name without a receiver, the
// resources of that type in the focus.
func (ev *evaluator) ident(e *expr, focus, this []item) ([]item, error) {
	d := ev.d
	if e.args[0] != nil {
		recv, err := ev.eval(e.args[0], focus, this)
		if err != nil {
			return nil, err
		}
		return ev.navigate(recv, e.nameID), nil
	}
	if t := e.typ; t != noType && d.s.types[t].resource {
		var out []item
		for _, x := range focus {
			if x.node >= 0 && d.flags[x.node]&flagResource != 0 && (t == d.s.resourceT || t == d.s.domainResource && d.typ[x.node] != d.s.bundle || d.typ[x.node] == t) {
				out = append(out, x)
			}
		}
		return out, nil
	}
	return ev.navigate(focus, e.nameID), nil
}

// union is FHIRPath's |: both collections, each element once.
func (ev *evaluator) union(e *expr, focus, this []item) ([]item, error) {
	l, err := ev.eval(e.args[0], focus, this)
	if err != nil {
		return nil, err
	}
	r, err := ev.eval(e.args[1], focus, this)
	if err != nil {
		return nil, err
	}
	out := append([]item(nil), l...)
union:
	for _, x := range r {
		for _, y := range out {
			if x.node >= 0 && x.node == y.node || x.node < 0 && y.node < 0 && x == y {
				continue union
			}
		}
		out = append(out, x)
	}
	return out, nil
}

// binary applies a binary operator other than the logical ones: membership on a
// collection, and comparison, concatenation and arithmetic on singletons.
func (ev *evaluator) binary(op string, l, r []item) ([]item, error) {
	if op == "in" || op == "contains" {
		if op == "contains" {
			l, r = r, l
		}
		if len(l) == 0 {
			return nil, nil
		}
		if len(l) > 1 {
			return nil, evalErr("%s needs one value on its left, got %d", op, len(l))
		}
		a := ev.value(l[0])
		for _, x := range r {
			if c, ok := compare(a, ev.value(x)); ok && c == 0 {
				return boolean(true), nil
			}
		}
		return boolean(false), nil
	}
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, evalErr("operator %s needs single values, got %d and %d", op, len(l), len(r))
	}
	a, b := ev.value(l[0]), ev.value(r[0])
	switch op {
	case "=", "!=", "<", "<=", ">", ">=":
		return comparison(op, a, b), nil
	case "&":
		return []item{{node: -1, kind: litString, s: a.s + b.s}}, nil
	case "+":
		if a.kind != litNumber || b.kind != litNumber {
			if a.kind == litNumber || b.kind == litNumber {
				return nil, evalErr("+ of a number and a %s", kindName(b.kind))
			}
			return []item{{node: -1, kind: litString, s: a.s + b.s}}, nil
		}
	}
	return arithmetic(op, a, b)
}

// comparison is =, !=, <, <=, > or >= of two values; values that do not compare are
// unequal and have no order (an empty result).
func comparison(op string, a, b item) []item {
	c, ok := compare(a, b)
	if !ok {
		if op == "=" || op == "!=" {
			return boolean(op == "!=")
		}
		return nil
	}
	switch op {
	case "=":
		return boolean(c == 0)
	case "!=":
		return boolean(c != 0)
	case "<":
		return boolean(c < 0)
	case "<=":
		return boolean(c <= 0)
	case ">":
		return boolean(c > 0)
	}
	return boolean(c >= 0)
}

// arithmetic is +, -, *, /, div or mod of two numbers; division by zero is empty.
func arithmetic(op string, a, b item) ([]item, error) {
	if a.kind != litNumber || b.kind != litNumber {
		return nil, evalErr("operator %s needs numbers", op)
	}
	var f float64
	switch op {
	case "+":
		f = a.f + b.f
	case "-":
		f = a.f - b.f
	case "*":
		f = a.f * b.f
	case "/", "div", "mod":
		if b.f == 0 {
			return nil, nil
		}
		switch op {
		case "/":
			f = a.f / b.f
		case "div":
			f = math.Trunc(a.f / b.f)
		default:
			f = math.Mod(a.f, b.f)
		}
	default:
		return nil, evalErr("operator %s is not supported", op)
	}
	return []item{{node: -1, kind: litNumber, f: f}}, nil
}

func boolean(b bool) []item { return []item{{node: -1, kind: litBool, b: b}} }

func kindName(k literalKind) string {
	return [...]string{"string", "number", "boolean", "date"}[k]
}

// truth is the three-valued truth of e: 1 true, 0 false, -1 empty.
func (ev *evaluator) truth(e *expr, focus, this []item) (int, error) {
	c, err := ev.eval(e, focus, this)
	if err != nil || len(c) == 0 {
		return -1, err
	}
	if len(c) > 1 {
		return -1, evalErr("a condition gave %d values, not one boolean", len(c))
	}
	v := ev.value(c[0])
	if v.kind != litBool {
		return 1, nil // FHIRPath: a single non-boolean value is true
	}
	if v.b {
		return 1, nil
	}
	return 0, nil
}

func logic(op string, l, r int) []item {
	switch op {
	case "and":
		switch {
		case l == 0 || r == 0:
			return boolean(false)
		case l == 1 && r == 1:
			return boolean(true)
		}
	case "or":
		switch {
		case l == 1 || r == 1:
			return boolean(true)
		case l == 0 && r == 0:
			return boolean(false)
		}
	case "xor":
		if l >= 0 && r >= 0 {
			return boolean(l != r)
		}
	}
	return nil
}

// navigate returns the children named name of the items in c.
func (ev *evaluator) navigate(c []item, name int32) []item {
	var out []item
	for _, x := range c {
		if x.node >= 0 {
			ev.d.children(x.node, name, func(k int32) { out = append(out, item{node: k}) })
		}
	}
	return out
}

// ofType keeps the items of type name: document values by their FHIR type (or one it
// constrains), computed values by their kind.
func (ev *evaluator) ofType(c []item, name string, want typeID) []item {
	s := ev.d.s
	known := want != noType
	var out []item
	for _, x := range c {
		if x.node >= 0 {
			if known && s.is(ev.d.typ[x.node], want) {
				out = append(out, x)
			}
			continue
		}
		if strings.EqualFold(name, kindName(x.kind)) || name == "decimal" && x.kind == litNumber {
			out = append(out, x)
		}
	}
	return out
}

// value returns the primitive value of x: a document string (a date when its type is
// one), number or boolean, or x itself when computed. Objects have no value: their kind
// is litString with node kept, and compare equal to nothing.
func (ev *evaluator) value(x item) item {
	if x.node < 0 {
		return x
	}
	d := ev.d
	switch d.tree.Nodes[x.node].Type {
	case jsontree.TypeString:
		k := litString
		if d.s.isDate(d.typ[x.node]) {
			k = litDate
		}
		return item{node: -1, kind: k, s: d.str(x.node)}
	case jsontree.TypeNumber:
		f, _ := strconv.ParseFloat(d.str(x.node), 64)
		return item{node: -1, kind: litNumber, f: f, s: d.str(x.node)}
	case jsontree.TypeTrue:
		return item{node: -1, kind: litBool, b: true}
	case jsontree.TypeFalse:
		return item{node: -1, kind: litBool}
	}
	return item{node: x.node, kind: 255}
}

// compare orders two primitive values; ok is false when they cannot be compared
// (different kinds, objects, dates of different precision that agree as far as both go).
func compare(a, b item) (int, bool) {
	if a.kind == 255 || b.kind == 255 {
		return 0, false
	}
	if a.kind == litDate || b.kind == litDate {
		x, okx := datePrefix(a.s)
		y, oky := datePrefix(b.s)
		if !okx || !oky {
			return 0, false
		}
		for _, p := range [][2]int{{x.year, y.year}, {x.month, y.month}, {x.day, y.day}} {
			if p[0] == 0 || p[1] == 0 {
				if p[0] != p[1] {
					return 0, false // precision differs: FHIRPath gives empty
				}
				return 0, true
			}
			if p[0] != p[1] {
				return cmpInt(p[0], p[1]), true
			}
		}
		if (x.rest == "") != (y.rest == "") {
			return 0, false
		}
		return strings.Compare(x.rest, y.rest), true
	}
	if a.kind != b.kind {
		return 0, false
	}
	switch a.kind {
	case litNumber:
		switch {
		case a.f < b.f:
			return -1, true
		case a.f > b.f:
			return 1, true
		}
		return 0, true
	case litBool:
		if a.b == b.b {
			return 0, true
		}
		return 1, true
	}
	return strings.Compare(a.s, b.s), true
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (ev *evaluator) call(e *expr, focus, this []item) ([]item, error) {
	var recv []item
	if e.args[0] == nil {
		recv = focus
		if e.name != "nodesByType" && e.name != "nodesByName" && this != nil {
			recv = this
		}
	} else {
		var err error
		if recv, err = ev.eval(e.args[0], focus, this); err != nil {
			return nil, err
		}
	}
	d := ev.d
	switch e.name {
	case "where":
		var out []item
		for _, x := range recv {
			one := []item{x}
			t, err := ev.truth(e.args[1], one, one)
			if err != nil {
				return nil, err
			}
			if t == 1 {
				out = append(out, x)
			}
		}
		return out, nil
	case "ofType":
		return ev.ofType(recv, e.args[1].name, e.typ), nil
	case "first":
		if len(recv) == 0 {
			return nil, nil
		}
		return recv[:1], nil
	case "last":
		if len(recv) == 0 {
			return nil, nil
		}
		return recv[len(recv)-1:], nil
	case "nodesByType", "nodesByName":
		t := e.typ
		if e.name == "nodesByType" && t == noType {
			return nil, nil
		}
		var out []item
		if e.name == "nodesByType" {
			d.ofType(ev.root, t, func(k int32) { out = append(out, item{node: k}) })
			return out, nil
		}
		d.descendants(ev.root, func(k int32) {
			if d.nameID[k] == e.nameID {
				out = append(out, item{node: k})
			}
		})
		return out, nil
	case "exists":
		return boolean(len(recv) > 0), nil
	case "empty":
		return boolean(len(recv) == 0), nil
	case "count":
		return []item{{node: -1, kind: litNumber, f: float64(len(recv))}}, nil
	case "not":
		if len(recv) == 0 {
			return nil, nil
		}
		v := ev.value(recv[0])
		if len(recv) > 1 || v.kind != litBool {
			return nil, evalErr("not() needs one boolean")
		}
		return boolean(!v.b), nil
	}
	return ev.stringCall(e, recv, this)
}

// stringCall evaluates a string function: on one string (or a date, or a number's text
// for toString).
func (ev *evaluator) stringCall(e *expr, recv, this []item) ([]item, error) {
	if len(recv) == 0 {
		return nil, nil
	}
	if len(recv) > 1 {
		return nil, evalErr("%s() needs one value, got %d", e.name, len(recv))
	}
	v := ev.value(recv[0])
	if e.name == "toString" {
		switch v.kind {
		case litNumber:
			if v.s == "" {
				v.s = strconv.FormatFloat(v.f, 'f', -1, 64)
			}
		case litBool:
			v.s = strconv.FormatBool(v.b)
		}
		return []item{{node: -1, kind: litString, s: v.s}}, nil
	}
	if v.kind != litString && v.kind != litDate {
		return nil, evalErr("%s() needs a string", e.name)
	}
	args := make([]item, 0, 2)
	for _, a := range e.args[1:] {
		c, err := ev.eval(a, this, this)
		if err != nil {
			return nil, err
		}
		if len(c) != 1 {
			return nil, nil
		}
		args = append(args, ev.value(c[0]))
	}
	str := func(k int) (string, error) {
		if args[k].kind != litString {
			return "", evalErr("%s() takes a string argument", e.name)
		}
		return args[k].s, nil
	}
	s := v.s
	switch e.name {
	case "length":
		return []item{{node: -1, kind: litNumber, f: float64(len([]rune(s)))}}, nil
	case "upper":
		return []item{{node: -1, kind: litString, s: strings.ToUpper(s)}}, nil
	case "lower":
		return []item{{node: -1, kind: litString, s: strings.ToLower(s)}}, nil
	case "substring":
		r := []rune(s)
		if args[0].kind != litNumber {
			return nil, evalErr("substring() takes numbers")
		}
		from := int(args[0].f)
		if from < 0 || from >= len(r) {
			return nil, nil
		}
		to := len(r)
		if len(args) == 2 {
			if args[1].kind != litNumber {
				return nil, evalErr("substring() takes numbers")
			}
			to = min(from+max(int(args[1].f), 0), len(r))
		}
		return []item{{node: -1, kind: litString, s: string(r[from:to])}}, nil
	}
	return ev.stringArgsCall(e.name, s, str)
}

// stringArgsCall evaluates the string functions that take one or two string arguments.
func (ev *evaluator) stringArgsCall(name, s string, str func(int) (string, error)) ([]item, error) {
	a0, err := str(0)
	if err != nil {
		return nil, err
	}
	switch name {
	case "startsWith":
		return boolean(strings.HasPrefix(s, a0)), nil
	case "endsWith":
		return boolean(strings.HasSuffix(s, a0)), nil
	case "contains":
		return boolean(strings.Contains(s, a0)), nil
	case "matches":
		re, err := ev.regexp(a0)
		if err != nil {
			return nil, err
		}
		return boolean(re.MatchString(s)), nil
	}
	a1, err := str(1)
	if err != nil {
		return nil, err
	}
	switch name {
	case "replace":
		return []item{{node: -1, kind: litString, s: strings.ReplaceAll(s, a0, a1)}}, nil
	case "replaceMatches":
		re, err := ev.regexp(a0)
		if err != nil {
			return nil, err
		}
		return []item{{node: -1, kind: litString, s: re.ReplaceAllString(s, a1)}}, nil
	}
	return nil, evalErr("function %s() is not supported", name)
}

// regexp compiles pattern once. Patterns come from the configuration; they are
// compiled when first used, so a bad one rejects the records that reach it.
func (ev *evaluator) regexp(pattern string) (*regexp.Regexp, error) {
	if re, ok := ev.regexps[pattern]; ok {
		return re, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, evalErr("regular expression: %v", err)
	}
	if ev.regexps == nil {
		ev.regexps = map[string]*regexp.Regexp{}
	}
	ev.regexps[pattern] = re
	return re, nil
}
