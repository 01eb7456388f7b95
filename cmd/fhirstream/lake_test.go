package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/lakeops"
	"github.com/fhirstream/fhirstream/internal/testlake"
)

// TestLakeCommands runs `lake compact|history|expire` on an embedded lake that
// iceberg-go wrote as the sink lays it out (<out>/catalog.db, catalog name
// "fhirstream"). What compaction and expiry do to rows is tested with the
// independent readers in internal/lakeops; this checks the commands' wiring,
// output and refusals.
func TestLakeCommands(t *testing.T) {
	ctx := context.Background()
	out := t.TempDir()
	cat, _, err := testlake.OpenSQLCatalog(ctx, "fhirstream", out)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := testlake.CreatePersonTable(ctx, cat, "omop", "person", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(12) {
		tbl, err = testlake.AppendPeople(ctx, tbl, testlake.People(i*3+1, i*3+3, 1),
			map[string]string{lakeops.OffsetsSummaryPrefix + "sink-omop": fmt.Sprintf(`{"topic":"omop.person","offsets":{"0":%d}}`, (i+1)*3)})
		if err != nil {
			t.Fatal(err)
		}
	}

	got, err := runCLI(t, "lake", "compact", "--out", out)
	if err != nil {
		t.Fatalf("compact: %v\n%s", err, got)
	}
	if !strings.Contains(got, "omop.person: data files 12 -> 1, delete files 0 -> 0") || !strings.Contains(got, "compact OK: 1 tables") {
		t.Errorf("compact output:\n%s", got)
	}

	got, err = runCLI(t, "lake", "history", "omop.person", "--out", out)
	if err != nil {
		t.Fatalf("history: %v\n%s", err, got)
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 14 || !strings.Contains(lines[1], "append") || !strings.Contains(lines[1], "sink-omop=") ||
		!strings.HasPrefix(lines[13], "*") || !strings.Contains(lines[13], "replace") {
		t.Errorf("history: want a header, 12 appends with offsets and the current replace:\n%s", got)
	}
	got, err = runCLI(t, "lake", "history", "omop.person", "--out", out, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var h []lakeops.Snapshot
	if err := json.Unmarshal([]byte(got), &h); err != nil || len(h) != 13 || h[12].TotalRows != 36 {
		t.Errorf("history json: %v\n%s", err, got)
	}

	if got, err = runCLI(t, "lake", "expire", "--out", out); err == nil || !strings.Contains(err.Error(), "--older-than is required") {
		t.Errorf("expire without --older-than: %v\n%s", err, got)
	}
	if got, err = runCLI(t, "lake", "expire", "--older-than", "5m", "--out", out); err == nil || !strings.Contains(err.Error(), "--allow-recent") {
		t.Errorf("expire --older-than 5m: %v\n%s", err, got)
	}
	got, err = runCLI(t, "lake", "expire", "--older-than", "0s", "--allow-recent", "--out", out)
	if err != nil {
		t.Fatalf("expire: %v\n%s", err, got)
	}
	// The twelfth append carries the offsets the sink resumes from: it and the
	// compaction after it stay.
	if !strings.Contains(got, "omop.person: snapshots 13 -> 2") || !strings.Contains(got, "expire OK") {
		t.Errorf("expire output:\n%s", got)
	}

	if got, err = runCLI(t, "lake", "compact", "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no lake catalog") {
		t.Errorf("compact of an empty directory: %v\n%s", err, got)
	}
}

// TestLakeCommandsREST runs compact and history through a REST catalog server
// (FHIRSTREAM_TEST_ICEBERG_REST, as .ci/run starts one).
func TestLakeCommandsREST(t *testing.T) {
	uri := os.Getenv("FHIRSTREAM_TEST_ICEBERG_REST")
	if uri == "" {
		t.Skip("FHIRSTREAM_TEST_ICEBERG_REST not set (deploy/iceberg/iceberg-rest-local.sh start prints it)")
	}
	ctx := context.Background()
	cat, _, err := testlake.OpenRESTCatalog(ctx, "rest", uri)
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("cli_%d", time.Now().UnixNano())
	tbl, err := testlake.CreatePersonTable(ctx, cat, ns, "person", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(10) {
		if tbl, err = testlake.AppendPeople(ctx, tbl, testlake.People(i*2+1, i*2+2, 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	name := ns + ".person"
	got, err := runCLI(t, "lake", "compact", "--catalog", "rest", "--catalog-uri", uri, name)
	if err != nil || !strings.Contains(got, name+": data files 10 -> 1") {
		t.Fatalf("compact: %v\n%s", err, got)
	}
	got, err = runCLI(t, "lake", "history", "--catalog", "rest", "--catalog-uri", uri, name)
	if err != nil || strings.Count(got, "append") != 10 || !strings.Contains(got, "replace") {
		t.Fatalf("history: %v\n%s", err, got)
	}
	if got, err = runCLI(t, "lake", "history", "--catalog", "rest", "--catalog-uri", "ftp://x", name); err == nil {
		t.Errorf("an ftp catalog URI was accepted:\n%s", got)
	}
}
