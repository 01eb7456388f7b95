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

// A block of a lineArena with a pool is handed out again only after the pool was told the
// records in it were flushed: before that, the client may still be sending them.
func TestBlockPoolReusesOnlyAfterFlush(t *testing.T) {
	var pool blockPool
	a := lineArena{blocks: &pool}
	const line = 1000
	perBlock := arenaBytes / line
	var first []byte
	for i := range 3 * perBlock {
		p := a.alloc(line)
		if i == 0 {
			first = p
		}
		for k := range p {
			p[k] = 'a'
		}
	}
	if len(pool.inFlight) != 2 || len(pool.free) != 0 {
		t.Fatalf("after three blocks' worth: %d in flight, %d free; want 2 and 0", len(pool.inFlight), len(pool.free))
	}
	for _, p := range first {
		if p != 'a' {
			t.Fatal("a block in flight was written to")
		}
	}
	pool.flushed()
	if len(pool.inFlight) != 0 || len(pool.free) != 2 {
		t.Fatalf("after flushed: %d in flight, %d free; want 0 and 2", len(pool.inFlight), len(pool.free))
	}
	// The third block is the arena's current one: the next allocations fill it, and
	// only then does the arena take a recycled block.
	reused := map[*byte]bool{}
	for range 2 * perBlock {
		p := a.alloc(line)
		reused[&p[:1][0]] = true
	}
	if !reused[&first[0]] {
		t.Error("a flushed block was not reused")
	}
	// Those two blocks' worth retired the third block and the first recycled one; the
	// arena's current block is the second recycled one, retired by release.
	if len(pool.inFlight) != 2 || len(pool.free) != 0 {
		t.Fatalf("after reuse: %d in flight, %d free; want 2 and 0", len(pool.inFlight), len(pool.free))
	}
	a.release()
	if len(pool.inFlight) != 3 || a.bytes != nil {
		t.Errorf("release: %d in flight, arena keeps %d bytes; want 3 and none", len(pool.inFlight), cap(a.bytes))
	}
	// A piece of its own (over a quarter block) is never pooled.
	pool.retire(make([]byte, 0, arenaBytes+1))
	if len(pool.inFlight) != 3 {
		t.Errorf("a block of another size was pooled")
	}
}
