package ehrhttp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// permanentError marks an error that no retry can cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// Permanent marks err as permanent: callers stop at once instead of retrying.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, says retrying cannot help
// (a Permanent() bool method returning true).
func IsPermanent(err error) bool {
	for _, e := range chain(err) {
		if p, ok := e.(interface{ Permanent() bool }); ok && p.Permanent() {
			return true
		}
	}
	return false
}

// chain lists err and every error it wraps, depth first.
func chain(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		out = append(out, e)
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, w := range u.Unwrap() {
				walk(w)
			}
		}
	}
	walk(err)
	return out
}

// ClassifyNetwork marks a failed request's error permanent when a retry would meet the
// same answer: the name does not resolve, the certificate is not trusted, the URL's
// scheme is not served, or (before the server ever answered, reached false) nothing
// listens at the address. A refused connection after the server has answered is a
// restart or a load balancer's blip and stays transient, as do timeouts and resets.
func ClassifyNetwork(err error, reached bool) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return Permanent(fmt.Errorf("%w (the host name does not resolve)", err))
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certInvalid), errors.As(err, &verifyErr):
		return Permanent(fmt.Errorf("%w (the server's TLS certificate is not trusted; --ca-file adds a private CA)", err))
	case !reached && errors.Is(err, syscall.ECONNREFUSED):
		return Permanent(fmt.Errorf("%w (nothing listens there: check the URL)", err))
	case strings.Contains(err.Error(), "unsupported protocol scheme"):
		return Permanent(err)
	}
	return err
}

// Bound makes a string a server sent fit to echo: control and format characters
// become U+FFFD, invalid UTF-8 is replaced, and beyond n bytes it is cut with a note of
// its full length. Servers are not trusted to send short or printable text.
func Bound(s string, n int) string {
	full := len(s)
	if full > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r != ' ' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r)) {
			if r == '\n' || r == '\t' || r == '\r' {
				r = ' '
			} else {
				r = '\uFFFD'
			}
		}
		b.WriteRune(r)
	}
	if full > n {
		fmt.Fprintf(&b, "… (%d bytes)", full)
	}
	return b.String()
}

// maxURLLen bounds a URL in messages.
const maxURLLen = 300

// Redact returns u without its query, fragment and user information, which may carry
// signed-URL signatures, tokens or passwords, bounded for messages. An unparsable URL
// is not shown at all.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparsable URL>"
	}
	return RedactURL(p)
}

// RedactURL is Redact of a parsed URL.
func RedactURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment, c.User = "", false, "", "", nil
	return Bound(c.String(), maxURLLen)
}
