package producer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type closeRecorder struct {
	io.Reader
	closed chan struct{}
}

func (c *closeRecorder) Close() error { close(c.closed); return nil }

func TestReadAheadDeliversBytesThenError(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB: several buffers
	boom := errors.New("connection reset")
	src := &closeRecorder{Reader: io.MultiReader(iotest.HalfReader(bytes.NewReader(data)), iotest.ErrReader(boom)), closed: make(chan struct{})}
	r := newReadAhead(src)
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want the source's", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want the source's %d unchanged", len(got), len(data))
	}
	r.Close()
	<-src.closed // the reading goroutine closes the source once it stops
}

func TestReadAheadCloseEarly(t *testing.T) {
	src := &closeRecorder{Reader: bytes.NewReader(bytes.Repeat([]byte("x"), 10<<20)), closed: make(chan struct{})}
	r := newReadAhead(src)
	buf := make([]byte, 10)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	r.Close()
	<-src.closed
}

func TestReconcileContinuedFiles(t *testing.T) {
	a := &fileRun{kind: kindOutput, organizedBy: "Patient", url: "a", index: 0}
	b := &fileRun{kind: kindOutput, organizedBy: "Patient", url: "b", index: 1, continued: true}
	a.next = b
	a.cp = checkpoint{Done: true, Read: 4, Published: 3, Headers: 1, FirstHeader: "Patient/1", LastHeader: "Patient/1"}
	b.cp = checkpoint{Done: true, Read: 3, Published: 2, Headers: 1, FirstHeader: "Patient/1", LastHeader: "Patient/1"}
	var s Summary
	s.fill([]*fileRun{a, b}, 0, 0, 0, 0)
	if !s.OK() {
		t.Fatalf("consistent continuation: %v", s.Mismatches)
	}
	if got := chains([]*fileRun{a, b}); len(got) != 1 || len(got[0]) != 2 || got[0][1] != b {
		t.Errorf("chains = %v, want one chain a, b", got)
	}

	b.cp.FirstHeader = "Patient/2" // b does not start with the block a ends with
	n := int64(3)
	a.expected = &n // the count without the header also reconciles
	s.fill([]*fileRun{a, b}, 0, 0, 0, 0)
	if len(s.Mismatches) != 1 || !strings.Contains(s.Mismatches[0], `instead of "Patient/1"`) {
		t.Errorf("mismatches %v", s.Mismatches)
	}
}

// The arena's pieces never overlap, and appending to one cannot write into another: a
// record's value and key must stay the bytes of its own line while the client holds it.
func TestLineArenaPiecesAreDisjoint(t *testing.T) {
	var a lineArena
	var pieces [][]byte
	for i, n := range []int{1, 937, 0, arenaBytes / 4, arenaBytes/4 + 1, 5000, 3 * arenaBytes, 17} {
		for range 40 {
			p := a.alloc(n)
			if len(p) != n || cap(p) != n {
				t.Fatalf("alloc(%d): len %d cap %d", n, len(p), cap(p))
			}
			for k := range p {
				p[k] = byte(i + len(pieces))
			}
			pieces = append(pieces, p)
		}
	}
	for _, p := range pieces[:len(pieces)-1] {
		_ = append(p, 0xff) // must reallocate, not write into the next piece
	}
	for j, p := range pieces {
		for k := range p {
			if p[k] != p[0] {
				t.Fatalf("piece %d (%d bytes) changed at %d", j, len(p), k)
			}
		}
	}
	seen := map[*lineRecord]bool{}
	for range 3*arenaRecords + 1 {
		r := a.record()
		if seen[r] || r.rec.Topic != "" || r.headers[0].Key != "" {
			t.Fatalf("record handed out twice or not zeroed")
		}
		r.rec.Topic, r.headers[0].Key = "x", "y"
		seen[r] = true
	}
}
