package deid

import (
	_ "embed"
	"fmt"
	"strings"
	"sync"
)

// r4types is the FHIR R4 element table (see internal/r4gen): which data type every
// element of every resource and data type has. It is all of the FHIR model the stage
// needs: rules select elements by type (nodesByType('HumanName')) and methods act by
// type (dateShift on date, dateTime and instant), so each JSON value's type is looked
// up from its parent's type and its member name.
//
//go:embed r4types.txt
var r4types string

// typeID indexes schema.types; noType marks a value whose type is unknown.
type typeID int32

const noType typeID = -1

// elemDef is one element of a type: its FHIRPath name ("value" for value[x]), its
// types (several for a choice), and whether it repeats.
type elemDef struct {
	name   string
	id     int32 // name's index in schema.names: values compare names as numbers
	types  []typeID
	choice bool
	many   bool
}

// member is what a JSON member name means in a type: the element and, for a choice
// (valueQuantity), the one type the name selects.
type member struct {
	elem *elemDef
	typ  typeID
}

type typeDef struct {
	name      string
	primitive bool
	resource  bool // a resource type (its JSON objects carry resourceType)
	// members maps JSON member names to elements: "valueQuantity" → value[x] as
	// Quantity, "name" → name.
	members map[string]member
	// base is the type this one constrains for ofType/as (Age is a Quantity), or noType.
	base typeID
}

// schema is the parsed element table.
type schema struct {
	types  []typeDef
	byName map[string]typeID
	// nameIDs interns element names (see elemDef.id).
	nameIDs map[string]int32
	// resourceT is the pseudo-type "Resource" elements (contained, Bundle.entry.resource)
	// have; their JSON object's resourceType names the real type.
	resourceT typeID
	// well-known types the methods look for.
	date, dateTime, instant, xhtml, str, markdown, decimal, integer, unsignedInt, positiveInt typeID
	element, reference, narrative, annotation, attachment, age, address, extension, quantity  typeID
	patient, bundle, domainResource                                                           typeID
}

var (
	r4Once   sync.Once
	r4Schema *schema
	r4Err    error
)

// loadR4 parses the embedded table once.
func loadR4() (*schema, error) {
	r4Once.Do(func() { r4Schema, r4Err = parseSchema(r4types) })
	return r4Schema, r4Err
}

