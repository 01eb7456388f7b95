package validate

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/schemas"
)

// sampleDirs are the shared Synthea exports; absent in CI, where the tests skip.
var sampleDirs = []string{"/work/shared/data/synthea-9-patients", "/work/shared/data/synthea-13-patients"}

// forEachSampleLine calls fn for every NDJSON line of the shared sample data.
func forEachSampleLine(t testing.TB, fn func(resourceType string, line []byte)) {
	t.Helper()
	found := false
	for _, dir := range sampleDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
		for _, f := range files {
			found = true
			rt, _, _ := strings.Cut(filepath.Base(f), ".")
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				fn(rt, sc.Bytes())
			}
			fh.Close()
			if err := sc.Err(); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
	if !found {
		t.Skip("shared Synthea sample data not present")
	}
}

// TestSyntheaSamplesPass: every resource of a real Synthea export is valid FHIR R4, so
// the validator must pass all of them; a failure here is a rule that is too strict.
func TestSyntheaSamplesPass(t *testing.T) {
	v := New(Options{})
	n, bad := 0, 0
	forEachSampleLine(t, func(rt string, line []byte) {
		n++
		key := schemas.Key(rt, idOf(line))
		if fails := v.Validate(rt, key, line); len(fails) > 0 {
			bad++
			if bad <= 10 {
				t.Errorf("%s: %v", rt, fails)
			}
		}
	})
	t.Logf("%d resources, %d rejected", n, bad)
}
