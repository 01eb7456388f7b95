package sink

import (
	"context"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"gocloud.dev/blob/memblob"
)

// storages opens every Storage implementation on a fresh root.
func storages(t *testing.T) map[string]Storage {
	t.Helper()
	ctx := context.Background()
	local, err := OpenStorage(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	file, err := OpenStorage(ctx, (&url.URL{Scheme: "file", Path: t.TempDir()}).String())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := file.(*BlobStorage); !ok {
		t.Fatalf("file:// opened %T, want the object-store code path", file)
	}
	mem := NewBlobStorage(memblob.OpenBucket(nil), "mem://")
	s3, err := OpenStorage(ctx, fakeS3URL(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Storage{"local": local, "fileblob": file, "memblob": mem, "s3": s3}
	for _, st := range out {
		t.Cleanup(func() { st.Close() })
	}
	return out
}

// readStored reads a whole file of st.
func readStored(t *testing.T, st Storage, p string) ([]byte, error) {
	t.Helper()
	switch s := st.(type) {
	case *LocalStorage:
		return os.ReadFile(s.abs(p))
	case *BlobStorage:
		return s.Bucket().ReadAll(context.Background(), p)
	}
	t.Fatalf("no reader for %T", st)
	return nil, nil
}

func writeStored(t *testing.T, st Storage, p, content string) {
	t.Helper()
	f, err := st.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestStorageContract checks, for every storage, the properties the file protocol relies
// on (package doc): a file exists only once committed, an aborted one never, publication
// is idempotent and reports a missing source as fs.ErrNotExist, removal of a missing file
// succeeds, and listing is recursive and empty for a missing directory.
func TestStorageContract(t *testing.T) {
	ctx := context.Background()
	for name, st := range storages(t) {
		t.Run(name, func(t *testing.T) {
			const dir = "omop/person/date=2024-01-01"
			f, err := st.Create(ctx, dir+"/.t+0+5+b1.pending")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("half")); err != nil {
				t.Fatal(err)
			}
			if _, ok := st.(*BlobStorage); ok {
				// An object store shows nothing under the name before the upload completes
				// (fileblob shows its temporary file, which recovery knows to remove).
				got, _ := st.List(ctx, "omop")
				for _, p := range got {
					if parsed, ok := parseName(path.Base(p)); !ok || !parsed.Temp {
						t.Fatalf("before commit, list = %q", got)
					}
				}
			}
			if _, err := f.Write([]byte(" and whole")); err != nil {
				t.Fatal(err)
			}
			if err := f.Commit(); err != nil {
				t.Fatal(err)
			}

			aborted, err := st.Create(ctx, dir+"/.t+0+9+b2.pending")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := aborted.Write([]byte("never")); err != nil {
				t.Fatal(err)
			}
			if err := aborted.Abort(); err != nil {
				t.Fatal(err)
			}
			if err := st.SyncDir(ctx, dir); err != nil {
				t.Fatal(err)
			}

			got, err := st.List(ctx, "omop")
			if err != nil || !slices.Equal(got, []string{dir + "/.t+0+5+b1.pending"}) {
				t.Fatalf("after commit and abort, list = %q, %v", got, err)
			}

			if err := st.Publish(ctx, dir+"/.t+0+5+b1.pending", dir+"/t+0+5.parquet"); err != nil {
				t.Fatal(err)
			}
			// A second publication (a stalled owner after recovery published) finds nothing.
			if err := st.Publish(ctx, dir+"/.t+0+5+b1.pending", dir+"/t+0+5.parquet"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("second publish: %v, want fs.ErrNotExist", err)
			}
			if b, err := readStored(t, st, dir+"/t+0+5.parquet"); err != nil || string(b) != "half and whole" {
				t.Fatalf("published content %q, %v", b, err)
			}
			// Publishing over an existing final file replaces it.
			writeStored(t, st, dir+"/.t+0+5+b3.pending", "replacement")
			if err := st.Publish(ctx, dir+"/.t+0+5+b3.pending", dir+"/t+0+5.parquet"); err != nil {
				t.Fatal(err)
			}
			if b, err := readStored(t, st, dir+"/t+0+5.parquet"); err != nil || string(b) != "replacement" {
				t.Fatalf("replaced content %q, %v", b, err)
			}

			// A file larger than one upload part (a multipart upload on S3) arrives whole.
			big := strings.Repeat("0123456789abcdef", (blobPartBytes+blobPartBytes/2)/16)
			writeStored(t, st, dir+"/.t+0+7+b4.pending", big)
			if err := st.Publish(ctx, dir+"/.t+0+7+b4.pending", dir+"/t+0+7.parquet"); err != nil {
				t.Fatal(err)
			}
			if b, err := readStored(t, st, dir+"/t+0+7.parquet"); err != nil || string(b) != big {
				t.Fatalf("large file: %d bytes read back, want %d (%v)", len(b), len(big), err)
			}
			if err := st.Remove(ctx, dir+"/t+0+7.parquet"); err != nil {
				t.Fatal(err)
			}

			if err := st.Remove(ctx, dir+"/missing.parquet"); err != nil {
				t.Fatalf("remove missing: %v", err)
			}
			if got, err := st.List(ctx, "fhir/Nothing"); err != nil || len(got) != 0 {
				t.Fatalf("list of a missing directory = %q, %v", got, err)
			}
			// A prefix that is not a whole directory name lists nothing.
			if got, err := st.List(ctx, "omop/pers"); err != nil || len(got) != 0 {
				t.Fatalf("list of a name prefix = %q, %v", got, err)
			}
			got, err = st.List(ctx, "omop")
			if err != nil || !slices.Equal(got, []string{dir + "/t+0+5.parquet"}) {
				t.Fatalf("final list = %q, %v", got, err)
			}
		})
	}
}

func TestOpenStorageRejectsBucketPaths(t *testing.T) {
	_, err := OpenStorage(context.Background(), "mem://bucket/some/path")
	if err == nil || !strings.Contains(err.Error(), "?prefix=some/path/") {
		t.Fatalf("err = %v, want advice to use ?prefix=", err)
	}
}
