// Package testlake reads Apache Iceberg tables in tests with engines fhirstream
// did not write: pyiceberg, DuckDB with its iceberg extension, and Spark with
// Iceberg's Spark runtime. A test that compares what a reader returns with its
// own reference checks the lake as an analyst would see it, not as our writer
// believes it wrote it.
//
// Each engine runs as one Python process per Reader (py/reader.py), started
// once and asked for several tables, so a test pays Spark's start-up once. The
// rows come back canonical (see Row) and sorted, whatever the engine.
//
// A Reader skips its test (t.Skip, with the reason) when Python, an engine's
// package or Spark's jars are missing, and Spark under -short. With
// FHIRSTREAM_TEST_READERS=require (as .ci/run sets) a missing reader fails the
// test instead, so CI cannot pass by skipping them.
package testlake

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Engine names a reader.
type Engine string

// The readers. What each can read is in docs/lakehouse.md ("Which reader reads what").
const (
	PyIceberg Engine = "pyiceberg"
	DuckDB    Engine = "duckdb"
	Spark     Engine = "spark"
)

// Engines lists every reader, cheapest first.
var Engines = []Engine{PyIceberg, DuckDB, Spark}

// Catalog says where a reader finds a table. Name is the catalog's name as the
// writer used it: an SQL catalog stores it in every row, so a reader must use
// the same one.
type Catalog struct {
	Kind      string `json:"kind"`                // "sql" or "rest"
	Name      string `json:"name"`                //
	URI       string `json:"uri"`                 // the SQLite file (absolute path), or the REST server's http URI
	Warehouse string `json:"warehouse,omitempty"` // file:// URI of the warehouse; SQL catalogs only
}

// SQLCatalog is an embedded SQLite catalog (iceberg-go's "sql" catalog with
// the sqlite dialect; the same tables as Java's JdbcCatalog and pyiceberg's
// SqlCatalog).
func SQLCatalog(name, dbPath, warehouseDir string) Catalog {
	db, _ := filepath.Abs(dbPath)
	wh, _ := filepath.Abs(warehouseDir)
	return Catalog{Kind: "sql", Name: name, URI: db, Warehouse: "file://" + wh}
}

// RESTCatalog is an Iceberg REST catalog server.
func RESTCatalog(name, uri string) Catalog {
	return Catalog{Kind: "rest", Name: name, URI: uri}
}

// Row is one row, column name to a canonical value: int64, float64, string,
// bool, nil, []any or map[string]any. Dates are "YYYY-MM-DD"; timestamps are ISO
// 8601 with microseconds ("2024-01-02T03:04:05.000000"), ending in "Z" (UTC)
// for timestamptz columns; decimals and UUIDs are strings, binary is hex.
type Row map[string]any

// Date, Timestamp and TimestampTZ are the canonical forms of Iceberg date,
// timestamp and timestamptz values (see Row), for building references.
func Date(t time.Time) string { return t.Format("2006-01-02") }

// Timestamp is a timestamp without zone: its wall clock, microseconds.
func Timestamp(t time.Time) string { return t.Format("2006-01-02T15:04:05.000000") }

