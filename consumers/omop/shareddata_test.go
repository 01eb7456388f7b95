package omop

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/consumers/stage"
)

const sharedData = "../../../shared/data"

// mapDir maps every NDJSON file of dir and returns the processor and the rejections by
// "<Type>: <class>".
func mapDir(t *testing.T, dir string) (*Processor, map[string]int, int) {
	t.Helper()
	p := newTestProcessor(t, nil)
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no NDJSON in %s: %v", dir, err)
	}
	rejected := map[string]int{}
	inputs := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		rtype := strings.SplitN(filepath.Base(f), ".", 2)[0]
		for sc.Scan() {
			line := append([]byte(nil), sc.Bytes()...)
			if len(line) == 0 {
				continue
			}
			inputs++
			var out collect
			err := p.Process(context.Background(), &stage.Record{Value: line}, nil, &out)
			if err != nil {
				r, ok := stage.AsRejection(err)
				if !ok {
					t.Fatalf("%s: transient error %v", rtype, err)
				}
				rejected[rtype+": "+r.Class+" at "+r.Path]++
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return p, rejected, inputs
}

// TestSharedData maps both shared Synthea sample sets. Zero rejections are expected: every
// resource either maps or is deliberately skipped (and counted).
func TestSharedData(t *testing.T) {
	for _, set := range []string{"synthea-9-patients", "synthea-13-patients"} {
		t.Run(set, func(t *testing.T) {
			dir := filepath.Join(sharedData, set)
			if _, err := os.Stat(dir); err != nil {
				t.Skipf("shared data absent: %v", err)
			}
			p, rejected, inputs := mapDir(t, dir)
			if len(rejected) > 0 {
				t.Errorf("rejections: %v", rejected)
			}
			s := p.Summary()
			tables := make([]string, 0, len(s.Rows))
			for tb := range s.Rows {
				tables = append(tables, tb)
			}
			sort.Strings(tables)
			for _, tb := range tables {
				t.Logf("%-22s %6d rows", tb, s.Rows[tb])
			}
			t.Logf("inputs %d, skipped %v, unmapped %v, truncated %v", inputs, s.Skipped, s.Unmapped, s.Truncated)
			if s.Rows["person"] == 0 || s.Rows["visit_occurrence"] == 0 {
				t.Errorf("no persons or visits: %v", s.Rows)
			}
			if s.Collisions != 0 {
				t.Errorf("%d id collisions", s.Collisions)
			}
		})
	}
}
