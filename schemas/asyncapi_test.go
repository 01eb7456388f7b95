package schemas

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The subscriber contract, docs/asyncapi.yaml, is written by hand for readers; these tests
// hold it to the code, so that a topic, header, error class or schema added to the code
// and not to the document fails here.

const asyncAPIPath = "../docs/asyncapi.yaml"

type asyncAPIDoc struct {
	Channels map[string]struct {
		Address    string         `yaml:"address"`
		Parameters map[string]any `yaml:"parameters"`
	} `yaml:"channels"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]struct {
				Enum []string `yaml:"enum"`
			} `yaml:"properties"`
		} `yaml:"schemas"`
		Messages map[string]struct {
			Payload struct {
				Schema struct {
					Ref string `yaml:"$ref"`
				} `yaml:"schema"`
			} `yaml:"payload"`
		} `yaml:"messages"`
	} `yaml:"components"`
}

func readAsyncAPI(t *testing.T) asyncAPIDoc {
	t.Helper()
	b, err := os.ReadFile(asyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc asyncAPIDoc
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", asyncAPIPath, err)
	}
	return doc
}

// stringConsts returns the string constants declared in a file of this package, by name.
func stringConsts(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				switch v := vs.Values[i].(type) {
				case *ast.BasicLit:
					if s, err := strconv.Unquote(v.Value); err == nil && v.Kind == token.STRING {
						out[name.Name] = s
					}
				case *ast.BinaryExpr: // DLQHeaderPrefix + "stage"
					x, _ := v.X.(*ast.Ident)
					y, _ := v.Y.(*ast.BasicLit)
					if x != nil && y != nil && out[x.Name] != "" {
						s, _ := strconv.Unquote(y.Value)
						out[name.Name] = out[x.Name] + s
					}
				}
			}
		}
	}
	return out
}

func TestAsyncAPIHasEveryTopic(t *testing.T) {
	doc := readAsyncAPI(t)
	addresses := map[string]bool{}
	for _, ch := range doc.Channels {
		addresses[ch.Address] = true
	}
	// The topology under the default prefix, with every optional node, names every topic
	// set; its <Type>/<table> placeholders are the document's parameters.
	placeholders := strings.NewReplacer("fhir.", "{prefix}.", "<Type>", "{resourceType}", "<table>", "{table}")
	for _, n := range MustTopics(DefaultPrefix).Topology(TopologyOptions{Deidentify: true}).Nodes {
		for _, sets := range [][]TopicSet{n.Inputs, n.Outputs, n.State} {
			for _, s := range sets {
				if want := placeholders.Replace(s.Name); !addresses[want] {
					t.Errorf("node %s's topics %s: no channel with address %q in %s", n.Name, s.Name, want, asyncAPIPath)
				}
			}
		}
	}
}

func TestAsyncAPIHasEveryHeader(t *testing.T) {
	doc := readAsyncAPI(t)
	documented := map[string][]string{}
	for _, name := range []string{"provenanceHeaders", "deadLetterHeaders"} {
		for h, p := range doc.Components.Schemas[name].Properties {
			documented[h] = p.Enum
		}
	}
	consts := stringConsts(t, "headers.go")
	for name, value := range consts {
		switch {
		case name == "DLQHeaderPrefix":
		case strings.HasPrefix(name, "ContentType") && name != "ContentTypeHeader":
			if !slices.Contains(documented[ContentTypeHeader], value) {
				t.Errorf("content type %s (%s) is not among the documented values of the %s header", value, name, ContentTypeHeader)
			}
		default:
			if _, ok := documented[value]; !ok {
				t.Errorf("header %s (%s) is not documented in %s", value, name, asyncAPIPath)
			}
		}
	}
	classes := documented[DLQErrorClass]
	for name, value := range stringConsts(t, "errorclass.go") {
		if !slices.Contains(classes, value) {
			t.Errorf("error class %s (%s) is not in the documented values of %s", value, name, DLQErrorClass)
		}
	}
}

func TestAsyncAPIHasEveryOMOPSchema(t *testing.T) {
	doc := readAsyncAPI(t)
	refs := map[string]bool{}
	for _, m := range doc.Components.Messages {
		if r := m.Payload.Schema.Ref; r != "" {
			refs[filepath.Base(r)] = true
		}
	}
	tableParam, _ := doc.Channels["omop"].Parameters["table"].(map[string]any)
	enum, _ := tableParam["enum"].([]any)
	for _, table := range OMOPTables() {
		if !refs[table+".avsc"] {
			t.Errorf("OMOP table %s: no message payload refers to its schema %s.avsc", table, table)
		}
		if !slices.Contains(enum, any(table)) {
			t.Errorf("OMOP table %s is not in the omop channel's table parameter", table)
		}
	}
}

// TestAsyncAPIDocumentValidates runs the AsyncAPI Initiative's parser over the document
// (docs/tools/asyncapi; `npm ci` there installs it, as .ci/run does). Without node or the
// parser it skips, unless FHIRSTREAM_TEST_ASYNCAPI=require (CI) makes that a failure.
func TestAsyncAPIDocumentValidates(t *testing.T) {
	missing := t.Skipf
	if os.Getenv("FHIRSTREAM_TEST_ASYNCAPI") == "require" {
		missing = t.Fatalf
	}
	tool := "../docs/tools/asyncapi"
	if _, err := os.Stat(filepath.Join(tool, "node_modules", "@asyncapi", "parser")); err != nil {
		missing("the AsyncAPI parser is not installed (npm ci --prefix %s): %v", tool, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	out, err := exec.Command(node, filepath.Join(tool, "validate.mjs"), asyncAPIPath).CombinedOutput()
	if err != nil {
		t.Fatalf("%s does not validate: %v\n%s", asyncAPIPath, err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