// TimestampTZ is a timestamptz: the instant in UTC, microseconds, "Z".
func TimestampTZ(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") + "Z" }

// Result is a table as one engine read it, rows sorted (see SortRows).
type Result struct {
	Columns []string
	Rows    []Row
}

// ErrUnsupported is wrapped by a Read that the engine refused because of what
// the table holds (pyiceberg and equality deletes, say), as opposed to a failed
// read.
var ErrUnsupported = errors.New("engine does not support this table")

// Reader is one running engine. It answers one request at a time (callers
// from several goroutines wait their turn).
type Reader struct {
	Engine    Engine
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	lines     chan []byte
	stderr    *tailBuffer
	timeout   time.Duration
	mu        sync.Mutex // one request at a time
	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error
}

// ErrUnavailable is wrapped by Start when an engine cannot run here (no
// Python, no package, no jars, or Spark under -short).
var ErrUnavailable = errors.New("reader unavailable")

// errShort marks Spark's skip under -short, which FHIRSTREAM_TEST_READERS=require
// does not turn into a failure.
var errShort = errors.New("skipped under -short")

// Skippable reports whether a Start error should skip the test rather than
// fail it: the engine cannot run here, and readers are not required (or it is
// Spark under -short).
func Skippable(err error) bool {
	return errors.Is(err, ErrUnavailable) && (!Required() || errors.Is(err, errShort))
}

// Required reports whether FHIRSTREAM_TEST_READERS=require: a reader that
// cannot run must fail its test, not skip it.
func Required() bool { return os.Getenv("FHIRSTREAM_TEST_READERS") == "require" }

// Open starts engine e for the test and stops it at the test's end, or skips
// the test when the engine cannot run here (see the package comment).
func Open(t testing.TB, e Engine) *Reader {
	t.Helper()
	r, err := Start(e)
	if Skippable(err) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// Start starts engine e; the caller must Close it. Its error wraps
// ErrUnavailable when the engine cannot run here.
func Start(e Engine) (*Reader, error) {
	if e == Spark && testing.Short() {
		return nil, fmt.Errorf("reader %s: %w: %w (Spark takes ~10 s to start)", e, ErrUnavailable, errShort)
	}
	r, skip, err := start(e)
	if skip != "" {
		return nil, fmt.Errorf("reader %s: %w: %s", e, ErrUnavailable, skip)
	}
	if err != nil {
		return nil, fmt.Errorf("reader %s: %w", e, err)
	}
	return r, nil
}

// ReaderScript is the path of py/reader.py.
func ReaderScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "py", "reader.py")
}

// RepoRoot is the module's root directory (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SparkJars is the directory of Spark's Iceberg runtime and sqlite-jdbc jars:
// $FHIRSTREAM_SPARK_JARS, else what `deploy/iceberg/iceberg-rest-local.sh
// spark-jars` resolves.
func SparkJars() string {
	if d := os.Getenv("FHIRSTREAM_SPARK_JARS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "deploy", "iceberg", "spark", "target", "libs")
}

// python is the interpreter the readers run on: $FHIRSTREAM_PYTHON or python3.
func python() (string, error) {
	if p := os.Getenv("FHIRSTREAM_PYTHON"); p != "" {
		return p, nil
	}
	return exec.LookPath("python3")
}

// modules each engine imports, checked before it starts so a missing package
// is a skip with a clear reason rather than a failed start.
var modules = map[Engine]string{
	PyIceberg: "pyiceberg.catalog.sql, pyiceberg.catalog.rest, pyarrow, sqlalchemy",
	DuckDB:    "duckdb, duckdb_ext, pyarrow",
	Spark:     "pyspark, pyarrow",
}

// start returns a running reader, or a reason to skip, or an error.
func start(e Engine) (*Reader, string, error) {
	mods, ok := modules[e]
	if !ok {
		return nil, "", fmt.Errorf("unknown engine %q", e)
	}
	py, err := python()
	if err != nil {
		return nil, "python3 not found", nil
	}
	if out, err := exec.Command(py, "-c", "import "+mods).CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("python packages missing (pip install as .ci/run does): %s",
			lastLine(out)), nil
	}
	env := append(os.Environ(), "TZ=UTC", "PYTHONUNBUFFERED=1")
	timeout := 2 * time.Minute
	if e == Spark {
		jars := SparkJars()
		if !hasGlob(jars, "iceberg-spark-runtime-*.jar") {
			return nil, fmt.Sprintf("no Iceberg Spark runtime in %s (deploy/iceberg/iceberg-rest-local.sh spark-jars resolves it)", jars), nil
		}
		if _, err := exec.LookPath("java"); err != nil && os.Getenv("JAVA_HOME") == "" {
			return nil, "java not found", nil
		}
		env = append(env, "FHIRSTREAM_SPARK_JARS="+jars, "PYSPARK_PYTHON="+py)
		timeout = 5 * time.Minute
	}
	cmd := exec.Command(py, ReaderScript(), string(e))
	cmd.Env = env
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", cmd, err)
	}
	r := &Reader{Engine: e, cmd: cmd, stdin: stdin, lines: make(chan []byte, 1), stderr: stderr, timeout: timeout}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<30)
		for sc.Scan() {
			r.lines <- bytes.Clone(sc.Bytes())
		}
		close(r.lines)
	}()
	var hello struct {
		Ready string `json:"ready"`
		Error string `json:"error"`
	}
	line, err := r.next()
	if err == nil {
		err = json.Unmarshal(line, &hello)
	}
	if err != nil || hello.Ready != string(e) {
		_ = r.Close()
		if err == nil {
			err = errors.New(hello.Error)
		}
		return nil, "", fmt.Errorf("%s did not start: %w\n%s", e, err, stderr.String())
	}
	return r, "", nil
}

