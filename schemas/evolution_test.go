package schemas

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hamba/avro/v2"
)

// TestOMOPSchemasEvolveFullTransitive holds every OMOP table schema to the contract's
// evolution policy (docs/topics.md): FULL_TRANSITIVE compatibility with every released
// version under omop/released/, so that a subscriber on any released schema reads what the
// pipeline writes now, and one on the current schema reads everything written before. A
// release adds its schemas as omop/released/v<N>/ once published; a table new in this
// version has no released schema yet.
func TestOMOPSchemasEvolveFullTransitive(t *testing.T) {
	releases, err := filepath.Glob("omop/released/v*")
	if err != nil || len(releases) == 0 {
		t.Fatalf("no released schema versions under omop/released: %v", err)
	}
	compat := avro.NewSchemaCompatibility()
	for _, table := range OMOPTables() {
		text, err := OMOPSchema(table)
		if err != nil {
			t.Fatal(err)
		}
		current, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
		if err != nil {
			t.Fatalf("%s: current schema: %v", table, err)
		}
		for _, dir := range releases {
			b, err := os.ReadFile(filepath.Join(dir, table+".avsc"))
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			released, err := avro.ParseWithCache(string(b), "", &avro.SchemaCache{})
			if err != nil {
				t.Fatalf("%s in %s: %v", table, dir, err)
			}
			if err := compat.Compatible(current, released); err != nil {
				t.Errorf("%s: the current schema cannot read data written with %s's (BACKWARD): %v", table, dir, err)
			}
			if err := compat.Compatible(released, current); err != nil {
				t.Errorf("%s: %s's schema cannot read data written now (FORWARD): %v", table, dir, err)
			}
		}
	}
}
