package producer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/schemas"
)

// Every published record is its own line, byte for byte, when a fetch commits many
// times with several files in flight: the fetcher writes lines into byte blocks that it
// recycles after each commit, so a block written again too early would show here as a
// record holding another line's bytes. The oracle is the generated files, read here line
// by line, and each line's type and id as encoding/json reads them.
func TestIntegrationFetchRecordsAreTheirLines(t *testing.T) {
	dir := t.TempDir()
	if _, err := synth.WriteDir(context.Background(), synth.Config{Patients: 20, Seed: 7}, dir); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // key → line
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("generated files: %v (%d)", err, len(files))
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var r struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want[r.ResourceType+"/"+r.ID] = sc.Text()
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Small files, so that several are published at once, each from its own arena.
	srv, err := ehrsim.New(ehrsim.Config{Dir: dir, ResourcesPerFile: 400})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := testkafka.New(t)
	cfg := fastConfig(c, srv.URL)
	cfg.CommitBytes = 128 << 10 // commits of half a block of lines
	cfg.Workers = 4
	sum, err := producer.Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Resources() != int64(len(want)) {
		t.Fatalf("published %d resources, want %d", sum.Resources(), len(want))
	}
	// Commits come as fast as the broker ends transactions, not every CommitBytes: on
	// kfake 8 MB took 11. Each after the first recycles the blocks of the one before.
	if sum.Commits < 5 {
		t.Fatalf("%d commits of %d bytes; the test needs several to recycle blocks", sum.Commits, sum.Bytes)
	}
	topics := schemas.MustTopics(c.Prefix)
	var names []string
	for typ := range srv.Types() {
		names = append(names, topics.Raw(typ))
	}
	got := 0
	for _, r := range c.ReadAll(t, names...) {
		line, ok := want[string(r.Key)]
		switch {
		case !ok:
			t.Fatalf("record with key %q, which no line has", r.Key)
		case string(r.Value) != line:
			t.Fatalf("record %s is not its line:\n got %.120s\nwant %.120s", r.Key, r.Value, line)
		}
		got++
	}
	if got != len(want) {
		t.Fatalf("read %d records back, want %d", got, len(want))
	}
}
