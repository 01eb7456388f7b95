package schemas

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

func TestTopologyWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := MustTopics("site-a").Topology(TopologyOptions{Deidentify: true}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"fetch (source): ",
		"  writes           site-a.raw.<Type>, site-a.dlq\n",
		"  consumer group   site-a-fhirstream-validate\n",
		"  reads            site-a.raw.<Type>\n",
		"deid (stage), optional: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestTopologyWriteMermaid(t *testing.T) {
	var b bytes.Buffer
	tp := MustTopics("fhir").Topology(TopologyOptions{})
	if err := tp.WriteMermaid(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "flowchart TD\n") {
		t.Fatalf("no flowchart header:\n%s", out)
	}
	if strings.ContainsAny(strings.ReplaceAll(strings.ReplaceAll(out, "<-->", ""), "-->", ""), "<>") {
		t.Errorf("unescaped < or > in a label:\n%s", out)
	}
	// Each topic set is declared once, and each node once.
	if n := strings.Count(out, `(["fhir.raw.#lt;Type#gt;"])`); n != 1 {
		t.Errorf("fhir.raw.<Type> declared %d times:\n%s", n, out)
	}
	for i, n := range tp.Nodes {
		if !strings.Contains(out, "  n"+strconv.Itoa(i)+`["`+n.Name+`"]`) {
			t.Errorf("node %s missing", n.Name)
		}
	}
}
