package producer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/smart"
	"github.com/fhirstream/fhirstream/schemas"
)

const small = "../internal/ehrsim/testdata/small"

func fastConfig(c *testkafka.Cluster, base string) producer.Config {
	return producer.Config{
		Kafka:          c.Config(),
		Partitions:     3,
		Export:         bulk.Request{Base: base},
		MinPoll:        5 * time.Millisecond,
		Backoff:        bulk.Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		CommitInterval: 200 * time.Millisecond,
	}
}

// landed reads every raw topic of types plus the DLQ.
type landed struct {
	byType     map[string]int
	tombstones map[string]int
	dead       []*kgo.Record
}

func readLanded(t *testing.T, c *testkafka.Cluster, types []string) landed {
	t.Helper()
	topics := schemas.MustTopics(c.Prefix)
	names := []string{topics.DLQ()}
	for _, typ := range types {
		names = append(names, topics.Raw(typ))
	}
	l := landed{byType: map[string]int{}, tombstones: map[string]int{}}
	seen := map[string]*kgo.Record{}
	dups := 0
	defer func() {
		if dups > 0 {
			t.Errorf("%d duplicate records", dups)
		}
	}()
	for _, r := range c.ReadAll(t, names...) {
		if r.Topic == topics.DLQ() {
			l.dead = append(l.dead, r)
			continue
		}
		_, typ, _ := topics.ParseLayerTopic(r.Topic)
		var src, line string
		for _, h := range r.Headers {
			switch h.Key {
			case schemas.HeaderSourceURL:
				src = string(h.Value)
			case schemas.HeaderSourceLine:
				line = string(h.Value)
			}
		}
		if r.Value == nil {
			l.tombstones[typ]++
			continue
		}
		// The export URL changes when the file URL expires; key+line identifies a line.
		id := string(r.Key) + "@" + line
		if first := seen[id]; first != nil {
			// Where each copy sits and which producer epoch wrote it tells a replayed
			// transaction from a resent batch; the first few say enough.
			if dups++; dups <= 5 {
				t.Errorf("duplicate record %s (from %s): %s and %s", id, src, recordAt(first), recordAt(r))
			}
		} else {
			seen[id] = r
		}
		if !strings.HasPrefix(string(r.Value), `{"resourceType":"`+typ+`"`) {
			t.Errorf("record on %s is not the line: %.50s", r.Topic, r.Value)
		}
		l.byType[typ]++
	}
	return l
}

func recordAt(r *kgo.Record) string {
	return fmt.Sprintf("%s/%d@%d (producer %d epoch %d)", r.Topic, r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch)
}

