package synth

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/schemas"
)

// withoutBad returns x's lines with the lines at the positions bad names removed.
func withoutBad(t *testing.T, x *export, bad []DeadLetter) map[string][][]byte {
	t.Helper()
	drop := map[string]map[int64]bool{}
	for _, d := range bad {
		if drop[d.File] == nil {
			drop[d.File] = map[int64]bool{}
		}
		drop[d.File][d.Line] = true
	}
	out := map[string][][]byte{}
	for typ, lines := range x.lines {
		for i, l := range lines {
			if !drop[typ][int64(i+1)] {
				out[typ] = append(out[typ], l)
			}
		}
	}
	return out
}

// generateRaw is generate without decoding: bad lines are not all JSON.
func generateRaw(t *testing.T, cfg Config) *export {
	t.Helper()
	x := &export{lines: map[string][][]byte{}}
	if err := Generate(context.Background(), cfg, func(typ string, line []byte) error {
		x.lines[typ] = append(x.lines[typ], bytes.Clone(line))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return x
}

// TestBadLinesLeaveGoodOutputUnchanged: the good resources of a run with bad lines are
// byte for byte those of the same run without, and ExpectedDeadLetters names exactly the
// lines that were added.
func TestBadLinesLeaveGoodOutputUnchanged(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ patients, bad int }{{45, 30}, {3, 14}, {0, 5}, {60, 1}} {
		cfg := Config{Patients: tc.patients, Seed: 7, Bad: tc.bad, LongLineBytes: 3000}
		bad, err := ExpectedDeadLetters(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) != tc.bad {
			t.Fatalf("%+v: %d expected dead letters, want %d", tc, len(bad), tc.bad)
		}
		mixed := generateRaw(t, cfg)
		clean := generateRaw(t, Config{Patients: tc.patients, Seed: 7})
		if got := withoutBad(t, mixed, bad); !reflect.DeepEqual(got, clean.lines) {
			t.Errorf("%+v: good lines differ from a run without bad lines", tc)
		}
		for _, d := range bad {
			lines := mixed.lines[d.File]
			if d.Line < 1 || d.Line > int64(len(lines)) {
				t.Fatalf("%+v: %s line %d does not exist", tc, d.File, d.Line)
			}
			if _, id, ok := bytes.Cut([]byte(d.Key), []byte("/")); ok && !bytes.Contains(lines[d.Line-1], id) {
				t.Errorf("%s line %d does not hold %s", d.File, d.Line, d.Key)
			}
		}
	}
}

// TestBadLinesCoverEveryClassAndSpread: BadKinds lines give each class once, every
// stage is represented, and the lines are spread over the export.
func TestBadLinesCoverEveryClassAndSpread(t *testing.T) {
	cfg := Config{Patients: 40, Seed: 3, LongLineBytes: 5000}
	cfg.Bad = BadKinds(cfg)
	bad, err := ExpectedDeadLetters(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	stages := map[string]bool{}
	for _, d := range bad {
		k := d.Stage + "/" + d.Class
		if seen[k] {
			t.Errorf("class %s twice in the first %d bad lines", k, cfg.Bad)
		}
		seen[k], stages[d.Stage] = true, true
	}
	if len(stages) != 3 || !seen["fetch/line-too-long"] {
		t.Errorf("stages %v, classes %v: want fetch, validate and omop, and the long line", stages, seen)
	}
	// Spread: the bad lines sit between different patients, not all at one end.
	var before []int
	for i := range cfg.Bad {
		before = append(before, badBefore(i, cfg.Bad, cfg.Patients))
	}
	if before[0] == before[len(before)-1] || before[len(before)-1] > cfg.Patients {
		t.Errorf("bad lines placed before patients %v", before)
	}
	if len(bad) != BadKinds(Config{})+1 {
		t.Errorf("the long line adds one class: %d, want %d", len(bad), BadKinds(Config{})+1)
	}
}

// TestBadLinesRejectedByTheRealStages runs every bad line through the checks that must
// reject it: the validator and the OMOP mapper, the very code the stages run, and for the
// fetcher its documented rules (its checks are unexported; the chaos test in
// cmd/fhirstream runs the real fetcher over these lines).
func TestBadLinesRejectedByTheRealStages(t *testing.T) {
	cfg := Config{Patients: 5, Seed: 11, LongLineBytes: 2048}
	cfg.Bad = 2 * BadKinds(cfg)
	mixed := generateRaw(t, cfg)
	bad, err := ExpectedDeadLetters(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := validate.New(validate.Options{})
	mapper, err := omop.New(omop.Config{Topics: schemas.MustTopics("fhir")})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range bad {
		line := mixed.lines[d.File][d.Line-1]
		switch d.Stage {
		case StageFetch:
			if got := fetchClass(d.File, line, 2047); got != d.Class {
				t.Errorf("%s line %d: the fetcher's rules give %q, want %q", d.File, d.Line, got, d.Class)
			}
			if d.Key != "" {
				t.Errorf("%s line %d: a line the fetcher rejects has no key, got %q", d.File, d.Line, d.Key)
			}
		case StageValidate:
			fails := v.Validate(d.File, []byte(d.Key), line)
			if len(fails) != 1 || fails[0].Class != d.Class || fails[0].Path != d.Path {
				t.Errorf("%s line %d: validate gives %v, want exactly %s at %s", d.File, d.Line, fails, d.Class, d.Path)
			}
		case StageOMOP:
			if fails := v.Validate(d.File, []byte(d.Key), line); len(fails) > 0 {
				t.Errorf("%s line %d: must pass validate, got %v", d.File, d.Line, fails)
			}
			var out discard
			err := mapper.Process(context.Background(), &stage.Record{Key: []byte(d.Key), Value: line}, nil, &out)
			rej, ok := stage.AsRejection(err)
			if !ok || rej.Class != d.Class || rej.Path != d.Path {
				t.Errorf("%s line %d: the OMOP mapper gives %v, want %s at %s", d.File, d.Line, err, d.Class, d.Path)
			}
		default:
			t.Errorf("unknown stage %q", d.Stage)
		}
		if d.ReachesUnique() != (d.Stage == StageOMOP) {
			t.Errorf("%+v: ReachesUnique %v", d, d.ReachesUnique())
		}
	}
}

type discard struct{}

func (discard) Emit(stage.Record) {}

// fetchClass mirrors the fetcher's per-line checks (producer/file.go, handleLine).
func fetchClass(fileType string, line []byte, maxLine int) string {
	if len(line) > maxLine {
		return "line-too-long"
	}
	v, err := fastjson.ParseBytes(line)
	switch {
	case err != nil:
		return "invalid-json"
	case v.Type() != fastjson.TypeObject:
		return "not-object"
	}
	rt, id := v.GetStringBytes("resourceType"), v.GetStringBytes("id")
	switch {
	case rt == nil:
		return "missing-resource-type"
	case string(rt) != fileType:
		return "type-mismatch"
	case id == nil:
		return "missing-id"
	case !schemas.ValidResourceID(string(id)):
		return "bad-id"
	}
	return ""
}

// TestWriteDirBadLines: the files hold the bad lines where Counts.Bad says, and the
// counts of resources are those of a run without them.
func TestWriteDirBadLines(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{Patients: 25, Seed: 2, Bad: 9}
	counts, err := WriteDir(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	clean, err := WriteDir(ctx, Config{Patients: 25, Seed: 2}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(counts.Resources, clean.Resources) {
		t.Errorf("resources with bad lines %v, without %v", counts.Resources, clean.Resources)
	}
	want, err := ExpectedDeadLetters(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(counts.Bad, want) {
		t.Errorf("Counts.Bad %v, ExpectedDeadLetters %v", counts.Bad, want)
	}
	var extra int64
	for typ, n := range counts.Resources {
		lines := countFileLines(t, filepath.Join(dir, FileName(typ, false)))
		for _, d := range counts.Bad {
			if d.File == typ {
				extra++
				n++
			}
		}
		if lines != n {
			t.Errorf("%s: %d lines in the file, want %d resources + bad lines", typ, lines, n)
		}
	}
	if extra != int64(cfg.Bad) {
		t.Errorf("%d bad lines found in files, want %d", extra, cfg.Bad)
	}
	if counts.TotalBytes() <= clean.TotalBytes() {
		t.Errorf("bytes with bad lines %d, without %d: the files' sizes include them", counts.TotalBytes(), clean.TotalBytes())
	}
}

func countFileLines(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var n int64
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBadLinesNegative(t *testing.T) {
	if err := Generate(context.Background(), Config{Patients: 1, Bad: -1}, func(string, []byte) error { return nil }); err == nil {
		t.Error("negative Bad accepted")
	}
}
