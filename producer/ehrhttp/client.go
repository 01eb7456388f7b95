package ehrhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Options configure NewClient. The zero value verifies certificates against the
// system's roots.
type Options struct {
	// RootCAs verifies server certificates; nil uses the system's pool.
	RootCAs *x509.CertPool
	// ResponseHeaderTimeout bounds the wait for a response's headers; default 2 minutes.
	ResponseHeaderTimeout time.Duration
}

// LoadCAFile reads PEM certificates to trust besides the system's (a hospital's private
// CA), for Options.RootCAs.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// NewClient returns the HTTP client for requests to an EHR: TLS 1.2 or later with
// verified certificates, bounded waits for headers, and CheckRedirect, which refuses a
// redirect from https to http and drops the Authorization header once a redirect has
// left the origin of the request it was set on.
func NewClient(o Options) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	tr.ResponseHeaderTimeout = o.ResponseHeaderTimeout
	if tr.ResponseHeaderTimeout <= 0 {
		tr.ResponseHeaderTimeout = 2 * time.Minute
	}
	return &http.Client{Transport: tr, CheckRedirect: CheckRedirect}
}

// maxRedirects bounds a redirect chain.
const maxRedirects = 10

// CheckRedirect is the redirect rule of NewClient's clients. Every hop is checked
// against the one before it, not only the first: a downgrade from https to http is
// refused (the request, its token or the data it fetches would travel in cleartext),
// and the Authorization header is removed for good once any hop's origin (scheme, host
// and port) differs from the first request's.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return Permanent(fmt.Errorf("stopped after %d redirects", maxRedirects))
	}
	prev := via[len(via)-1]
	if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return Permanent(fmt.Errorf("refusing the redirect from %s to %s: it leaves https", RedactURL(prev.URL), RedactURL(req.URL)))
	}
	first := OriginOf(via[0].URL)
	for _, hop := range append(via[1:], req) {
		if OriginOf(hop.URL) != first {
			req.Header.Del("Authorization")
			break
		}
	}
	return nil
}

// IdleError is a request that received nothing (headers or body bytes) for Idle.
type IdleError struct{ Idle time.Duration }

func (e *IdleError) Error() string { return fmt.Sprintf("no data for %s", e.Idle) }

// Do sends req with hc. With idle > 0, the request, and later the reads of its body,
// fail with an *IdleError once nothing has arrived for idle: a server that stops sending
// mid-body cannot hold the fetcher forever.
func Do(hc *http.Client, req *http.Request, idle time.Duration) (*http.Response, error) {
	if idle <= 0 {
		return hc.Do(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	idleErr := &IdleError{Idle: idle}
	timer := time.AfterFunc(idle, func() { cancel(idleErr) })
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		timer.Stop()
		if context.Cause(ctx) == idleErr {
			err = fmt.Errorf("%w: %v", idleErr, err)
		}
		cancel(nil)
		return nil, err
	}
	timer.Reset(idle)
	resp.Body = &idleBody{rc: resp.Body, ctx: ctx, cancel: cancel, timer: timer, idle: idle, idleErr: idleErr}
	return resp, nil
}

type idleBody struct {
	rc      io.ReadCloser
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	idle    time.Duration
	idleErr *IdleError
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	// Once the idle timer has cancelled the request, even io.EOF is its doing: over TLS
	// a cancelled body can end as if complete. A body that truly ended as the timer fired
	// reads as stalled too, which costs the caller one needless resumption at its end.
	if err != nil && context.Cause(b.ctx) == b.idleErr {
		err = fmt.Errorf("%w: %v", b.idleErr, err)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}
