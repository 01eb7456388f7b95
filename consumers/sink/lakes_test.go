package sink

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"
)

// testLake is one kind of lake storage the integration tests run over, with the same test
// code: a directory (LocalStorage), a file:// URL (gocloud's fileblob, through
// BlobStorage) and an in-memory bucket (memblob, through BlobStorage).
type testLake struct {
	name string
	// out is the path or URL the sink opens (--out); empty for a lake that lives in this
	// process only.
	out string
	// storage, when set, is passed as Config.Storage instead of Out.
	storage Storage
	// localDir returns a directory holding the lake's files, for readers that need a
	// filesystem (parquet-go's file reader, DuckDB).
	localDir func(t testing.TB) string
}

// config points cfg at the lake.
func (l testLake) config(cfg Config) Config {
	if l.storage != nil {
		cfg.Storage = l.storage
	} else {
		cfg.Out = l.out
	}
	return cfg
}

func newDirLake(t testing.TB) testLake {
	dir := t.TempDir()
	return testLake{name: "dir", out: dir, localDir: func(testing.TB) string { return dir }}
}

func newFileBlobLake(t testing.TB) testLake {
	dir := t.TempDir()
	u := (&url.URL{Scheme: "file", Path: dir}).String()
	return testLake{name: "fileblob", out: u, localDir: func(testing.TB) string { return dir }}
}

func newMemLake(t testing.TB) testLake {
	st := NewBlobStorage(memblob.OpenBucket(nil), "mem://")
	t.Cleanup(func() { st.Close() })
	return testLake{name: "memblob", storage: st, localDir: func(t testing.TB) string { return mirrorBucket(t, st.Bucket()) }}
}

// fakeS3URL starts an in-process S3 server (gofakes3) and returns an s3:// URL of a new
// bucket on it, so that the s3blob driver (AWS SDK v2: PutObject, multipart uploads,
// CopyObject, ListObjectsV2, DeleteObject) is exercised over real HTTP.
func fakeS3URL(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true)).Server())
	t.Cleanup(srv.Close)
	// The fake accepts any credentials; the SDK only needs some.
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	q := url.Values{"endpoint": {srv.URL}, "use_path_style": {"true"}, "region": {"us-east-1"}, "prefix": {"lake/"}}
	return "s3://fhirstream-test?" + q.Encode()
}

// newS3Lake is a lake on the fake S3 server. Its URL works from other processes too (the
// sink binary of the kill test), which inherit the credentials from the environment.
func newS3Lake(t testing.TB) testLake {
	u := fakeS3URL(t)
	st, err := OpenBlobStorage(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return testLake{name: "s3", out: u, localDir: func(t testing.TB) string { return mirrorBucket(t, st.Bucket()) }}
}

// testLakes are every lake kind; byURL keeps only those a separate process can open from
// a URL or path (not the in-memory bucket).
func testLakes(t testing.TB, byURL bool) []testLake {
	lakes := []testLake{newDirLake(t), newFileBlobLake(t), newS3Lake(t)}
	if !byURL {
		lakes = append(lakes, newMemLake(t))
	}
	return lakes
}

// mirrorBucket copies every object of b into a new directory.
func mirrorBucket(t testing.TB, b *blob.Bucket) string {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	it := b.List(nil)
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := b.ReadAll(ctx, obj.Key)
		if err != nil {
			t.Fatal(err)
		}
		full := filepath.Join(dir, filepath.FromSlash(obj.Key))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
