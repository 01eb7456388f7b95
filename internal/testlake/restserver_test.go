package testlake_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/testlake"
)

// restServer runs deploy/iceberg/iceberg-rest-local.sh with args and its own
// state dir.
func restServer(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(testlake.RepoRoot(), "deploy", "iceberg", "iceberg-rest-local.sh"), args...)
	cmd.Env = append(os.Environ(), "FHIRSTREAM_ICEBERG_REST_DIR="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("iceberg-rest-local.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// TestRESTCatalogServerSurvivesCrash starts the project's REST catalog server,
// commits through it, SIGKILLs it ('crash'), starts it again from the same state
// and reads the table back: what the sink's catalog-restart kill test relies on.
func TestRESTCatalogServerSurvivesCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a JVM: skipped under -short")
	}
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := filepath.Join(t.TempDir(), "rest")
	uri := restServer(t, dir, "start", "--port", strconv.Itoa(port))
	t.Cleanup(func() { restServer(t, dir, "stop") })
	if uri != "http://127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("start printed %q", uri)
	}

	ctx := context.Background()
	cat, spec, err := testlake.OpenRESTCatalog(ctx, "rest", uri)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := testlake.CreatePersonTable(ctx, cat, "omop", "person", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = testlake.AppendPeople(ctx, tbl, testlake.People(1, 5, 1), nil); err != nil {
		t.Fatal(err)
	}

	restServer(t, dir, "crash")
	if _, err := cat.LoadTable(ctx, tbl.Identifier()); err == nil {
		t.Fatal("the catalog answered while crashed")
	}
	if again := restServer(t, dir, "start"); again != uri {
		t.Fatalf("restart printed %q, want the same URI %q", again, uri)
	}
	tbl, err = cat.LoadTable(ctx, tbl.Identifier())
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if _, err = testlake.AppendPeople(ctx, tbl, testlake.People(6, 7, 1), nil); err != nil {
		t.Fatalf("commit after restart: %v", err)
	}
	r := testlake.Open(t, testlake.PyIceberg)
	got, err := r.Read(spec, "omop", "person")
	if err != nil {
		t.Fatal(err)
	}
	if d := testlake.Diff(testlake.Rows(testlake.People(1, 7, 1)), got.Rows, 5); d != "" {
		t.Error(d)
	}
}
