package goldlake_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirstream/fhirstream/internal/demo"
	"github.com/fhirstream/fhirstream/internal/gold"
	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/testlake"
)

// TestIntegrationGoldOnRESTCatalog runs the refresh and the vocabulary load against an
// Iceberg REST catalog (FHIRSTREAM_TEST_ICEBERG_REST, as deploy/iceberg/
// iceberg-rest-local.sh start prints it), under a namespace of its own: the omop tables
// of a demo lake are registered there (their data files added as they are), refreshed
// into <ns>.cdm, and read back by DuckDB through the REST catalog into the OHDSI DDL,
// where every conformance check holds. Refreshing again with the same input is a no-op.
func TestIntegrationGoldOnRESTCatalog(t *testing.T) {
	uri := os.Getenv("FHIRSTREAM_TEST_ICEBERG_REST")
	if uri == "" {
		t.Skip("FHIRSTREAM_TEST_ICEBERG_REST not set (deploy/iceberg/iceberg-rest-local.sh start prints it)")
	}
	demoLake, _ := runDemo(t, demo.Options{Patients: 15, Seed: 11, Vocab: testVocabulary})
	ctx := context.Background()
	src, err := lakehouse.Open(ctx, lakehouse.Config{Out: demoLake})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	root := "gold" + hex.EncodeToString(b)
	rest, err := lakehouse.Open(ctx, lakehouse.Config{Kind: lakehouse.CatalogREST, URI: uri, Namespace: root})
	if err != nil {
		t.Fatal(err)
	}
	defer rest.Close()
	for _, name := range gold.ClinicalTables {
		l, err := lakehouse.OMOPLayout(name)
		if err != nil {
			t.Fatal(err)
		}
		from, err := src.LoadTable(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		data, deletes, err := lakehouse.LiveFiles(ctx, from)
		if err != nil || len(deletes) > 0 {
			t.Fatalf("%s: %d delete files, %v", l, len(deletes), err)
		}
		to, err := rest.EnsureTable(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 {
			continue
		}
		var paths []string
		for _, df := range data {
			paths = append(paths, df.FilePath())
		}
		tx := to.NewTransaction()
		if err := tx.AddFiles(ctx, paths, nil, false); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := goldlake.Refresh(ctx, rest, goldlake.Options{VocabularyDir: testVocabulary})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Namespace != root+".cdm" || rep.VocabularyLoad == nil || len(rep.NotBuilt) > 0 {
		t.Errorf("refresh: namespace %s, vocabulary load %v, not built %v", rep.Namespace, rep.VocabularyLoad != nil, rep.NotBuilt)
	}
	spec := testlake.RESTCatalog("rest", uri)
	res := conformantIn(t, filepath.Join(t.TempDir(), "unused"), goldRead{catalog: &spec, namespace: root + ".cdm"}, true)
	for _, table := range goldlake.Tables() {
		if got, want := res.Counts[table], rep.Rows(table); got != want {
			t.Errorf("%s: DuckDB reads %d rows through the REST catalog, the refresh wrote %d", table, got, want)
		}
	}
	again, err := goldlake.Refresh(ctx, rest, goldlake.Options{VocabularyDir: testVocabulary})
	if err != nil || !again.Current || again.VocabularyLoad != nil {
		t.Errorf("second refresh: current %v, reloaded the vocabulary %v, %v", again != nil && again.Current, again != nil && again.VocabularyLoad != nil, err)
	}
}
