package rows

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/schemas"
)

// omopOutputs runs the OMOP mapping stage over FHIR resources and returns the records it
// emits: the rows the sink reads. Every third resource carries dedupe's previous-version
// header (copied to its rows), and every seventh is also sent as a deletion, so that
// retraction rows are among them.
func omopOutputs(t testing.TB, topics schemas.Topics, resources func(func(rt string, line []byte) error) error) []*stage.Record {
	t.Helper()
	mapper, err := omop.New(omop.Config{Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	out := &collect{}
	n := 0
	err = resources(func(rt string, line []byte) error {
		n++
		key := []byte(rt + "/" + idOf(line))
		in := &stage.Record{Topic: topics.Unique(rt), Key: key, Value: append([]byte(nil), line...), Timestamp: time.Unix(1700000000, 0)}
		if n%3 == 0 {
			in.Headers = append(in.Headers, stage.Header{Key: HeaderPreviousVersion, Value: []byte("1")})
		}
		if err := mapper.Process(context.Background(), in, nil, out); err != nil {
			if _, ok := stage.AsRejection(err); !ok {
				return err
			}
		}
		if n%7 == 0 {
			del := &stage.Record{Topic: topics.Unique(rt), Key: key, Timestamp: in.Timestamp,
				Headers: []stage.Header{{Key: schemas.HeaderDeleted, Value: []byte("true")}, {Key: HeaderPreviousVersion, Value: []byte("1")}}}
			if err := mapper.Process(context.Background(), del, nil, out); err != nil {
				if _, ok := stage.AsRejection(err); !ok {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out.recs {
		r.Partition, r.Offset = int32(i%6), int64(i)
	}
	return out.recs
}

type collect struct{ recs []*stage.Record }

func (c *collect) Emit(r stage.Record) { c.recs = append(c.recs, &r) }

// idOf is the resource's id, read crudely: the test data's first "id" member.
func idOf(line []byte) string {
	s := string(line)
	i := strings.Index(s, `"id":"`)
	if i < 0 {
		return "none"
	}
	s = s[i+6:]
	return s[:strings.IndexByte(s, '"')]
}

// TestOMOPFastPathMatchesGoavro holds the OMOP layer's fast path to the goavro path: on
// every row the mapping stage emits for generated patients (and the shared Synthea sets,
// when present), the fast path takes the row and its change (key, replacement, known,
// the Parquet values) equals the one goavro's decoding gives.
func TestOMOPFastPathMatchesGoavro(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	sources := map[string]func(func(string, []byte) error) error{
		"generated": func(f func(string, []byte) error) error {
			return synth.Generate(context.Background(), synth.Config{Patients: 60, Seed: 11}, f)
		},
	}
	if files, _ := filepath.Glob("../../../../shared/data/*/*.ndjson"); len(files) > 0 {
		sources["shared"] = func(f func(string, []byte) error) error { return readNDJSON(files, 20000, f) }
	} else {
		t.Log("shared Synthea data absent: generated patients only")
	}
	o, err := newOMOP(topics, topics.OMOPPattern(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range sources {
		recs := omopOutputs(t, topics, src)
		var rows, retractions int
		for _, r := range recs {
			l, err := o.Table(r.Topic)
			if err != nil {
				t.Fatal(err)
			}
			fast, ok := o.fast.change(r, l, nil, &decodeScratch{})
			if !ok {
				t.Fatalf("%s: the fast path declined a row the mapper emitted on %s", name, r.Topic)
			}
			slow, err := o.slowChange(context.Background(), r, l, nil)
			if err != nil {
				t.Fatalf("%s: goavro path: %v", name, err)
			}
			if fast.Key != slow.Key || fast.Replaces != slow.Replaces || fast.Known != slow.Known || !rowsEqual(fast.Row, slow.Row) {
				t.Fatalf("%s: %s row %s:\nfast %+v\ngoavro %+v", name, l.Name, slow.Key, fast, slow)
			}
			if slow.Row == nil {
				retractions++
			} else {
				rows++
			}
		}
		if rows < 1000 || retractions == 0 {
			t.Fatalf("%s: only %d rows and %d retractions compared", name, rows, retractions)
		}
		t.Logf("%s: %d rows and %d retractions alike", name, rows, retractions)
	}
}

// TestOMOPFastPathDeclinesWhatItCannotRead mutates rows at random (a byte changed, the
// value cut short or extended) and checks that whatever the fast path accepts, the
// goavro path accepts with the same change: the fast path may decline anything, never
// accept differently.
func TestOMOPFastPathDeclinesWhatItCannotRead(t *testing.T) {
	topics := schemas.MustTopics("fhir")
	recs := omopOutputs(t, topics, func(f func(string, []byte) error) error {
		return synth.Generate(context.Background(), synth.Config{Patients: 5, Seed: 3}, f)
	})
	o, err := newOMOP(topics, topics.OMOPPattern(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var accepted, declined int
	for round := 0; round < 20000; round++ {
		r := *recs[rng.IntN(len(recs))]
		v := append([]byte(nil), r.Value...)
		switch rng.IntN(3) {
		case 0:
			v[rng.IntN(len(v))] = byte(rng.IntN(256))
		case 1:
			v = v[:rng.IntN(len(v))]
		default:
			v = append(v, byte(rng.IntN(256)))
		}
		r.Value = v
		l, err := o.Table(r.Topic)
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := o.fast.change(&r, l, nil, &decodeScratch{})
		if !ok {
			declined++
			continue
		}
		accepted++
		slow, err := o.slowChange(context.Background(), &r, l, nil)
		if err != nil {
			t.Fatalf("fast path accepted %x, which goavro's path rejects: %v", v, err)
		}
		if fast.Key != slow.Key || fast.Replaces != slow.Replaces || fast.Known != slow.Known || !rowsEqual(fast.Row, slow.Row) {
			t.Fatalf("value %x:\nfast %+v\ngoavro %+v", v, fast, slow)
		}
	}
	if accepted == 0 || declined == 0 {
		t.Fatalf("%d mutations accepted, %d declined: the test exercises one side only", accepted, declined)
	}
	t.Logf("%d mutated values accepted alike, %d declined", accepted, declined)
}

// BenchmarkOMOPChange measures the OMOP layer's Change per row, by the fast path and by
// goavro's: go test -run '^$' -bench OMOPChange ./consumers/sink/rows
func BenchmarkOMOPChange(b *testing.B) {
	topics := schemas.MustTopics("fhir")
	recs := omopOutputs(b, topics, func(f func(string, []byte) error) error {
		return synth.Generate(context.Background(), synth.Config{Patients: 20, Seed: 7}, f)
	})
	o, err := newOMOP(topics, topics.OMOPPattern(), nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"fast", "goavro"} {
		b.Run(path, func(b *testing.B) {
			ctx := context.Background()
			dst := make(parquet.Row, 0, 64)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				r := recs[n%len(recs)]
				n++
				l, err := o.Table(r.Topic)
				if err != nil {
					b.Fatal(err)
				}
				if path == "fast" {
					_, err = o.Change(ctx, r, l, dst[:0])
				} else {
					_, err = o.slowChange(ctx, r, l, dst[:0])
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func rowsEqual(a, b parquet.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !parquet.Equal(a[i], b[i]) || a[i].Column() != b[i].Column() || a[i].DefinitionLevel() != b[i].DefinitionLevel() ||
			a[i].RepetitionLevel() != b[i].RepetitionLevel() || a[i].IsNull() != b[i].IsNull() {
			return false
		}
	}
	return true
}

// readNDJSON calls f for up to limit lines of files, with the resource type of each
// file (its name up to the first dot).
func readNDJSON(files []string, limit int, f func(string, []byte) error) error {
	n := 0
	for _, name := range files {
		rt, _, _ := strings.Cut(filepath.Base(name), ".")
		fh, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() && n < limit {
			n++
			if err := f(rt, sc.Bytes()); err != nil {
				fh.Close()
				return err
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	return nil
}
