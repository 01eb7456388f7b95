package acl

import (
	"fmt"
	"strings"

	"github.com/fhirstream/fhirstream/schemas"
)

// MarkdownTable is the grants of every command as a Markdown table, the one
// docs/security.md shows (TestSecurityDocTable holds the two together).
func MarkdownTable(topo schemas.Topology) (string, error) {
	var b strings.Builder
	b.WriteString("| command | resource | pattern | name | operation | for |\n|---|---|---|---|---|---|\n")
	for _, c := range Commands(topo) {
		grants, err := Derive(topo, c, Options{})
		if err != nil {
			return "", err
		}
		for i, g := range grants {
			cmd := ""
			if i == 0 {
				cmd = "`" + CommandLine(topo, c) + "`"
			}
			name := "`" + g.Name + "`"
			if g.Resource == Cluster {
				name = ""
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cmd, g.Resource, g.Pattern, name, g.Operation, g.Why)
		}
	}
	return b.String(), nil
}
