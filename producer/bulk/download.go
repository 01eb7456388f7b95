package bulk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// Reader streams one export file's identity bytes from an offset. When the connection
// drops mid-file it reconnects with a Range request from where it stopped (or, if the
// server ignores Range, re-reads and skips to that point), so callers see one unbroken
// stream. It asks for gzip on full downloads and decompresses transparently.
type Reader struct {
	c         *Client
	ctx       context.Context
	url       string
	withToken bool
	pos       int64 // identity bytes delivered so far, counted from the file's start
	body      io.ReadCloser
	failures  int
	// Reconnects counts resumptions after a dropped connection.
	Reconnects int
}

// Open returns a Reader of fileURL starting at byte offset. withToken sends the bearer
// token (manifest requiresAccessToken). Errors wrapping ErrExpired mean the URL is no
// longer valid; they may surface from Open or from Read.
func (c *Client) Open(ctx context.Context, fileURL string, withToken bool, offset int64) (*Reader, error) {
	r := &Reader{c: c, ctx: ctx, url: fileURL, withToken: withToken, pos: offset}
	if err := r.connect(); err != nil {
		return nil, err
	}
	return r, nil
}

// Offset is the identity-byte position of the next byte Read returns.
func (r *Reader) Offset() int64 { return r.pos }

// Close releases the connection.
func (r *Reader) Close() error {
	if r.body != nil {
		err := r.body.Close()
		r.body = nil
		return err
	}
	return nil
}

func (r *Reader) Read(p []byte) (int, error) {
	for {
		if r.body == nil {
			if err := r.connect(); err != nil {
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if n > 0 {
			r.failures = 0
		}
		if limit := r.c.MaxFileBytes; limit > 0 && r.pos > limit {
			r.Close()
			return n, ehrhttp.Permanent(fmt.Errorf("download %s: the file is larger than the %d-byte cap (--max-file-bytes)", ehrhttp.Redact(r.url), limit))
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		// A dropped connection, a stalled or truncated body: reconnect from r.pos on the
		// next call.
		r.body.Close()
		r.body = nil
		if r.ctx.Err() != nil {
			return n, r.ctx.Err()
		}
		r.failures++
		if r.failures >= r.c.MaxAttempts {
			return n, ehrhttp.Permanent(fmt.Errorf("download %s at byte %d: %w (gave up after %d attempts)", ehrhttp.Redact(r.url), r.pos, err, r.failures))
		}
		r.Reconnects++
		r.c.Log.Warn("bulk: download interrupted, resuming", "url", ehrhttp.Redact(r.url), "offset", r.pos, "err", err)
		if n > 0 {
			return n, nil
		}
		if err := sleepCtx(r.ctx, r.c.Backoff.Delay(r.failures-1)); err != nil {
			return 0, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// connect opens the body at r.pos, retrying transient failures.
func (r *Reader) connect() error {
	shown := ehrhttp.Redact(r.url)
	op := r.c.operation("download", r.url)
	for {
		resp, err := r.c.do(r.ctx, r.newRequest, r.withToken)
		if err != nil {
			if err := op.retry(r.ctx, nil, op.wrap(err)); err != nil {
				return err
			}
			continue
		}
		switch resp.StatusCode {
		case http.StatusOK:
			body, err := decoded(resp)
			if err != nil {
				resp.Body.Close()
				return ehrhttp.Permanent(fmt.Errorf("download %s: %w", shown, err))
			}
			if r.pos > 0 {
				// The server ignored Range: skip what was already delivered.
				if _, err := io.CopyN(io.Discard, body, r.pos); err != nil {
					body.Close()
					if err := op.retry(r.ctx, nil, fmt.Errorf("download %s: skipping to byte %d: %w", shown, r.pos, err)); err != nil {
						return err
					}
					continue
				}
			}
			r.body = body
			return nil
		case http.StatusPartialContent:
			start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
			if !ok || start != r.pos {
				resp.Body.Close()
				return ehrhttp.Permanent(fmt.Errorf("download %s: asked for byte %d, got Content-Range %q", shown, r.pos, ehrhttp.Bound(resp.Header.Get("Content-Range"), 60)))
			}
			body, err := decoded(resp)
			if err != nil {
				resp.Body.Close()
				return ehrhttp.Permanent(fmt.Errorf("download %s: %w", shown, err))
			}
			r.body = body
			return nil
		case http.StatusRequestedRangeNotSatisfiable:
			// Resuming exactly at the end of the file.
			drain(resp)
			r.body = io.NopCloser(strings.NewReader(""))
			return nil
		case http.StatusForbidden, http.StatusNotFound, http.StatusGone:
			oe := outcomeError("download", r.url, resp)
			resp.Body.Close()
			return ehrhttp.Permanent(fmt.Errorf("%w: %w", ErrExpired, oe))
		}
		oe := outcomeError("download", r.url, resp)
		resp.Body.Close()
		if err := op.retry(r.ctx, resp, oe); err != nil {
			return err
		}
	}
}

func (r *Reader) newRequest() (*http.Request, error) {
	req, err := http.NewRequest(http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+ndjson")
	if r.pos > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(r.pos, 10)+"-")
		req.Header.Set("Accept-Encoding", "identity")
	} else {
		// Set explicitly so the transport leaves the body compressed and this reader
		// counts identity bytes itself, which Range resumption needs.
		req.Header.Set("Accept-Encoding", "gzip")
	}
	return req, nil
}

func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	startS, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(startS, 10, 64)
	return n, err == nil
}

type gzipBody struct {
	*gzip.Reader
	raw io.ReadCloser
}

func (g gzipBody) Close() error { return errors.Join(g.Reader.Close(), g.raw.Close()) }

func decoded(resp *http.Response) (io.ReadCloser, error) {
	switch strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))) {
	case "", "identity":
		return resp.Body, nil
	case "gzip", "x-gzip":
		// gzip reads its input a byte at a time through a buffer; by default a 4 KiB one,
		// which at hundreds of MB/s is tens of thousands of socket reads per file.
		zr, err := gzip.NewReader(bufio.NewReaderSize(resp.Body, 256<<10))
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		return gzipBody{zr, resp.Body}, nil
	}
	return nil, fmt.Errorf("unsupported Content-Encoding %q", ehrhttp.Bound(resp.Header.Get("Content-Encoding"), 40))
}
