package sink

import (
	"os/exec"
	"strings"
	"sync"
	"testing"
)

var haveDuckDB = sync.OnceValue(func() bool {
	return exec.Command("python3", "-c", "import duckdb").Run() == nil
})

// duckQuery runs SQL statements with DuckDB (the Python package, as CI installs it) and
// returns the rows of the last one as CSV lines.
func duckQuery(t *testing.T, sql string) string {
	t.Helper()
	const script = `
import sys, duckdb
con = duckdb.connect()
stmts = [s for s in sys.stdin.read().split(";\n") if s.strip()]
for s in stmts[:-1]:
    con.execute(s)
for row in con.execute(stmts[-1]).fetchall():
    print(",".join("" if v is None else str(v) for v in row))
`
	cmd := exec.Command("python3", "-c", script)
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s\nSQL:\n%s", err, out, sql)
	}
	return string(out)
}
