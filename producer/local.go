package producer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/klauspost/compress/gzip"
)

// localName matches NDJSON file names that carry their resource type.
var localName = regexp.MustCompile(`^([A-Z][A-Za-z]+)(\.[0-9]+)?\.ndjson(\.gz)?$`)

// localFiles expands files and directories into the NDJSON files to publish.
func localFiles(paths []string) ([]*fileRun, error) {
	var out []*fileRun
	add := func(p string) error {
		m := localName.FindStringSubmatch(filepath.Base(p))
		if m == nil {
			return fmt.Errorf("%s: cannot tell the resource type; name files <Type>.ndjson or <Type>.<n>.ndjson[.gz]", p)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		out = append(out, &fileRun{kind: kindOutput, typ: m[1], index: len(out), url: abs})
		return nil
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("fetch --from: %w", err)
		}
		if !st.IsDir() {
			if err := add(p); err != nil {
				return nil, err
			}
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("fetch --from: %w", err)
		}
		for _, e := range entries {
			if !e.IsDir() && localName.MatchString(e.Name()) {
				if err := add(filepath.Join(p, e.Name())); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("fetch --from: no <Type>.ndjson files found")
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].url < out[j].url })
	return out, nil
}

type localFile struct {
	io.Reader
	closers []io.Closer
}

func (l *localFile) Close() error {
	var errs []error
	for _, c := range l.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// openLocal opens a local file at an uncompressed offset: a seek for plain files, a skip
// through the decompressor for gzip.
func openLocal(_ context.Context, f *fileRun, offset int64) (io.ReadCloser, error) {
	fh, err := os.Open(f.url)
	if err != nil {
		return nil, err
	}
	if filepath.Ext(f.url) != ".gz" {
		if _, err := fh.Seek(offset, io.SeekStart); err != nil {
			fh.Close()
			return nil, err
		}
		return fh, nil
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(fh, 1<<16))
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%s: %w", f.url, err)
	}
	if _, err := io.CopyN(io.Discard, zr, offset); err != nil {
		fh.Close()
		return nil, fmt.Errorf("%s: skip to byte %d: %w", f.url, offset, err)
	}
	return &localFile{Reader: zr, closers: []io.Closer{zr, fh}}, nil
}
