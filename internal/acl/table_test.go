package acl

import (
	"os"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/schemas"
)

// TestSecurityDocTable holds the ACL table of docs/security.md to what Derive gives for
// the default topology; after the topology changes, regenerate it with
// FHIRSTREAM_UPDATE_DOC=1 go test ./internal/acl -run TestSecurityDocTable.
func TestSecurityDocTable(t *testing.T) {
	want, err := MarkdownTable(schemas.MustTopics("").Topology(schemas.TopologyOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	const path = "../../docs/security.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("FHIRSTREAM_UPDATE_DOC") != "" {
		start, end := tableBounds(t, string(doc))
		out := string(doc[:start]) + want + string(doc[end:])
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !strings.Contains(string(doc), want) {
		t.Errorf("%s does not hold the derived ACL table; regenerate it with FHIRSTREAM_UPDATE_DOC=1 go test ./internal/acl -run TestSecurityDocTable. Want:\n%s", path, want)
	}
}

// tableBounds finds the ACL table: from its header line to the first line after it that
// is not a table row.
func tableBounds(t *testing.T, doc string) (start, end int) {
	t.Helper()
	start = strings.Index(doc, "| command | resource | pattern |")
	if start < 0 {
		t.Fatal("no ACL table header in docs/security.md")
	}
	end = start
	for end < len(doc) && doc[end] == '|' {
		nl := strings.IndexByte(doc[end:], '\n')
		if nl < 0 {
			return start, len(doc)
		}
		end += nl + 1
	}
	return start, end
}
