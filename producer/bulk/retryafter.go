package bulk

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// epochMillisFloor is the smallest delay-seconds value read as epoch milliseconds: as
// seconds it is over 3,000 years, as milliseconds March 1973.
const epochMillisFloor = 100_000_000_000

// UnreadableRetryAfterError is a Retry-After value in none of the known forms; the
// client backs off instead.
type UnreadableRetryAfterError struct{ Value string }

func (e *UnreadableRetryAfterError) Error() string {
	return fmt.Sprintf("Retry-After %q is neither delay-seconds nor an HTTP date", e.Value)
}

// QuirkError is a server quirk met and not accepted.
type QuirkError struct {
	Quirk  Quirk
	Detail string
}

func (e *QuirkError) Error() string { return e.Detail + "; " + e.Quirk.Hint() }

// Permanent reports that retrying cannot help: the server keeps its quirk.
func (e *QuirkError) Permanent() bool { return true }

// ParseRetryAfter reads a Retry-After value as a wait from now: delay-seconds or an HTTP
// date (RFC 9110 §10.2.3). A number too large to be seconds is epoch milliseconds (a
// server quirk), read as such when epochMillis is set and a *QuirkError otherwise. A
// value in no known form is an *UnreadableRetryAfterError. Dates past are a wait of 0.
func ParseRetryAfter(v string, now time.Time, epochMillis bool) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		switch {
		case n < 0:
			return 0, &UnreadableRetryAfterError{Value: ehrhttp.Bound(v, 40)}
		case n >= epochMillisFloor && epochMillis:
			return max(time.UnixMilli(n).Sub(now), 0), nil
		case n >= epochMillisFloor:
			return 0, &QuirkError{Quirk: QuirkRetryAfterEpochMillis, Detail: fmt.Sprintf(
				"Retry-After: %d is no delay in seconds (that would be over 3,000 years) but reads as epoch milliseconds, %s",
				n, time.UnixMilli(n).UTC().Format(time.RFC3339))}
		}
		return time.Duration(n) * time.Second, nil
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), nil
	}
	return 0, &UnreadableRetryAfterError{Value: ehrhttp.Bound(v, 40)}
}
