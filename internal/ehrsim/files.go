package ehrsim

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
)

// handleFile serves one export file: gzip when the client accepts it, byte ranges of the
// identity representation for resumption, and the download faults.
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Auth && !s.checkToken(w, r) {
		return
	}
	n := s.stats.FileRequests.Add(1)
	if k := s.cfg.Faults.ExpireTokensAfterFiles; k > 0 && n == int64(k) {
		s.revokeTokens()
	}
	if k := s.cfg.Faults.DropExportAfterFiles; k > 0 && n == int64(k) {
		s.mu.Lock()
		j := s.jobs[r.PathValue("job")]
		delete(s.jobs, r.PathValue("job"))
		s.mu.Unlock()
		if j != nil {
			s.stats.Dropped.Add(1)
			j.mu.Lock()
			j.remove()
			j.mu.Unlock()
		}
	}
	j := s.lookupJob(w, r)
	if j == nil {
		return
	}
	gen, err1 := strconv.Atoi(r.PathValue("gen"))
	idx, err2 := strconv.Atoi(r.PathValue("idx"))
	j.mu.Lock()
	if err1 != nil || err2 != nil || idx < 0 || idx >= len(j.files) {
		j.mu.Unlock()
		writeOutcome(w, http.StatusNotFound, "error", "not-found", "no such file")
		return
	}
	ff := j.fileState[idx]
	if ff == nil {
		ff = &fileFaults{}
		j.fileState[idx] = ff
	}
	expired := gen != j.gen
	if !expired && ff.expired < s.cfg.Faults.ExpireFileURLs {
		// The URL expires now: later manifests carry URLs of the next generation.
		ff.expired++
		j.gen++
		expired = true
	}
	rangeReq := r.Header.Get("Range") != ""
	truncate := false
	if !expired && !rangeReq && ff.truncated < s.cfg.Faults.TruncateDownloads {
		ff.truncated++
		truncate = true
	}
	f := j.files[idx]
	j.mu.Unlock()
	if expired {
		writeOutcome(w, http.StatusGone, "error", "expired", "this file URL has expired; fetch the manifest again")
		return
	}
	file, err := os.Open(f.path)
	if err != nil {
		writeOutcome(w, http.StatusNotFound, "error", "not-found", "file is gone")
		return
	}
	defer file.Close()
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	w.Header().Set("Accept-Ranges", "bytes")
	var body io.Reader = file
	if truncate {
		body = io.LimitReader(file, f.size/2)
	}
	if rangeReq {
		s.stats.RangeRequests.Add(1)
		// ServeContent handles Range and If-Range on the identity representation.
		http.ServeContent(throttled(w, s.cfg.Faults.SlowBytesPerSec), r, "", time.Time{}, file)
		return
	}
	gzipOK := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
	if gzipOK && !truncate && f.gzPath != "" {
		if zf, err := os.Open(f.gzPath); err == nil {
			defer zf.Close()
			if st, err := zf.Stat(); err == nil {
				w.Header().Set("Content-Encoding", "gzip")
				w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
				w.WriteHeader(http.StatusOK)
				_, _ = io.Copy(throttled(w, s.cfg.Faults.SlowBytesPerSec), zf)
				return
			}
		}
		// No usable copy: compress as served, below.
	}
	if gzipOK {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		// The fastest level: the simulator often shares a machine (or a process, in
		// benchmarks) with the client, and compression effort here is not the client's
		// cost. Only filtered job files and the truncation fault come this way; source
		// files are served from their precompressed copies.
		zw, _ := gzip.NewWriterLevel(throttled(w, s.cfg.Faults.SlowBytesPerSec), gzip.BestSpeed)
		_, err := io.Copy(zw, body)
		if truncate {
			_ = zw.Flush()
			flush(w)
			// Drop the connection mid-body, as a failing proxy or a restart would.
			panic(http.ErrAbortHandler)
		}
		if err == nil {
			_ = zw.Close()
		}
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(f.size, 10))
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(throttled(w, s.cfg.Faults.SlowBytesPerSec), body)
	if truncate {
		flush(w)
		panic(http.ErrAbortHandler)
	}
}

func flush(w http.ResponseWriter) {
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
}

// throttledWriter writes at most bytesPerSec, in small chunks, flushing each.
type throttledWriter struct {
	w           http.ResponseWriter
	bytesPerSec int
}

func throttled(w http.ResponseWriter, bytesPerSec int) http.ResponseWriter {
	if bytesPerSec <= 0 {
		return w
	}
	return &throttledWriter{w: w, bytesPerSec: bytesPerSec}
}

func (t *throttledWriter) Header() http.Header        { return t.w.Header() }
func (t *throttledWriter) WriteHeader(statusCode int) { t.w.WriteHeader(statusCode) }

func (t *throttledWriter) Write(p []byte) (int, error) {
	chunk := max(t.bytesPerSec/20, 1) // 20 writes a second keeps the rate smooth
	written := 0
	for len(p) > 0 {
		n := min(chunk, len(p))
		m, err := t.w.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		if fl, ok := t.w.(http.Flusher); ok {
			fl.Flush()
		}
		p = p[n:]
		time.Sleep(time.Duration(float64(n) / float64(t.bytesPerSec) * float64(time.Second)))
	}
	return written, nil
}

// precompress writes a gzip copy of every source file into a directory of the server's
// own, once, as a real Bulk Data server stores its export files compressed: serving a
// gzip download then costs the simulator a file copy, not a compression. That matters
// because the simulator often shares a machine (or, in benchmarks, a process) with the
// client it serves, and compression effort spent here would be charged to the client.
func (s *Server) precompress() error {
	dir, err := os.MkdirTemp("", "ehrsim-gz-")
	if err != nil {
		return fmt.Errorf("ehrsim: %w", err)
	}
	s.gzDir = dir
	for i := range s.src.files {
		sf := &s.src.files[i]
		p := filepath.Join(dir, strconv.Itoa(i)+".ndjson.gz")
		if err := gzipFile(sf.path, p); err != nil {
			return fmt.Errorf("ehrsim: compress %s: %w", filepath.Base(sf.path), err)
		}
		sf.gzPath = p
	}
	return nil
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestSpeed)
	_, err = io.Copy(zw, in)
	return errors.Join(err, zw.Close(), out.Close())
}
