package jsontree

import (
	"errors"
	"iter"
	"strconv"
)

// Value is a handle on one value of a Tree, for code that reads a document by paths
// (the shape of fastjson's API, which the OMOP mapper was first written against). A nil
// *Value is an absent value: its methods return the zero result. Handles and the
// strings they return are valid until the tree's next Parse.
type Value struct {
	t *Tree
	i int32
}

// handle returns the Value of node i. Handles live in the tree, one slot per node,
// filled when asked for: no allocation per lookup, and none for values never asked for.
func (t *Tree) handle(i int32) *Value {
	v := &t.values[i]
	v.t, v.i = t, i
	return v
}

// Root returns the document's root value: nil when the last Parse failed (the tree is
// then empty).
func (t *Tree) Root() *Value {
	if len(t.Nodes) == 0 {
		return nil
	}
	return t.handle(0)
}

// index follows keys from v through objects' members and returns the node reached,
// or -1.
func (v *Value) index(keys []string) int32 {
	if v == nil {
		return -1
	}
	i := v.i
	for _, k := range keys {
		if i = v.t.Child(i, k); i < 0 {
			return -1
		}
	}
	return i
}

// Get returns the value at keys (member names, outermost first), or nil.
func (v *Value) Get(keys ...string) *Value {
	i := v.index(keys)
	if i < 0 {
		return nil
	}
	return v.t.handle(i)
}

// Exists reports whether there is a value at keys (null included).
func (v *Value) Exists(keys ...string) bool { return v.index(keys) >= 0 }

// Type returns the value's type; TypeNull for an absent value.
func (v *Value) Type() Type {
	if v == nil {
		return TypeNull
	}
	return v.t.Nodes[v.i].Type
}

// Key returns the member name of v in its object ("" for an array element).
func (v *Value) Key() string {
	if v == nil {
		return ""
	}
	return v.t.Key(v.i)
}

// String returns the string at keys, "" when absent or not a string. It is a view of
// the document (see Tree.Parse), not a copy.
func (v *Value) String(keys ...string) string {
	s, _ := v.LookupString(keys...)
	return s
}

// LookupString returns the string at keys and whether there is one (an empty string
// is one).
func (v *Value) LookupString(keys ...string) (string, bool) {
	i := v.index(keys)
	if i < 0 || v.t.Nodes[i].Type != TypeString {
		return "", false
	}
	return v.t.Str(i), true
}

// Bool reports whether the value at keys is true.
func (v *Value) Bool(keys ...string) bool {
	i := v.index(keys)
	return i >= 0 && v.t.Nodes[i].Type == TypeTrue
}

var errNotNumber = errors.New("not a JSON number")

// Float64 returns the number at keys.
func (v *Value) Float64(keys ...string) (float64, error) {
	i := v.index(keys)
	if i < 0 || v.t.Nodes[i].Type != TypeNumber {
		return 0, errNotNumber
	}
	return strconv.ParseFloat(v.t.Str(i), 64)
}

// Len returns the number of elements of the array, or members of the object, at keys.
func (v *Value) Len(keys ...string) int {
	i := v.index(keys)
	if i < 0 {
		return 0
	}
	n := 0
	for j, end := i+1, v.t.Nodes[i].End; j < end; j = v.t.Nodes[j].End {
		n++
	}
	return n
}

// Elem returns element k of the array at keys, or nil.
func (v *Value) Elem(k int, keys ...string) *Value {
	for n, e := range v.Elems(keys...) {
		if n == k {
			return e
		}
	}
	return nil
}

// Elems yields the index and value of each element of the array at keys; nothing when
// there is no array there.
func (v *Value) Elems(keys ...string) iter.Seq2[int, *Value] {
	return func(yield func(int, *Value) bool) {
		i := v.index(keys)
		if i < 0 || v.t.Nodes[i].Type != TypeArray {
			return
		}
		n := 0
		for j, end := i+1, v.t.Nodes[i].End; j < end; j = v.t.Nodes[j].End {
			if !yield(n, v.t.handle(j)) {
				return
			}
			n++
		}
	}
}

// Members yields the name and value of each member of the object at keys, in document
// order; nothing when there is no object there.
func (v *Value) Members(keys ...string) iter.Seq2[string, *Value] {
	return func(yield func(string, *Value) bool) {
		i := v.index(keys)
		if i < 0 || v.t.Nodes[i].Type != TypeObject {
			return
		}
		for j, end := i+1, v.t.Nodes[i].End; j < end; j = v.t.Nodes[j].End {
			if !yield(v.t.Key(j), v.t.handle(j)) {
				return
			}
		}
	}
}
