package lakehouse

import (
	"context"
	"strings"
	"testing"
)

// A maintenance command never creates an empty lake: an embedded catalog that is not
// there is an error naming where it was looked for, and nothing is created.
func TestOpenExistingRefusesAMissingLake(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir() + "/nolake"
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Out: dir}, "no lake catalog at " + dir + "/" + CatalogFile},
		{Config{Kind: CatalogEmbedded, Out: "s3://bucket/lake"}, `not "s3://bucket/lake"`},
		{Config{Out: ""}, "local directory (--out)"},
	} {
		_, closeCat, err := OpenExisting(ctx, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.cfg, err, c.want)
		}
		closeCat()
	}
	if _, _, err := OpenExistingLake(ctx, Config{Out: dir}); err == nil {
		t.Error("OpenExistingLake opened a lake that is not there")
	}
}

// An existing embedded lake opens, rooted at its namespace.
func TestOpenExistingLakeRoot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cat, err := OpenCatalog(ctx, Config{Out: dir})
	if err != nil {
		t.Fatal(err)
	}
	_ = Close(cat)
	lk, closeLake, err := OpenExistingLake(ctx, Config{Out: dir, Namespace: "site1.a"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeLake()
	if strings.Join(lk.Root, "|") != "site1|a" || lk.Catalog == nil {
		t.Errorf("root %q, catalog %v", lk.Root, lk.Catalog)
	}
}
