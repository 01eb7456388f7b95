package producer

import (
	"io"
	"sync"
)

// readAhead reads its source in a goroutine of its own, a few buffers ahead of the
// consumer, so that downloading and decompressing a file overlaps with parsing and
// producing its lines. One big file (Observation is more than half of a typical export)
// then keeps two cores busy instead of one. Memory is bounded: readAheadBuffers buffers
// of readAheadSize bytes per file.
type readAhead struct {
	src    io.ReadCloser
	chunks chan readChunk
	free   chan []byte
	done   chan struct{}
	once   sync.Once

	cur  []byte // unread part of the chunk being consumed
	back []byte // that chunk's whole buffer, returned to free when consumed
	err  error  // the source's error, once reached
}

type readChunk struct {
	buf []byte
	err error
}

const (
	readAheadBuffers = 4
	readAheadSize    = 256 << 10
)

func newReadAhead(src io.ReadCloser) *readAhead {
	r := &readAhead{src: src, chunks: make(chan readChunk, readAheadBuffers), free: make(chan []byte, readAheadBuffers), done: make(chan struct{})}
	for range readAheadBuffers {
		r.free <- make([]byte, readAheadSize)
	}
	go r.fill()
	return r
}

// fill is the reading goroutine. It alone touches src, closing it when it stops, so a
// source that is not safe for concurrent Read and Close (a gzip stream) never sees both.
func (r *readAhead) fill() {
	defer r.src.Close()
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.done:
			return
		}
		n, err := r.src.Read(buf)
		if n == 0 && err == nil {
			r.free <- buf
			continue
		}
		select {
		case r.chunks <- readChunk{buf: buf[:n], err: err}:
		case <-r.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (r *readAhead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.back != nil {
			r.free <- r.back[:cap(r.back)]
			r.back = nil
		}
		if r.err != nil {
			return 0, r.err
		}
		c := <-r.chunks
		r.cur, r.back, r.err = c.buf, c.buf, c.err
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the reading goroutine, which closes the source once its current Read
// returns (at the latest when the fetch's context ends).
func (r *readAhead) Close() error {
	r.once.Do(func() { close(r.done) })
	return nil
}
