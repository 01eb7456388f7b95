package bulk

import (
	"fmt"
	"slices"
	"strings"
)

// Quirk names a known way a Bulk Data server deviates from the IG. By default each one
// fails the run (a deviation may as well be data loss); an operator who knows the server
// accepts it with --accept-quirk, and it becomes a warning. The names are part of the
// command line: keep them stable.
type Quirk string

const (
	// QuirkRetryAfterEpochMillis: Retry-After carries the epoch time in milliseconds at
	// which to retry, instead of delay-seconds or an HTTP date.
	QuirkRetryAfterEpochMillis Quirk = "retry-after-epoch-ms"
	// QuirkContinuesOffByOne: an output entry's continuesInFile does not name the file
	// its last block continues in (the reference server names the one after it).
	QuirkContinuesOffByOne Quirk = "continues-in-file-off-by-one"
	// QuirkManifestCount: an output entry's count disagrees with the resources in it.
	QuirkManifestCount Quirk = "manifest-count"
	// QuirkOverlappingDeleted: deleted files list the same deletion more than once. The
	// fetcher publishes one tombstone per resource either way.
	QuirkOverlappingDeleted Quirk = "overlapping-deleted"
)

// KnownQuirks lists every quirk, in the order the help text shows them.
var KnownQuirks = []Quirk{QuirkRetryAfterEpochMillis, QuirkContinuesOffByOne, QuirkManifestCount, QuirkOverlappingDeleted}

// Quirks is a set of accepted quirks.
type Quirks []Quirk

// Has reports whether q is accepted.
func (qs Quirks) Has(q Quirk) bool { return slices.Contains(qs, q) }

// ParseQuirks reads quirk names.
func ParseQuirks(names []string) (Quirks, error) {
	var out Quirks
	for _, n := range names {
		q := Quirk(strings.TrimSpace(n))
		if !slices.Contains(KnownQuirks, q) {
			known := make([]string, len(KnownQuirks))
			for i, k := range KnownQuirks {
				known[i] = string(k)
			}
			return nil, fmt.Errorf("unknown server quirk %q: known are %s", n, strings.Join(known, ", "))
		}
		out = append(out, q)
	}
	return out, nil
}

// Hint is the advice appended to a failure a quirk explains.
func (q Quirk) Hint() string {
	return fmt.Sprintf("a known server quirk: --accept-quirk %s accepts it", q)
}
