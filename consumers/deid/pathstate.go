package deid

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
)

// Deciding rules while typing.
//
// The anonymizer applies rules one after another, and the first rule to reach a value
// decides it: a rule reaches the values its path selects and everything below them.
// What a plain path selects depends only on the path of element names and types from
// the resource down to a value, so the rule deciding a value is the first of the rules
// whose paths select it or one of its ancestors. The typing pass (document.annotate)
// works that out as it goes down the tree: each value carries a path state (which rules
// can still match further down, and which matched here), and a transition per member
// name says what the member is (its FHIR type) and how the state moves. Transitions are
// made once per state and member name and remembered, so a resource costs one lookup
// per member, the same as typing alone, and the rules cost nothing per value but the
// method of the deciding rule. Engine.decideAndApply then applies each value's deciding
// rule in one pass.
//
// Rules whose path the states do not follow (see fastPlan), and documents of unusual
// shape (a path continuing into a contained resource, a companion paired with a
// primitive of the other shape), take the rule-by-rule procedure (Engine.applyRules),
// which is the specification the states follow; so does a document on which a method
// fails, so that the error reported is the first rule's, as there.

// noRule is the deciding rule of a value no rule reaches.
const noRule = int32(math.MaxInt32)

// fastPlan is a rule's path as path states follow it: a plan (see plan), and an
// optional where() condition on the selected value that reads only that value and what
// is below it. start is planNone for a path the states cannot follow.
type fastPlan struct {
	plan
	where *expr
}

// fastPlanOf returns x's fastPlan (start planNone when there is none).
func (e *Engine) fastPlanOf(x *expr) fastPlan {
	if p := e.planOf(x); p.start != planNone {
		return fastPlan{plan: p}
	}
	if x.op == "call" && x.name == "where" && x.args[0] != nil && local(x.args[1]) {
		if p := e.planOf(x.args[0]); p.start != planNone {
			return fastPlan{plan: p, where: x.args[1]}
		}
	}
	return fastPlan{}
}

// local reports whether condition x reads only its focus and what is below it: not
// nodesByType or nodesByName, which search the whole resource.
func local(x *expr) bool {
	if x == nil {
		return true
	}
	if x.op == "call" && (x.name == "nodesByType" || x.name == "nodesByName") {
		return false
	}
	for _, a := range x.args {
		if !local(a) {
			return false
		}
	}
	return true
}

// typeRules are the rules of one resource type as path states use them.
type typeRules struct {
	// general says a rule of the type has no fastPlan: its documents take the
	// rule-by-rule procedure.
	general bool
	root    []int32            // rules whose path starts at the resource, by index
	byType  map[typeID][]int32 // nodesByType rules by the type they start at
}

// compileTypeRules sets e.typeRules from e.byType.
func (e *Engine) compileTypeRules() {
	e.typeRules = make([]typeRules, len(e.s.types))
	for t := range e.s.types {
		tr := &e.typeRules[t]
		for _, r := range e.byType[t] {
			switch r.fast.start {
			case planNone:
				tr.general = true
			case planRoot:
				if r.fast.startType == e.s.domainResource && typeID(t) == e.s.bundle {
					continue // as runPlan: a Bundle is not a DomainResource
				}
				tr.root = append(tr.root, int32(r.index))
			case planByType:
				if tr.byType == nil {
					tr.byType = map[typeID][]int32{}
				}
				tr.byType[r.fast.startType] = append(tr.byType[r.fast.startType], int32(r.index))
			}
		}
	}
}

// partial is a rule whose path has matched its first pos steps down to a value.
type partial struct{ rule, pos int32 }

// pathState is what the typing pass knows at an object value: the type its members
// belong to, the resource type whose rules apply, and the rules partly matched.
type pathState struct {
	typ      typeID
	root     typeID
	partials []partial
	next     map[string]*transition
	// first is the transition of the first member the last object in this state had:
	// with transition.after, a guess at the next member that saves the lookup when
	// objects list their members in the same order (as a producer's resources do).
	first *transition
	// At a resource's root: the rule matching the root itself, conditional ones, and
	// whether the type's rules need the rule-by-rule procedure.
	rootMatch int32
	rootWhere []int32
	general   bool
}

// transition is what a member name means in a path state.
type transition struct {
	key       string
	after     *transition // the member that followed this one last time
	m         member
	companion bool // "_name": the primitive's id and extensions
	resource  bool // a resource (contained, a Bundle entry's): its own root state
	// crosses says a rule of the enclosing resource reaches into the resource.
	crosses bool
	// item is the state of the member's values when they are objects; nonItem that of
	// a companion whose primitive is there (rules reach it only through the primitive).
	item, nonItem *pathState
	match         int32   // the first rule selecting the member's values, or noRule
	where         []int32 // rules selecting them if their condition holds
	// What the one-pass path reads of m, kept here to save a lookup per value.
	name      int32 // m.elem.id
	primitive bool  // m.typ is a primitive type
	freeText  bool  // m's values are free text (document.freeText)
}