func sourceCounts(srv *ehrsim.Server) map[string]int {
	out := map[string]int{}
	for typ, n := range srv.Types() {
		out[typ] = int(n)
	}
	return out
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestIntegrationFetchFaults(t *testing.T) {
	cases := map[string]ehrsim.Config{
		"clean":             {},
		"status-429-5xx":    {Faults: ehrsim.Faults{Status429: 2, Status5xx: 2, TransientOutcome: 2}},
		"truncated":         {Faults: ehrsim.Faults{TruncateDownloads: 2}},
		"slow":              {Faults: ehrsim.Faults{SlowBytesPerSec: 200 << 10}},
		"expired-urls":      {Faults: ehrsim.Faults{ExpireFileURLs: 1}},
		"paged-split":       {ResourcesPerFile: 3, ManifestPageSize: 2},
		"error-and-deleted": {Faults: ehrsim.Faults{ErrorLines: 3, DeletedLines: 4}},
		"token-expiry":      {Auth: true, Faults: ehrsim.Faults{ExpireTokensAfterFiles: 2}},
	}
	for name, ecfg := range cases {
		t.Run(name, func(t *testing.T) {
			ecfg.Dir = small
			srv, err := ehrsim.New(ecfg)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c := testkafka.New(t)
			cfg := fastConfig(c, srv.URL)
			cfg.ManifestDir = t.TempDir()
			if ecfg.Auth {
				cfg.ClientID, cfg.KeyFile = "fetcher", writeKey(t, srv, "fetcher", smart.AlgES384)
			}
			sum, err := producer.Fetch(context.Background(), cfg)
			if err != nil {
				t.Fatalf("fetch: %v\n%+v", err, sum)
			}
			want := sourceCounts(srv)
			got := readLanded(t, c, append(keys(want), "Patient"))
			for typ, n := range want {
				if got.byType[typ] != n {
					t.Errorf("%s: %d records, source has %d", typ, got.byType[typ], n)
				}
			}
			if srv.Stats().Deletes.Load() != 1 {
				t.Errorf("status URL deleted %d times, want 1", srv.Stats().Deletes.Load())
			}
			if m, _ := filepath.Glob(filepath.Join(cfg.ManifestDir, "manifest-*.json")); len(m) == 0 {
				t.Error("no manifest saved for audit")
			}
			f := ecfg.Faults
			if got.tombstones["Patient"] != f.DeletedLines {
				t.Errorf("tombstones = %d, want %d", got.tombstones["Patient"], f.DeletedLines)
			}
			if len(got.dead) != f.ErrorLines {
				t.Errorf("dead letters = %d, want %d", len(got.dead), f.ErrorLines)
			}
			for _, d := range got.dead {
				dc, ok := deadletter.Parse(d.Headers)
				if !ok || dc.Class != "export-error" || !strings.Contains(dc.Message, "simulated export error") {
					t.Errorf("dead letter context = %+v", dc)
				}
			}
			if ecfg.Auth && srv.Stats().TokensIssued.Load() < 2 {
				t.Errorf("token not renewed after expiry: %d issued", srv.Stats().TokensIssued.Load())
			}
			if name == "truncated" && srv.Stats().RangeRequests.Load() == 0 {
				t.Error("no Range request after truncated downloads")
			}
		})
	}
}

func writeKey(t *testing.T, srv *ehrsim.Server, clientID, alg string) string {
	t.Helper()
	key, err := smart.GenerateKey(alg, "k-"+alg)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := key.PrivateJWK()
	b, _ := json.Marshal(priv)
	p := filepath.Join(t.TempDir(), "key.jwk")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := key.PublicJWKS()
	pb, _ := json.Marshal(pub)
	if err := srv.RegisterClient(clientID, pb); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIntegrationFetchBadLines publishes local files with every kind of bad line and
// checks each dead letter's reason, and that good lines still flow.
func TestIntegrationFetchBadLines(t *testing.T) {
	dir := t.TempDir()
	big := `{"resourceType":"Patient","id":"big","text":"` + strings.Repeat("x", 4500) + `"}`
	huge := `{"resourceType":"Patient","id":"huge","text":"` + strings.Repeat("y", 9000) + `"}`
	lines := []string{
		`{"resourceType":"Patient","id":"ok1"}`,
		`not json`,
		`[1,2]`,
		`{"id":"x"}`,
		`{"resourceType":"Observation","id":"o1"}`,
		`{"resourceType":"Patient"}`,
		`{"resourceType":"Patient","id":"bad id!"}`,
		``,
		big,
		huge,
		`{"resourceType":"Patient","id":"ok2"}`,
	}
	os.WriteFile(filepath.Join(dir, "Patient.000.ndjson"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	c := testkafka.New(t)
	cfg := producer.Config{Kafka: c.Config(), Partitions: 1, From: []string{dir}, MaxLineBytes: 6000}
	cfg.Kafka.MaxRecordBytes = 4096 + 1024
	sum, err := producer.Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	got := readLanded(t, c, []string{"Patient"})
	if got.byType["Patient"] != 2 {
		t.Errorf("published %d Patients, want 2", got.byType["Patient"])
	}
	classes := map[string]int{}
	for _, d := range got.dead {
		dc, _ := deadletter.Parse(d.Headers)
		classes[dc.Class]++
		if dc.Stage != "fetch" || dc.Partition != -1 || dc.SourceTopic != schemas.MustTopics(c.Prefix).Raw("Patient") {
			t.Errorf("dead letter context %+v", dc)
		}
		if dc.Class == "invalid-json" && (strings.Contains(dc.Message, "json") || !strings.Contains(dc.Message, "at byte")) {
			t.Errorf("invalid-json message %q: want a position, not a quote of the line", dc.Message)
		}
		if dc.Class == "too-large" || dc.Class == "line-too-long" {
			if len(d.Value) != 0 {
				t.Errorf("%s dead letter carries the value", dc.Class)
			}
			wantSize := map[string]int{"too-large": len(big), "line-too-long": len(huge)}[dc.Class]
			if got := header(d, schemas.HeaderSourceSize); got != fmt.Sprint(wantSize) {
				t.Errorf("%s dead letter: %s = %q, want %d", dc.Class, schemas.HeaderSourceSize, got, wantSize)
			}
		}
	}
	want := map[string]int{"invalid-json": 1, "not-object": 1, "missing-resource-type": 1, "type-mismatch": 1,
		"missing-id": 1, "bad-id": 1, "too-large": 1, "line-too-long": 1}
	if fmt.Sprint(classes) != fmt.Sprint(want) {
		t.Errorf("dead letter classes = %v, want %v", classes, want)
	}
	if !sum.OK() || sum.Files[0].Read != 10 {
		t.Errorf("summary: %+v", sum)
	}
}

// TestIntegrationFetchSinceAuto runs the same command twice with --since auto: the
// second export asks for changes since the first one's transactionTime, which the
// simulator's data (last updated in 2024) has none of; only the 2 Organizations, which
// carry no meta.lastUpdated, are always exported.
func TestIntegrationFetchSinceAuto(t *testing.T) {
	srv, err := ehrsim.New(ehrsim.Config{Dir: small})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := testkafka.New(t)
	cfg := fastConfig(c, srv.URL)
	cfg.SinceAuto = true
	first, err := producer.Fetch(context.Background(), cfg)
	if err != nil || first.Resources() != 27 {
		t.Fatalf("first run: %v, %d resources", err, first.Resources())
	}
	second, err := producer.Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if second.Resources() != 2 || second.ByType()[0].Type != "Organization" || second.ExportID == first.ExportID {
		t.Fatalf("second run published %d resources (export %s, first %s)", second.Resources(), second.ExportID, first.ExportID)
	}
	if got := readLanded(t, c, []string{"Patient", "Observation"}); got.byType["Observation"] != 20 {
		t.Fatalf("Observations in Kafka: %d", got.byType["Observation"])
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestIntegrationFetchOrganized exports organizeOutputBy=Patient output split so that
// resource blocks continue across files (continuesInFile): every resource lands on its
// own type's topic, block headers are not published, and the run reconciles.
func TestIntegrationFetchOrganized(t *testing.T) {
	srv, err := ehrsim.New(ehrsim.Config{Dir: small, ResourcesPerFile: 3, ManifestPageSize: 2,
		Faults: ehrsim.Faults{TruncateDownloads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := testkafka.New(t)
	cfg := fastConfig(c, srv.URL)
	cfg.Export.Level = bulk.LevelPatient
	cfg.Export.OrganizeOutputBy = "Patient"
	sum, err := producer.Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("fetch: %v\n%+v", err, sum)
	}
	var headers int64
	for _, f := range sum.Files {
		headers += f.Headers
		if f.Type != "organized-by-Patient" {
			t.Errorf("file type %q", f.Type)
		}
	}
	// 5 blocks, one per Patient, of 5 resources each in files of 3: some blocks continue
	// in a next file, which repeats their header.
	if headers <= 5 || sum.Resources() != 25 {
		t.Errorf("%d headers, %d resources over %d files", headers, sum.Resources(), len(sum.Files))
	}
	got := readLanded(t, c, []string{"Patient", "Observation", "Organization"})
	// Organizations are outside the Patient compartment, so not in the export.
	if got.byType["Patient"] != 5 || got.byType["Observation"] != 20 || got.byType["Organization"] != 0 || len(got.dead) != 0 {
		t.Errorf("landed %v, %d dead letters", got.byType, len(got.dead))
	}
}

// TestIntegrationFetchNewExport has the server forget the export mid-run (status and
// file URLs answer 404), so refreshing the manifest cannot recover the files: the
// fetcher gives the export up and kicks off a new one, within the same run. The new
// export's records hold every source line exactly once; what the abandoned export had
// published stays, under its own export id.
func TestIntegrationFetchNewExport(t *testing.T) {
	srv, err := ehrsim.New(ehrsim.Config{Dir: small, ResourcesPerFile: 3, Faults: ehrsim.Faults{DropExportAfterFiles: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := testkafka.New(t)
	cfg := fastConfig(c, srv.URL)
	cfg.Workers = 1 // files one by one, so the drop falls after some were published
	sum, err := producer.Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("fetch: %v\n%+v", err, sum)
	}
	if k, d := srv.Stats().Kickoffs.Load(), srv.Stats().Dropped.Load(); k != 2 || d != 1 {
		t.Fatalf("%d kickoffs, %d exports dropped; want 2 and 1", k, d)
	}
	want := sourceCounts(srv)
	topics := schemas.MustTopics(c.Prefix)
	var names []string
	for typ := range want {
		names = append(names, topics.Raw(typ))
	}
	byExport := map[string]map[string]int{} // export id → type → records
	seen := map[string]bool{}
	for _, r := range c.ReadAll(t, names...) {
		exportID, line := header(r, schemas.HeaderExportID), header(r, schemas.HeaderSourceLine)
		id := exportID + " " + header(r, schemas.HeaderSourceURL) + " " + line
		if seen[id] {
			t.Errorf("line published twice: %s", id)
		}
		seen[id] = true
		if byExport[exportID] == nil {
			byExport[exportID] = map[string]int{}
		}
		byExport[exportID][header(r, schemas.HeaderResourceType)]++
	}
	if len(byExport) != 2 {
		t.Fatalf("records of %d exports, want the abandoned one and the new one", len(byExport))
	}
	for typ, n := range want {
		if got := byExport[sum.ExportID][typ]; got != n {
			t.Errorf("new export: %s %d records, source has %d", typ, got, n)
		}
	}
}

// TestIntegrationFetchTruncatedGzip publishes a local .gz cut short: the run must fail
// and say FAILED beside its shortfall, never OK, and not count the files as done.
func TestIntegrationFetchTruncatedGzip(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for i := range 2000 {
		fmt.Fprintf(zw, `{"resourceType":"Patient","id":"p%d","text":"%s"}`+"\n", i, strings.Repeat("z", i%50))
	}
	zw.Close()
	os.WriteFile(filepath.Join(dir, "Patient.ndjson.gz"), buf.Bytes()[:buf.Len()/2], 0o600)
	c := testkafka.New(t)
	sum, err := producer.Fetch(context.Background(), producer.Config{Kafka: c.Config(), Partitions: 1, From: []string{dir}})
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("a truncated gzip file: %v", err)
	}
	var table strings.Builder
	sum.WriteTable(&table)
	if sum.OK() || !strings.Contains(table.String(), "reconciliation: FAILED") || !strings.Contains(table.String(), "1 of 1 files were not read to the end") {
		t.Errorf("table of a failed run:\n%s", table.String())
	}
	// The rerun fails the same way: the file stays unfinished, the run incomplete.
	if _, err := producer.Fetch(context.Background(), producer.Config{Kafka: c.Config(), Partitions: 1, From: []string{dir}}); err == nil {
		t.Error("the rerun of a truncated file succeeded")
	}
}