func parseSchema(text string) (*schema, error) {
	s := &schema{byName: map[string]typeID{}, nameIDs: map[string]int32{}}
	id := func(name string) typeID {
		if t, ok := s.byName[name]; ok {
			return t
		}
		t := typeID(len(s.types))
		s.types = append(s.types, typeDef{name: name, members: map[string]member{}, base: noType})
		s.byName[name] = t
		return t
	}
	type pending struct {
		owner typeID
		name  string
		codes []string
		many  bool
	}
	var elems []pending
	var cur typeID = noType
	var aliases [][2]string
	for n, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '@' {
			name, rest, _ := strings.Cut(line[1:], " ")
			cur = id(name)
			switch {
			case rest == "primitive":
				s.types[cur].primitive = true
			case strings.HasPrefix(rest, "="):
				aliases = append(aliases, [2]string{name, rest[1:]})
			case rest != "":
				return nil, fmt.Errorf("r4types.txt line %d: %q", n+1, line)
			}
			continue
		}
		if cur == noType {
			return nil, fmt.Errorf("r4types.txt line %d: element before any type", n+1)
		}
		name, codes, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("r4types.txt line %d: %q", n+1, line)
		}
		many := strings.HasSuffix(codes, "*")
		elems = append(elems, pending{cur, name, strings.Split(strings.TrimSuffix(codes, "*"), "|"), many})
	}
	for _, e := range elems {
		d := &elemDef{name: strings.TrimSuffix(e.name, "[x]"), choice: strings.HasSuffix(e.name, "[x]"), many: e.many}
		d.id = s.nameID(d.name)
		for _, c := range e.codes {
			d.types = append(d.types, id(c))
		}
		owner := &s.types[e.owner]
		if d.choice {
			for i, c := range e.codes {
				owner.members[d.name+strings.ToUpper(c[:1])+c[1:]] = member{d, d.types[i]}
			}
		} else {
			owner.members[d.name] = member{d, d.types[0]}
		}
	}
	for _, a := range aliases {
		t, base := id(a[0]), id(a[1])
		s.types[t].members, s.types[t].base = s.types[base].members, base
	}
	// Quantity's profiles: ofType(Quantity) and "as Quantity" take them too.
	for _, name := range []string{"Age", "Count", "Distance", "Duration"} {
		if t, ok := s.byName[name]; ok {
			s.types[t].base = s.byName["Quantity"]
		}
	}
	// A resource type is one whose elements include the resource's own (Resource has
	// id and meta; DomainResource adds text): any type with a "meta" of type Meta and
	// an upper-case name without a dot.
	meta := s.byName["Meta"]
	for i := range s.types {
		t := &s.types[i]
		if m, ok := t.members["meta"]; ok && m.typ == meta && !strings.Contains(t.name, ".") {
			t.resource = true
		}
	}
	for _, w := range []struct {
		dst  *typeID
		name string
	}{
		{&s.resourceT, "Resource"}, {&s.date, "date"}, {&s.dateTime, "dateTime"}, {&s.instant, "instant"},
		{&s.xhtml, "xhtml"}, {&s.str, "string"}, {&s.markdown, "markdown"}, {&s.decimal, "decimal"},
		{&s.integer, "integer"}, {&s.unsignedInt, "unsignedInt"}, {&s.positiveInt, "positiveInt"},
		{&s.element, "Element"}, {&s.reference, "Reference"}, {&s.narrative, "Narrative"},
		{&s.annotation, "Annotation"}, {&s.attachment, "Attachment"}, {&s.age, "Age"},
		{&s.address, "Address"}, {&s.extension, "Extension"}, {&s.quantity, "Quantity"},
		{&s.patient, "Patient"}, {&s.bundle, "Bundle"}, {&s.domainResource, "DomainResource"},
	} {
		t, ok := s.byName[w.name]
		if !ok {
			return nil, fmt.Errorf("r4types.txt has no type %s", w.name)
		}
		*w.dst = t
	}
	for i := range s.types {
		t := &s.types[i]
		if !t.primitive && len(t.members) == 0 && t.name != "Resource" && t.name != "Element" && t.name != "BackboneElement" {
			return nil, fmt.Errorf("r4types.txt: type %s is used but never defined", t.name)
		}
	}
	return s, nil
}

// nameID returns the id of element name n, adding it at parse time.
func (s *schema) nameID(n string) int32 {
	if id, ok := s.nameIDs[n]; ok {
		return id
	}
	id := int32(len(s.nameIDs))
	s.nameIDs[n] = id
	return id
}

// lookupName returns the id of element name n, or noName when no element has it.
func (s *schema) lookupName(n string) int32 {
	if id, ok := s.nameIDs[n]; ok {
		return id
	}
	return noName
}

// noName is the id of a name no element has: it selects nothing. anyName selects all.
const (
	noName  int32 = -2
	anyName int32 = -1
)

// name returns the name of type t.
func (s *schema) name(t typeID) string {
	if t == noType {
		return "?"
	}
	return s.types[t].name
}

// is reports whether t is want or constrains it (ofType, as).
func (s *schema) is(t, want typeID) bool {
	for ; t != noType; t = s.types[t].base {
		if t == want {
			return true
		}
	}
	return false
}

func (s *schema) isNumeric(t typeID) bool {
	return t == s.decimal || t == s.integer || t == s.unsignedInt || t == s.positiveInt
}

func (s *schema) isDate(t typeID) bool { return t == s.date || t == s.dateTime || t == s.instant }
