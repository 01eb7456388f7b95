package producer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/fhirstream/fhirstream/producer/bulk"
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
	s.fill([]*fileRun{a, b}, 0, 0, 0, 0, nil)
	if !s.OK() {
		t.Fatalf("consistent continuation: %v", s.Mismatches)
	}
	if got := chains([]*fileRun{a, b}); len(got) != 1 || len(got[0]) != 2 || got[0][1] != b {
		t.Errorf("chains = %v, want one chain a, b", got)
	}

	b.cp.FirstHeader = "Patient/2" // b does not start with the block a ends with
	n := int64(3)
	a.expected = &n // the count without the header also reconciles
	s.fill([]*fileRun{a, b}, 0, 0, 0, 0, nil)
	if len(s.Mismatches) != 1 || !strings.Contains(s.Mismatches[0], `instead of "Patient/1"`) ||
		!strings.Contains(s.Mismatches[0], "--accept-quirk continues-in-file-off-by-one") {
		t.Errorf("mismatches %v", s.Mismatches)
	}
	// Accepted, the quirk is a warning and the run reconciles.
	s.fill([]*fileRun{a, b}, 0, 0, 0, 0, bulk.Quirks{bulk.QuirkContinuesOffByOne})
	if !s.OK() || len(s.Accepted) != 1 {
		t.Errorf("accepted quirk: OK %v, mismatches %v, accepted %v", s.OK(), s.Mismatches, s.Accepted)
	}
}

// TestVerdict checks the run's verdict: FAILED whenever a file was not read to its end,
// the run failed, or a mismatch was not accepted; never OK beside a shortfall.
func TestVerdict(t *testing.T) {
	count := int64(38483)
	unread := &fileRun{kind: kindOutput, typ: "Observation", url: "https://ehr/files/1?sig=SECRET", expected: &count}
	var s Summary
	s.fill([]*fileRun{unread}, 0, 0, 0, 0, nil)
	s.Failed = "file Observation https://ehr/files/1: URL expired"
	var out strings.Builder
	s.WriteTable(&out)
	if s.OK() || !strings.Contains(out.String(), "reconciliation: FAILED") || !strings.Contains(out.String(), "1 of 1 files were not read to the end") {
		t.Errorf("a run that read 0 of %d: OK %v\n%s", count, s.OK(), out.String())
	}
	if strings.Contains(out.String(), "SECRET") || strings.Contains(out.String(), "reconciliation: OK") {
		t.Errorf("table shows the signed URL or OK:\n%s", out.String())
	}

	wrong := int64(5)
	counted := &fileRun{kind: kindOutput, typ: "Patient", url: "https://ehr/files/2", expected: &wrong, cp: checkpoint{Done: true, Read: 4, Published: 4}}
	s = Summary{}
	s.fill([]*fileRun{counted}, 0, 0, 0, 0, bulk.Quirks{bulk.QuirkManifestCount})
	out.Reset()
	s.WriteTable(&out)
	if !s.OK() || !strings.Contains(out.String(), "reconciliation: OK, with 1 mismatches of accepted server quirks") ||
		!strings.Contains(out.String(), "warning: output https://ehr/files/2: manifest count 5, 4 lines read (accepted: manifest-count)") {
		t.Errorf("accepted count quirk:\n%s", out.String())
	}
}

// The arena's pieces never overlap, and appending to one cannot write into another: a
// record's value and key must stay the bytes of its own line while the client holds it.
func TestLineArenaPiecesAreDisjoint(t *testing.T) {
	var a lineArena
	var pieces [][]byte
	for i, n := range []int{1, 937, 0, arenaBytes / 4, arenaBytes/4 + 1, 5000, 3 * arenaBytes, 17} {
		for range 40 {
			p, _ := a.alloc(n)
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

// A byte block of a lineArena with a pool is handed out again only when the arena has
// moved on from it and every piece of it was released, as the produce promise does once
// the client is done with the piece's record.
func TestBlockPoolReusesOnlyReleasedBlocks(t *testing.T) {
	var pool blockPool
	a := lineArena{blocks: &pool}
	const line = 1000
	perBlock := arenaBytes / line
	var first *arenaBlock
	var held []*arenaBlock // one per piece, like records not yet acknowledged
	for range 3 * perBlock {
		p, b := a.alloc(line)
		if first == nil {
			first = b
		}
		for k := range p {
			p[k] = 'a'
		}
		held = append(held, b)
	}
	if len(pool.free) != 0 {
		t.Fatalf("%d blocks free while every piece is held", len(pool.free))
	}
	// All but one piece of the first block acknowledged: still not free.
	for _, b := range held[:perBlock-1] {
		b.release()
	}
	if len(pool.free) != 0 {
		t.Fatal("a block was freed with a piece still held")
	}
	held[perBlock-1].release()
	if len(pool.free) != 1 || pool.free[0] != first {
		t.Fatalf("the first block, all released, is not the one free block (%d free)", len(pool.free))
	}
	// The third block is still the arena's: releasing its pieces does not free it.
	for _, b := range held[perBlock:] {
		b.release()
	}
	if len(pool.free) != 2 {
		t.Fatalf("%d free blocks, want 2 (the third is still being filled)", len(pool.free))
	}
	a.release()
	if len(pool.free) != 3 || a.cur != nil {
		t.Fatalf("after the arena let go: %d free, want 3", len(pool.free))
	}
	last := pool.free[len(pool.free)-1]
	p, b := a.alloc(line)
	if b != last {
		t.Fatalf("a new piece did not come from a recycled block")
	}
	if len(p) != line || cap(p) != line || b.refs.Load() != 2 {
		t.Fatalf("recycled piece: len %d cap %d, block users %d; want %d, %d, 2", len(p), cap(p), b.refs.Load(), line, line)
	}
	// A piece of its own (over a quarter block) belongs to no block.
	if _, b := a.alloc(arenaBytes/4 + 1); b != nil {
		t.Error("a piece of its own came from a block")
	}
}
