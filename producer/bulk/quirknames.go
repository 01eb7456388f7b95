package bulk

import "strings"

// KnownQuirkNames lists the names of KnownQuirks, comma separated, as the help text and
// --accept-quirk's errors give them.
func KnownQuirkNames() string {
	names := make([]string, len(KnownQuirks))
	for i, q := range KnownQuirks {
		names[i] = string(q)
	}
	return strings.Join(names, ", ")
}
