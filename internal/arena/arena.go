// Package arena hands out copies of byte slices carved from large chunks, so that many
// small copies that live and die together (a stage batch's state changes, the
// de-identified records of a batch) cost a few allocations instead of one each.
package arena

// DefaultChunk is Bytes.Chunk's default.
const DefaultChunk = 64 << 10

// Bytes hands out byte slices from chunks of Chunk bytes. Nothing written to it changes
// afterwards, and a chunk is never reused: a slice lives, and keeps its chunk alive, as
// long as anything refers to it. It is not safe for concurrent use.
type Bytes struct {
	// Chunk is the size of the chunks; 0 means DefaultChunk. A slice of more than an
	// eighth of it gets an allocation of its own, so that it does not end a chunk early.
	Chunk int
	buf   []byte
}

// Alloc returns n bytes, with a capacity of exactly n.
func (a *Bytes) Alloc(n int) []byte {
	chunk := a.Chunk
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	if n > chunk/8 {
		return make([]byte, n)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, chunk)
	}
	start := len(a.buf)
	a.buf = a.buf[:start+n]
	return a.buf[start : start+n : start+n]
}

// Copy returns a copy of b: nil for nil and empty for empty, as bytes.Clone.
func (a *Bytes) Copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) == 0 {
		return []byte{}
	}
	dst := a.Alloc(len(b))
	copy(dst, b)
	return dst
}
