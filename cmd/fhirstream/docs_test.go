package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// docsWithCommands are the pages a newcomer follows line by line.
var docsWithCommands = []string{"../../README.md", "../../deploy/README.md"}

// TestDocumentedCommandLinesParse runs every fhirstream command line of the README and
// deploy/README.md (in fenced code blocks, and inline code that starts with "fhirstream "
// and is not a template with <placeholders>, VALUES, [options] or a|b alternatives) with --help
// added, on the built binary: an
// unknown command, an unknown flag or a flag value of the wrong type fails the test, so
// the docs cannot drift from the CLI. make lines are checked with make -n (the target
// exists), and scripts under deploy/ must exist and be executable.
func TestDocumentedCommandLinesParse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "fhirstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	checked := 0
	for _, doc := range docsWithCommands {
		for _, line := range fencedCommandLines(t, doc) {
			args := shellWords(line.text)
			switch {
			case len(args) == 0:
			case args[0] == "fhirstream" || len(args) > 2 && args[0] == "go" && args[1] == "run" && strings.HasSuffix(args[2], "cmd/fhirstream"):
				if args[0] == "go" {
					args = args[2:]
				}
				cmd := exec.Command(bin, append(args[1:], "--help")...)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s:%d: %s\n  fails with --help: %v\n%s", doc, line.n, line.text, err, out)
				}
				checked++
			case args[0] == "make":
				cmd := exec.Command("make", append([]string{"-n", "-C", "../.."}, args[1:]...)...)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s:%d: %s\n  make -n fails: %v\n%s", doc, line.n, line.text, err, out)
				}
				checked++
			case strings.HasPrefix(args[0], "deploy/"):
				if st, err := os.Stat(filepath.Join("../..", args[0])); err != nil || st.Mode()&0o111 == 0 {
					t.Errorf("%s:%d: %s: %s is not an executable script of the repository", doc, line.n, line.text, args[0])
				}
				checked++
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d command lines found in %v: did the code blocks move?", checked, docsWithCommands)
	}
}

type docLine struct {
	n    int
	text string
}

// fencedCommandLines returns the lines of doc's sh, bash and console code blocks (and
// untagged ones), with comments cut, continuation lines joined, and a leading "$ "
// prompt and leading VAR=value assignments removed.
func fencedCommandLines(t *testing.T, doc string) []docLine {
	t.Helper()
	f, err := os.Open(doc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docLine
	in, shell := false, false
	var pending strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		if fence := strings.TrimSpace(raw); strings.HasPrefix(fence, "```") {
			if !in {
				lang := strings.TrimPrefix(fence, "```")
				shell = lang == "" || lang == "sh" || lang == "bash" || lang == "console" || lang == "shell"
			}
			in = !in
			continue
		}
		if !in || !shell {
			continue
		}
		text := raw
		if i := strings.Index(text, " #"); i >= 0 {
			text = text[:i]
		}
		if strings.HasPrefix(strings.TrimSpace(text), "#") {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(strings.TrimRight(text, " "), "\\"); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(text)
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(pending.String()), "$ "))
		pending.Reset()
		// Only the first command of a pipeline or list is ours to check.
		for _, sep := range []string{" | ", " && ", " ; ", " > ", " < ", " 2>"} {
			if i := strings.Index(line, sep); i >= 0 {
				line = line[:i]
			}
		}
		for {
			word, rest, _ := strings.Cut(line, " ")
			if name, _, ok := strings.Cut(word, "="); !ok || name == "" || strings.ContainsAny(name, "-./") {
				break
			}
			line = strings.TrimSpace(rest)
		}
		if line != "" {
			out = append(out, docLine{n: start, text: line})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return append(out, inlineCommandLines(t, doc)...)
}

// inlineCommandLines returns the inline code spans of doc outside code blocks that are
// complete fhirstream command lines.
func inlineCommandLines(t *testing.T, doc string) []docLine {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var out []docLine
	in := false
	for i, raw := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(raw), "```") {
			in = !in
			continue
		}
		if in {
			continue
		}
		parts := strings.Split(raw, "`")
		for j := 1; j < len(parts); j += 2 {
			span := strings.TrimSpace(parts[j])
			if strings.HasPrefix(span, "fhirstream ") && !strings.ContainsAny(span, "<>[]|…") && !hasPlaceholder(span) {
				out = append(out, docLine{n: i + 1, text: span})
			}
		}
	}
	return out
}

// hasPlaceholder reports whether a command line has an upper-case word standing for a
// value ("--patients N", "--out DIR", "--client ID=JWKS"); "ES384" is a value.
func hasPlaceholder(line string) bool {
	for _, w := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '=' }) {
		if strings.Trim(w, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == "" {
			return true
		}
	}
	return false
}

// shellWords splits a command line as a POSIX shell would, for the quoting the docs use:
// single and double quotes, no expansion.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}
