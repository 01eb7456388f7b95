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
