package consumers

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The stage vocabulary keeps Kafka out of the stages: a stage package is logic only
// (records in, records out or a rejection) and can be built and tested without a broker
// or a Kafka client. Consuming, producing and transactions live in the runtime; the lake
// sink's commit loop is the one other place that talks to Kafka.
var kafkaAllowed = map[string]bool{
	"github.com/fhirstream/fhirstream/consumers/runtime": true,
	"github.com/fhirstream/fhirstream/consumers/sink":    true,
}

const franzGo = "github.com/twmb/franz-go"

func TestStagePackagesImportNoKafkaClient(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps=false", "-json", "./...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, franzGo) && !kafkaAllowed[p.ImportPath] {
				t.Errorf("%s imports %s: only the runtime and the sink's commit loop may", p.ImportPath, imp)
			}
		}
		if kafkaAllowed[p.ImportPath] || strings.HasSuffix(p.ImportPath, "/dlq") {
			continue // the dlq tool runs on the runtime, so it depends on the client through it
		}
		checked++
		for _, dep := range p.Deps {
			if strings.HasPrefix(dep, franzGo) {
				t.Errorf("%s depends on %s: a stage package must build without any Kafka client", p.ImportPath, dep)
				break
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d stage packages: is the test run from consumers/?", checked)
	}
}
