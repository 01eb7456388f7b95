package bulk

import "testing"

// The names listed are the ones ParseQuirks accepts, in the order of KnownQuirks.
func TestKnownQuirkNames(t *testing.T) {
	if got := KnownQuirkNames(); got != "retry-after-epoch-ms, continues-in-file-off-by-one, manifest-count, overlapping-deleted" {
		t.Errorf("got %q", got)
	}
	qs, err := ParseQuirks([]string{"retry-after-epoch-ms", "continues-in-file-off-by-one", "manifest-count", "overlapping-deleted"})
	if err != nil || len(qs) != len(KnownQuirks) {
		t.Errorf("the listed names do not all parse: %v, %v", qs, err)
	}
}