// maxTransitions bounds a worker's remembered transitions; past it they are dropped and
// made again (valid member names are finite, so this is a guard, not a working limit).
const maxTransitions = 1 << 16

// automaton is one worker's path states, made as documents need them.
type automaton struct {
	e      *Engine
	roots  []*pathState // by resource type
	states map[string]*pathState
	count  int
	key    []byte
}

func (a *automaton) init(e *Engine) {
	a.e = e
	a.roots = make([]*pathState, len(e.s.types))
	a.states = map[string]*pathState{}
	a.count = 0
}

// trim drops the states when there are too many transitions; called between documents.
func (a *automaton) trim() {
	if a.count > maxTransitions {
		a.init(a.e)
	}
}

// rootState is the state at the root of a resource of type t.
func (a *automaton) rootState(t typeID) *pathState {
	if st := a.roots[t]; st != nil {
		return st
	}
	tr := &a.e.typeRules[t]
	st := &pathState{typ: t, root: t, rootMatch: noRule, general: tr.general}
	for _, r := range tr.root {
		p := &a.e.rules[r].fast
		switch {
		case len(p.steps) > 0:
			st.partials = append(st.partials, partial{r, 0})
		case p.ofType != noType && !a.e.s.is(t, p.ofType):
		case p.where != nil:
			st.rootWhere = append(st.rootWhere, r)
		default:
			st.rootMatch = min(st.rootMatch, r)
		}
	}
	a.roots[t] = st
	return st
}

// state returns the state of an object of type typ under root's rules with partials.
func (a *automaton) state(typ, root typeID, partials []partial) *pathState {
	slices.SortFunc(partials, func(x, y partial) int {
		if x.rule != y.rule {
			return int(x.rule - y.rule)
		}
		return int(x.pos - y.pos)
	})
	k := binary.LittleEndian.AppendUint32(a.key[:0], uint32(typ))
	k = binary.LittleEndian.AppendUint32(k, uint32(root))
	for _, p := range partials {
		k = binary.LittleEndian.AppendUint32(k, uint32(p.rule))
		k = binary.LittleEndian.AppendUint32(k, uint32(p.pos))
	}
	a.key = k
	if st, ok := a.states[string(k)]; ok {
		return st
	}
	st := &pathState{typ: typ, root: root, partials: partials}
	a.states[string(k)] = st
	return st
}

// step returns what member key means in st, or nil when the type has no such member
// (the caller reports which error). prev is the transition of the member before it in
// the same object (nil for the first).
func (a *automaton) step(st *pathState, prev *transition, key string) *transition {
	guess := st.first
	if prev != nil {
		guess = prev.after
	}
	if guess != nil && guess.key == key {
		return guess
	}
	tr, ok := st.next[key]
	if !ok {
		if tr = a.make(st, key); tr == nil {
			return nil
		}
	}
	if prev == nil {
		st.first = tr
	} else {
		prev.after = tr
	}
	return tr
}

func (a *automaton) make(st *pathState, key string) *transition {
	s := a.e.s
	name, companion := key, false
	if len(key) > 1 && key[0] == '_' {
		name, companion = key[1:], true
	}
	m, ok := s.types[st.typ].members[name]
	if !ok || companion && !s.types[m.typ].primitive {
		return nil
	}
	tr := &transition{key: strings.Clone(key), m: m, companion: companion, resource: m.typ == s.resourceT, match: noRule,
		name: m.elem.id, primitive: s.types[m.typ].primitive, freeText: s.freeText(m.typ, m.elem.id)}
	rules := a.e.rules
	var next []partial
	matched := func(r int32) {
		p := &rules[r].fast
		switch {
		case p.ofType != noType && !s.is(m.typ, p.ofType):
		case p.where != nil:
			tr.where = append(tr.where, r)
		default:
			tr.match = min(tr.match, r)
		}
	}
	for _, pt := range st.partials {
		p := &rules[pt.rule].fast
		if p.steps[pt.pos] != m.elem.id {
			continue
		}
		if int(pt.pos)+1 == len(p.steps) {
			matched(pt.rule)
		} else {
			next = append(next, partial{pt.rule, pt.pos + 1})
		}
	}
	switch {
	case tr.resource:
		// Its values are resources: their own rules start afresh (a resource root is
		// never a nodesByType value of the enclosing resource).
		tr.crosses = len(next) > 0 || tr.match != noRule || len(tr.where) > 0
	default:
		for _, r := range a.e.typeRules[st.root].byType[m.typ] {
			if len(rules[r].fast.steps) == 0 {
				matched(r)
			} else {
				next = append(next, partial{r, 0})
			}
		}
		switch {
		case companion:
			tr.item = a.state(s.element, st.root, next)
			tr.nonItem = a.state(s.element, st.root, nil)
		case !s.types[m.typ].primitive:
			tr.item = a.state(m.typ, st.root, next)
		}
	}
	if st.next == nil {
		st.next = map[string]*transition{}
	}
	st.next[tr.key] = tr
	a.count++
	return tr
}
