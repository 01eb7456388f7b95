package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	// The object stores the sink can write to, by URL scheme: s3:// (AWS S3 and
	// S3-compatible stores such as MinIO, Ceph or R2 through ?endpoint=), azblob://,
	// file:// (a directory through the same object-store code path) and mem:// (in-memory,
	// for tests). These four add 30 MB to the binary (29 → 59 MB). The native gs:// driver
	// would add 30 MB more (gRPC and the Google API client), so it is built only with
	// -tags gcs (storage_blob_gcs.go); without it, reach GCS through its S3-compatible
	// XML API (s3://bucket?endpoint=https://storage.googleapis.com with HMAC keys).
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"
)

// parquetContentType is the media type the sink stores its objects with.
const parquetContentType = "application/vnd.apache.parquet"

// blobPartBytes is the upload buffer of one object being written: S3's smallest multipart
// part. With one part in flight per object, a batch of MaxOpenFiles objects holds at most
// MaxOpenFiles × 5 MiB of upload buffers, and in practice far less, because parquet-go
// hands an object its bytes when a row group fills or the file is finished, and the batch
// finishes its files one after another.
const blobPartBytes = 5 << 20

// BlobStorage is a lake in an object store, through gocloud.dev/blob. Object stores have
// no rename, so the file protocol maps onto them like this:
//
//   - Create writes an object under the pending name. A blob writer is atomic: the object
//     appears only when Commit (the writer's Close) succeeds, and Abort cancels the
//     upload, so no reader and no recovery ever sees a half-written object.
//   - Publish is a server-side copy to the final name followed by a delete of the pending
//     object. Copying the same pending object twice writes the same bytes under the same
//     name, so publication stays idempotent, which is all the protocol needs (see the
//     package doc). A crash between the copy and the delete leaves a pending object of the
//     committed batch; recovery copies it again and deletes it.
//   - SyncDir has nothing to do: a completed write, copy or delete is durable and, on S3,
//     GCS and Azure Blob Storage, immediately visible to List.
type BlobStorage struct {
	bucket *blob.Bucket
	name   string
}

// OpenBlobStorage opens the object store at rawURL, for example
//
//	s3://my-bucket?region=eu-west-1&prefix=lake/
//	s3://lake?endpoint=http://minio:9000&use_path_style=true&region=us-east-1
//	gs://my-bucket?prefix=lake/                  (binaries built with -tags gcs)
//	azblob://my-container?prefix=lake/
//	file:///var/lake
//	mem://
//
// Credentials come from each cloud's usual sources (environment, shared config files,
// instance metadata), never from the URL. A key prefix is given with ?prefix=, not as a
// URL path, because the cloud drivers ignore the path. A file:// URL gets no_tmp_dir=true
// (an object's temporary file is written beside it, on the lake's own filesystem, so its
// final rename cannot fail across devices; recovery removes abandoned ones),
// create_dir=true and metadata=skip (no sidecar files) unless it says otherwise. Note that
// fileblob does not fsync: a plain directory path (LocalStorage) survives a power loss,
// a file:// lake survives a process crash.
func OpenBlobStorage(ctx context.Context, rawURL string) (*BlobStorage, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("sink output: not a URL: %w", err)
	}
	switch {
	case u.Scheme == "file":
		q := u.Query()
		if !q.Has("no_tmp_dir") {
			q.Set("no_tmp_dir", "true")
		}
		if !q.Has("create_dir") {
			q.Set("create_dir", "true")
		}
		if !q.Has("metadata") {
			// No "<name>.attrs" sidecar files: readers that take every file of a partition
			// directory as data (Spark, Hive) would fail on them.
			q.Set("metadata", "skip")
		}
		u.RawQuery = q.Encode()
	case strings.Trim(u.Path, "/") != "":
		return nil, fmt.Errorf("sink output %s: a %s:// URL names a bucket, not a path: give the key prefix as ?prefix=%s/",
			redactURL(u), u.Scheme, strings.Trim(u.Path, "/"))
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("sink output %s: %w", redactURL(u), err)
	}
	return &BlobStorage{bucket: b, name: redactURL(u)}, nil
}

// NewBlobStorage wraps an already opened bucket (embedding, tests). Close closes it.
func NewBlobStorage(b *blob.Bucket, name string) *BlobStorage {
	return &BlobStorage{bucket: b, name: name}
}

// redactURL names a storage URL for logs: scheme, bucket and path, without the query,
// which may carry endpoints or account details that do not belong in logs.
func redactURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

func openBlobStorage(ctx context.Context, rawURL string) (Storage, error) {
	return OpenBlobStorage(ctx, rawURL)
}

// Bucket is the underlying bucket, for reading the lake back.
func (s *BlobStorage) Bucket() *blob.Bucket { return s.bucket }

func (s *BlobStorage) String() string { return s.name }

// Close closes the bucket.
func (s *BlobStorage) Close() error { return s.bucket.Close() }

// Create starts the upload of the object p.
func (s *BlobStorage) Create(ctx context.Context, p string) (PendingFile, error) {
	// The upload outlives the context of the call that starts it: a batch's files are
	// created while consuming and finished at the flush, which at shutdown runs after the
	// consuming context has ended. Abort cancels it.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w, err := s.bucket.NewWriter(wctx, p, &blob.WriterOptions{
		ContentType:    parquetContentType,
		BufferSize:     blobPartBytes,
		MaxConcurrency: 1,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return &blobFile{w: w, cancel: cancel, path: p}, nil
}

type blobFile struct {
	w      *blob.Writer
	cancel context.CancelFunc
	path   string
}

func (f *blobFile) Write(b []byte) (int, error) { return f.w.Write(b) }

// Commit completes the upload; only then does the object exist.
func (f *blobFile) Commit() error {
	defer f.cancel()
	if err := f.w.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", f.path, err)
	}
	return nil
}

// Abort cancels the upload: the object never appears.
func (f *blobFile) Abort() error {
	f.cancel()
	_ = f.w.Close() // reports the cancellation, which is what was asked for
	return nil
}

// Publish copies from to to inside the store and deletes from.
func (s *BlobStorage) Publish(ctx context.Context, from, to string) error {
	if err := s.bucket.Copy(ctx, to, from, nil); err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return fmt.Errorf("publish %s: %w", to, fs.ErrNotExist)
		}
		return fmt.Errorf("publish %s: %w", to, err)
	}
	if err := s.Remove(ctx, from); err != nil {
		return fmt.Errorf("publish %s: %w", to, err)
	}
	return nil
}

// Remove deletes the object p.
func (s *BlobStorage) Remove(ctx context.Context, p string) error {
	if err := s.bucket.Delete(ctx, p); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// List lists every object whose key starts with dir + "/".
func (s *BlobStorage) List(ctx context.Context, dir string) ([]string, error) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	if dir == "" || dir == "." {
		prefix = ""
	}
	var out []string
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		if !obj.IsDir {
			out = append(out, obj.Key)
		}
	}
}

// SyncDir does nothing: object stores have no directories to sync.
func (s *BlobStorage) SyncDir(context.Context, string) error { return nil }
