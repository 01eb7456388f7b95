package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Storage is where the lake's files live. Paths are slash-separated and relative to the
// lake root. The exactly-once protocol (see the package doc) needs only these operations;
// it never relies on a rename being atomic, only on Publish being idempotent: publishing
// the same pending file twice, or publishing one that is already published, leaves the
// same final file.
type Storage interface {
	// Create starts a new file at p. Nothing is visible at p until the returned file's
	// Commit returns nil; Abort discards it.
	Create(ctx context.Context, p string) (PendingFile, error)
	// Publish moves the file at from to to, replacing any file there. A missing from is
	// reported with an error wrapping fs.ErrNotExist.
	Publish(ctx context.Context, from, to string) error
	// Remove deletes p; a missing p is not an error.
	Remove(ctx context.Context, p string) error
	// List returns the paths of every file below dir (recursively), relative to the root.
	// A missing dir lists as empty.
	List(ctx context.Context, dir string) ([]string, error)
	// SyncDir makes the creation, rename and removal of entries of dir durable. Object
	// stores have nothing to do.
	SyncDir(ctx context.Context, dir string) error
	// String names the storage for logs.
	String() string
	// Close releases the storage.
	Close() error
}

// PendingFile is a file being written.
type PendingFile interface {
	io.Writer
	// Commit makes the written bytes durable at the file's path (fsync and close on a
	// filesystem; upload completion on an object store).
	Commit() error
	// Abort discards the file.
	Abort() error
}

// OpenStorage returns the storage for out: a directory path (LocalStorage), or a URL of
// an object store (BlobStorage: s3://, gs://, azblob://, mem://, and file:// for a
// directory written through the object-store code path).
func OpenStorage(ctx context.Context, out string) (Storage, error) {
	if out == "" {
		return nil, errors.New("sink output: empty path")
	}
	if strings.Contains(out, "://") {
		return openBlobStorage(ctx, out)
	}
	return NewLocalStorage(out)
}

// LocalStorage is a lake on a local (or mounted) filesystem. Publish is rename(2) within
// one directory and SyncDir fsyncs the directory, so a published file survives a power
// loss, not only a process crash.
type LocalStorage struct {
	root string
}

// NewLocalStorage returns the storage rooted at dir, creating dir if needed.
func NewLocalStorage(dir string) (*LocalStorage, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sink output %s: %w", dir, err)
	}
	return &LocalStorage{root: dir}, nil
}

func (s *LocalStorage) String() string { return s.root }

// Close does nothing; the filesystem needs no release.
func (s *LocalStorage) Close() error { return nil }

func (s *LocalStorage) abs(p string) string { return filepath.Join(s.root, filepath.FromSlash(p)) }

// Create creates p (and its directory) for writing.
func (s *LocalStorage) Create(_ context.Context, p string) (PendingFile, error) {
	full := s.abs(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", p, err)
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return &localFile{f: f, path: p}, nil
}

type localFile struct {
	f    *os.File
	path string
}

func (f *localFile) Write(b []byte) (int, error) { return f.f.Write(b) }

func (f *localFile) Commit() error {
	if err := f.f.Sync(); err != nil {
		f.f.Close()
		return fmt.Errorf("fsync %s: %w", f.path, err)
	}
	if err := f.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	return nil
}

func (f *localFile) Abort() error {
	name := f.f.Name()
	f.f.Close()
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove aborted %s: %w", f.path, err)
	}
	return nil
}

// Publish renames from to to; both are in one directory in this package's use, so the
// rename is atomic.
func (s *LocalStorage) Publish(_ context.Context, from, to string) error {
	if err := os.Rename(s.abs(from), s.abs(to)); err != nil {
		return fmt.Errorf("publish %s: %w", to, err)
	}
	return nil
}

// Remove deletes p.
func (s *LocalStorage) Remove(_ context.Context, p string) error {
	if err := os.Remove(s.abs(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// List walks dir.
func (s *LocalStorage) List(_ context.Context, dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(s.abs(dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(s.root, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	return out, nil
}

// SyncDir fsyncs dir.
func (s *LocalStorage) SyncDir(_ context.Context, dir string) error {
	d, err := os.Open(s.abs(dir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
