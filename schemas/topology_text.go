package schemas

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the topology as `fhirstream topology` prints it: one block per node,
// in data-flow order.
func (tp Topology) WriteText(w io.Writer) error {
	names := func(sets []TopicSet) string {
		out := make([]string, len(sets))
		for i, s := range sets {
			out[i] = s.Name
		}
		return strings.Join(out, ", ")
	}
	var b strings.Builder
	for i, n := range tp.Nodes {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s (%s)", n.Name, n.Role)
		if n.Optional {
			b.WriteString(", optional")
		}
		fmt.Fprintf(&b, ": %s\n", n.Summary)
		row := func(label, value string) {
			if value != "" {
				fmt.Fprintf(&b, "  %-16s %s\n", label, value)
			}
		}
		group := n.Group
		if n.GroupIsPrefix && group != "" {
			group += "*"
		}
		row("consumer group", group)
		row("reads", names(n.Inputs))
		row("writes", names(n.Outputs))
		row("state", names(n.State))
		if n.TransactionalIDPrefix != "" {
			row("transactional id", n.TransactionalIDPrefix+"*")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMermaid writes the topology as a Mermaid flowchart: nodes as boxes, topic sets as
// stadiums, an edge per read and write (state topics both ways).
func (tp Topology) WriteMermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	ids := map[string]string{}
	topicID := func(s TopicSet) string {
		id, ok := ids[s.Name]
		if !ok {
			id = fmt.Sprintf("t%d", len(ids))
			ids[s.Name] = id
			fmt.Fprintf(&b, "  %s([\"%s\"])\n", id, mermaidText(s.Name))
		}
		return id
	}
	for i, n := range tp.Nodes {
		node := fmt.Sprintf("n%d", i)
		fmt.Fprintf(&b, "  %s[\"%s\"]\n", node, n.Name)
		for _, s := range n.Inputs {
			fmt.Fprintf(&b, "  %s --> %s\n", topicID(s), node)
		}
		for _, s := range n.Outputs {
			fmt.Fprintf(&b, "  %s --> %s\n", node, topicID(s))
		}
		for _, s := range n.State {
			fmt.Fprintf(&b, "  %s <--> %s\n", node, topicID(s))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText escapes what Mermaid would read as markup in a label ("<Type>").
func mermaidText(s string) string {
	return strings.NewReplacer("<", "#lt;", ">", "#gt;").Replace(s)
}
