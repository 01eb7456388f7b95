package lakehouse

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// BindFlags binds the flags that name the lake's Iceberg catalog (--out, --catalog,
// --catalog-uri, ...) to c, as every command that opens the lake has them.
func (c *Config) BindFlags(f *pflag.FlagSet) {
	f.StringVar(&c.Out, "out", "lake", "lake directory of the embedded catalog: <out>/catalog.db and <out>/warehouse (env FHIRSTREAM_OUT)")
	f.StringVar(&c.Kind, "catalog", CatalogEmbedded, "Iceberg catalog: embedded (SQLite under --out, no server) or rest (env FHIRSTREAM_CATALOG)")
	f.StringVar(&c.URI, "catalog-uri", "", "REST catalog base URL, e.g. https://catalog.example.org/api/catalog (env FHIRSTREAM_CATALOG_URI)")
	f.StringVar(&c.Warehouse, "warehouse", "", "where new tables go: embedded, a directory or s3://bucket/prefix (default <out>/warehouse); rest, the warehouse the server expects (env FHIRSTREAM_WAREHOUSE)")
	f.StringVar(&c.CredentialFile, "catalog-credential-file", "", "file holding the REST catalog's OAuth2 client credential client_id:secret (default: env "+EnvCredential+")")
	f.StringVar(&c.TokenFile, "catalog-token-file", "", "file holding a bearer token for the REST catalog (default: env "+EnvToken+")")
	f.StringVar(&c.Namespace, "catalog-namespace", "", "namespace the lake's namespaces (omop, fhir, bronze) live under, e.g. site1: several lakes in one catalog (env FHIRSTREAM_CATALOG_NAMESPACE)")
	f.Var(&propertyList{m: &c.Properties}, "catalog-property", "extra catalog property key=value, repeatable, e.g. s3.endpoint=http://minio:9000 (env FHIRSTREAM_CATALOG_PROPERTY, comma separated)")
}

// propertyList is a repeatable key=value flag filling a map.
type propertyList struct {
	m    *map[string]string
	list []string
}

func (p *propertyList) String() string { return strings.Join(p.list, ",") }
func (p *propertyList) Type() string   { return "key=value" }

func (p *propertyList) Set(v string) error {
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q is not key=value", kv)
		}
		if *p.m == nil {
			*p.m = map[string]string{}
		}
		(*p.m)[k] = val
		p.list = append(p.list, kv)
	}
	return nil
}
