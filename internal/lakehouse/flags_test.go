package lakehouse

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestBindFlags(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.BindFlags(fs)
	if c.Out != "lake" || c.Kind != CatalogEmbedded {
		t.Errorf("defaults: %+v", c)
	}
	err := fs.Parse([]string{"--catalog", "rest", "--catalog-uri", "https://c/api", "--catalog-namespace", "site1",
		"--catalog-property", "s3.endpoint=http://minio:9000, s3.region=eu", "--catalog-property", "a=b=c"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"s3.endpoint": "http://minio:9000", "s3.region": "eu", "a": "b=c"}
	if c.Kind != CatalogREST || c.URI != "https://c/api" || c.Namespace != "site1" || len(c.Properties) != len(want) {
		t.Fatalf("parsed: %+v", c)
	}
	for k, v := range want {
		if c.Properties[k] != v {
			t.Errorf("property %s = %q, want %q", k, c.Properties[k], v)
		}
	}
	if got := fs.Lookup("catalog-property").Value.String(); got != "s3.endpoint=http://minio:9000,s3.region=eu,a=b=c" {
		t.Errorf("flag value %q", got)
	}
	if err := fs.Parse([]string{"--catalog-property", "novalue"}); err == nil {
		t.Error("a property without = was accepted")
	}
}
