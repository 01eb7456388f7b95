package ehrsim

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Faults are switches that make the server fail the way real servers do. Counts apply to
// the whole server (Status*) or to each file (Truncate, Expire).
type Faults struct {
	Status429        int  // the first N status polls answer 429 Too Many Requests with Retry-After
	Status5xx        int  // the next N status polls answer 503 Service Unavailable
	TransientOutcome int  // the next N status polls answer 500 with an OperationOutcome, issue code "transient"
	FailExport       bool // the status answers 500 with a fatal OperationOutcome (code "exception")

	SlowBytesPerSec   int // throttle file downloads to this rate (0: unthrottled)
	TruncateDownloads int // the first N full downloads of each file drop the connection halfway
	ExpireFileURLs    int // the first N requests of each file answer 410 Gone and rotate its URL
	// ExpireTokensAfterFiles revokes every issued token once this many file requests have
	// been served: a token expiring mid-export (0: off).
	ExpireTokensAfterFiles int
	// DropExportAfterFiles forgets the export whose file is the Nth file request served
	// (0: off), as a server purging an export early would: its status and file URLs
	// then answer 404, so only a new kickoff recovers. It happens once per server.
	DropExportAfterFiles int

	ErrorLines   int // add an error file with this many OperationOutcome lines
	DeletedLines int // add a deleted file: one Bundle listing this many deleted Patients

	// PollRateLimit, when above 0, allows at most this many status polls per
	// PollRateWindow (default 1 minute); the poll over the limit, and every poll for
	// PollRateBlock after it (default 5 minutes), answers 429 with a Retry-After of the
	// block's remaining time, as rate-limiting gateways in front of EHRs do.
	PollRateLimit  int
	PollRateWindow time.Duration
	PollRateBlock  time.Duration

	// ReuseStatusURL hands out the same status URL for every export: a new kickoff
	// replaces the export served there, as some servers' job ids repeat.
	ReuseStatusURL bool

	// Quirks seen on the reference Bulk Data server; clients accept them only knowingly.

	// RetryAfterEpochMillis sends Retry-After as the epoch time in milliseconds at which
	// to retry, instead of delay-seconds or an HTTP date.
	RetryAfterEpochMillis bool
	// ContinuesOffByOne names, in continuesInFile, the output file after the one the
	// block really continues in.
	ContinuesOffByOne bool
	// WrongCount states each output file's count one higher than its resources.
	WrongCount bool
	// OverlappingDeleted serves the deleted list (DeletedLines) as two files that both
	// list one of the deletions.
	OverlappingDeleted bool
}

// faultState tracks the server-wide fault counters. It is guarded by Server.mu.
type faultState struct {
	statusFaults int
	polls        []time.Time // status polls inside the rate window
	blockedUntil time.Time
}

// statusFault answers a status poll with the next scheduled fault, if any.
func (s *Server) statusFault(w http.ResponseWriter) bool {
	f := s.cfg.Faults
	if s.rateLimited(w) {
		return true
	}
	s.mu.Lock()
	n := s.faults.statusFaults
	s.faults.statusFaults++
	s.mu.Unlock()
	switch {
	case n < f.Status429:
		w.Header().Set("Retry-After", s.retryAfter(s.cfg.RetryAfter))
		writeOutcome(w, http.StatusTooManyRequests, "error", "throttled", "simulated: too many requests")
	case n < f.Status429+f.Status5xx:
		writeOutcome(w, http.StatusServiceUnavailable, "error", "transient", "simulated: service unavailable")
	case n < f.Status429+f.Status5xx+f.TransientOutcome:
		writeOutcome(w, http.StatusInternalServerError, "error", "transient", "simulated: transient failure, retry")
	default:
		return false
	}
	return true
}

// rateLimited applies PollRateLimit to a status poll.
func (s *Server) rateLimited(w http.ResponseWriter) bool {
	f := s.cfg.Faults
	if f.PollRateLimit <= 0 {
		return false
	}
	window, block := f.PollRateWindow, f.PollRateBlock
	if window <= 0 {
		window = time.Minute
	}
	if block <= 0 {
		block = 5 * time.Minute
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := &s.faults
	if now.Before(fs.blockedUntil) {
		s.stats.RateLimited.Add(1)
		w.Header().Set("Retry-After", s.retryAfter(fs.blockedUntil.Sub(now)))
		writeOutcome(w, http.StatusTooManyRequests, "error", "throttled", "simulated: rate limit exceeded, blocked")
		return true
	}
	kept := fs.polls[:0]
	for _, t := range fs.polls {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	fs.polls = append(kept, now)
	if len(fs.polls) <= f.PollRateLimit {
		return false
	}
	fs.blockedUntil = now.Add(block)
	s.stats.RateLimited.Add(1)
	w.Header().Set("Retry-After", s.retryAfter(block))
	writeOutcome(w, http.StatusTooManyRequests, "error", "throttled", fmt.Sprintf("simulated: more than %d polls in %s", f.PollRateLimit, window))
	return true
}

// retryAfter is the Retry-After value for a wait of d: whole seconds rounded up, or
// with the RetryAfterEpochMillis quirk the epoch milliseconds of the time to retry.
func (s *Server) retryAfter(d time.Duration) string {
	if s.cfg.Faults.RetryAfterEpochMillis {
		return strconv.FormatInt(time.Now().Add(d).UnixMilli(), 10)
	}
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}
