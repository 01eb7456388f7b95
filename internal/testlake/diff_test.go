package testlake

import (
	"strings"
	"testing"
)

func TestDiffCountsDuplicatesAndTypes(t *testing.T) {
	a := Row{"id": int64(1), "x": 1.5}
	b := Row{"id": int64(2), "x": 1.5}
	if d := Diff([]Row{a, b}, []Row{b, a}, 5); d != "" {
		t.Fatalf("same rows in another order: %s", d)
	}
	if d := Diff([]Row{a, b}, []Row{a, a, b}, 5); !strings.Contains(d, "1 unexpected") {
		t.Fatalf("a doubled row must show: %q", d)
	}
	// An int and a float of the same value are different canonical values.
	if d := Diff([]Row{{"id": int64(1)}}, []Row{{"id": 1.0}}, 5); d == "" {
		t.Fatal("int64 1 and float 1.0 compared equal")
	}
	if d := Diff([]Row{a, b}, []Row{a}, 5); !strings.Contains(d, "1 missing") {
		t.Fatalf("a missing row must show: %q", d)
	}
}

func TestDecodeRowKeepsIntsAndFloatsApart(t *testing.T) {
	r, err := decodeRow([]byte(`{"i": 9007199254740993, "f": 2.0, "l": [1, 1.5], "s": {"n": 3}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r["i"] != int64(9007199254740993) {
		t.Errorf("i = %#v, want the exact int64", r["i"])
	}
	if r["f"] != 2.0 {
		t.Errorf("f = %#v, want float64 2", r["f"])
	}
	if l := r["l"].([]any); l[0] != int64(1) || l[1] != 1.5 {
		t.Errorf("l = %#v", l)
	}
	if s := r["s"].(map[string]any); s["n"] != int64(3) {
		t.Errorf("s = %#v", s)
	}
}