func hasGlob(dir, pattern string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	return len(m) > 0
}

// next waits for the reader's next answer line.
func (r *Reader) next() ([]byte, error) {
	select {
	case line, ok := <-r.lines:
		if !ok {
			return nil, fmt.Errorf("reader %s exited", r.Engine)
		}
		return line, nil
	case <-time.After(r.timeout):
		_ = r.Close()
		return nil, fmt.Errorf("reader %s gave no answer in %s", r.Engine, r.timeout)
	}
}

type request struct {
	Catalog    Catalog  `json:"catalog"`
	Namespace  string   `json:"namespace,omitempty"`
	Table      string   `json:"table,omitempty"`
	SnapshotID *int64   `json:"snapshot_id,omitempty"`
	SQL        []string `json:"sql,omitempty"`
}

// Exec runs SQL statements against a catalog (Spark only): Spark as a writer,
// for tables no fhirstream or iceberg-go code wrote. Table names in the
// statements are qualified by the catalog's Name.
func (r *Reader) Exec(cat Catalog, statements ...string) error {
	_, err := r.read(request{Catalog: cat, SQL: statements})
	return err
}

// Read reads a table's current state.
func (r *Reader) Read(cat Catalog, namespace, table string) (Result, error) {
	return r.read(request{Catalog: cat, Namespace: namespace, Table: table})
}

// ReadAt reads a table as of a snapshot (time travel).
func (r *Reader) ReadAt(cat Catalog, namespace, table string, snapshotID int64) (Result, error) {
	return r.read(request{Catalog: cat, Namespace: namespace, Table: table, SnapshotID: &snapshotID})
}

func (r *Reader) read(req request) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	what := fmt.Sprintf("%s read %s.%s", r.Engine, req.Namespace, req.Table)
	if req.SQL != nil {
		what = fmt.Sprintf("%s SQL (%d statements)", r.Engine, len(req.SQL))
	}
	if req.SnapshotID != nil {
		what += fmt.Sprintf(" at snapshot %d", *req.SnapshotID)
	}
	if r.closed.Load() {
		return Result{}, fmt.Errorf("%s: reader closed", what)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Result{}, err
	}
	if _, err := r.stdin.Write(append(b, '\n')); err != nil {
		return Result{}, fmt.Errorf("%s: %w\n%s", what, err, r.stderr.String())
	}
	line, err := r.next()
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w\n%s", what, err, r.stderr.String())
	}
	var ans struct {
		Columns     []string          `json:"columns"`
		Rows        []json.RawMessage `json:"rows"`
		Error       string            `json:"error"`
		Unsupported bool              `json:"unsupported"`
	}
	if err := json.Unmarshal(line, &ans); err != nil {
		return Result{}, fmt.Errorf("%s: bad answer: %w", what, err)
	}
	if ans.Unsupported {
		return Result{}, fmt.Errorf("%s: %w: %s", what, ErrUnsupported, ans.Error)
	}
	if ans.Error != "" {
		return Result{}, fmt.Errorf("%s: %s\n%s", what, ans.Error, r.stderr.String())
	}
	res := Result{Columns: ans.Columns, Rows: make([]Row, 0, len(ans.Rows))}
	for _, raw := range ans.Rows {
		row, err := decodeRow(raw)
		if err != nil {
			return Result{}, fmt.Errorf("%s: %w", what, err)
		}
		res.Rows = append(res.Rows, row)
	}
	SortRows(res.Rows)
	return res, nil
}

