package arena_test

import (
	"bytes"
	"testing"

	"github.com/fhirstream/fhirstream/internal/arena"
)

// Copies are equal to their sources, independent of them and of each other (appending
// to one never reaches the next), and follow bytes.Clone for nil and empty input.
func TestCopies(t *testing.T) {
	a := arena.Bytes{Chunk: 64}
	var srcs, copies [][]byte
	for i := range 40 {
		src := bytes.Repeat([]byte{byte('a' + i%26)}, i%12+1)
		if i%10 == 9 {
			src = bytes.Repeat([]byte{'L'}, 30) // more than an eighth of the chunk
		}
		c := a.Copy(src)
		if cap(c) != len(src) {
			t.Fatalf("copy %d: capacity %d, want exactly %d", i, cap(c), len(src))
		}
		srcs, copies = append(srcs, src), append(copies, c)
	}
	for i := range srcs {
		srcs[i][0] = '!'
	}
	for i, c := range copies {
		_ = append(c, "overwrite?"...)
		if c[0] == '!' || !bytes.Equal(c[1:], srcs[i][1:]) {
			t.Fatalf("copy %d is %q, not an independent copy of its source", i, c)
		}
	}
	for i := range copies[:len(copies)-1] {
		if want := srcs[i+1][1:]; !bytes.Equal(copies[i+1][1:], want) {
			t.Fatalf("copy %d changed by an append to copy %d", i+1, i)
		}
	}
	if a.Copy(nil) != nil {
		t.Error("a copy of nil is not nil")
	}
	if c := a.Copy([]byte{}); c == nil || len(c) != 0 {
		t.Error("a copy of an empty slice is not empty and non-nil")
	}
}