// Close stops the engine: its stdin closes, it exits; after 20 s it is killed.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		_ = r.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- r.cmd.Wait() }()
		select {
		case r.closeErr = <-done:
		case <-time.After(20 * time.Second):
			_ = r.cmd.Process.Kill()
			r.closeErr = <-done
		}
	})
	return r.closeErr
}

// decodeRow keeps JSON integers as int64 and other numbers as float64, so a
// BIGINT id and a DOUBLE value compare as what they are.
func decodeRow(raw json.RawMessage) (Row, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode row: %w", err)
	}
	for k, v := range m {
		m[k] = numbers(v)
	}
	return m, nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(x), ".eE") {
			if i, err := x.Int64(); err == nil {
				return i
			}
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

// Key is a row's canonical JSON (keys sorted; a float always carries a
// decimal point or exponent, so 1 and 1.0 differ): rows are sorted by it and
// compared with it.
func Key(r Row) string {
	var b strings.Builder
	writeKey(&b, map[string]any(r))
	return b.String()
}

func writeKey(b *strings.Builder, v any) {
	switch x := v.(type) {
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEIN") {
			s += ".0"
		}
		b.WriteString(s)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			writeKey(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeKey(b, e)
		}
		b.WriteByte(']')
	default:
		vb, err := json.Marshal(x)
		if err != nil {
			vb = []byte(fmt.Sprintf("%q", fmt.Sprint(x)))
		}
		b.Write(vb)
	}
}

// SortRows sorts rows by Key.
func SortRows(rows []Row) {
	type keyed struct {
		key string
		row Row
	}
	ks := make([]keyed, len(rows))
	for i, r := range rows {
		ks[i] = keyed{Key(r), r}
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	for i := range ks {
		rows[i] = ks[i].row
	}
}

// Diff compares two row sets (in any order) and describes up to max
// differences, or returns "" when they are equal.
func Diff(want, got []Row, max int) string {
	count := func(rows []Row) map[string]int {
		m := make(map[string]int, len(rows))
		for _, r := range rows {
			m[Key(r)]++
		}
		return m
	}
	w, g := count(want), count(got)
	var missing, extra []string
	for k, n := range w {
		for i := g[k]; i < n; i++ {
			missing = append(missing, k)
		}
	}
	for k, n := range g {
		for i := w[k]; i < n; i++ {
			extra = append(extra, k)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	var b strings.Builder
	fmt.Fprintf(&b, "want %d rows, got %d: %d missing, %d unexpected", len(want), len(got), len(missing), len(extra))
	for i, k := range missing {
		if i == max {
			fmt.Fprintf(&b, "\n  … %d more missing", len(missing)-max)
			break
		}
		fmt.Fprintf(&b, "\n  missing:    %s", k)
	}
	for i, k := range extra {
		if i == max {
			fmt.Fprintf(&b, "\n  … %d more unexpected", len(extra)-max)
			break
		}
		fmt.Fprintf(&b, "\n  unexpected: %s", k)
	}
	return b.String()
}

// tailBuffer keeps the last max bytes written: an engine's stderr, for errors.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 {
		return ""
	}
	return "---- reader stderr (tail) ----\n" + string(t.buf)
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
