package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	_ "github.com/apache/iceberg-go/catalog/rest" // registers the "rest" catalog type
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver ("sqlite") of the embedded catalog
)

// Catalog kinds.
const (
	// CatalogEmbedded is iceberg-go's SQL catalog on a SQLite file under the lake
	// directory: no server, safe for several processes on one machine.
	CatalogEmbedded = "embedded"
	// CatalogREST is a catalog speaking the Iceberg REST protocol (Apache Iceberg's
	// RESTCatalogServer, Polaris, Lakekeeper, Nessie, Glue and S3 Tables endpoints).
	CatalogREST = "rest"
)

// Environment variables the catalog secrets are read from (never from flags: flag values
// show in process listings and shell histories).
const (
	// EnvCredential is an OAuth2 client credential "client_id:client_secret" (the REST
	// spec's client-credentials flow).
	EnvCredential = "FHIRSTREAM_CATALOG_CREDENTIAL"
	// EnvToken is a bearer token sent as is.
	EnvToken = "FHIRSTREAM_CATALOG_TOKEN"
)

// Config says which catalog to open.
type Config struct {
	// Kind is CatalogEmbedded (default) or CatalogREST.
	Kind string
	// Out is the lake directory of the embedded catalog: the catalog database is
	// <Out>/catalog.db and the default warehouse <Out>/warehouse.
	Out string
	// URI is the REST catalog's base URI.
	URI string
	// Warehouse is where new tables are placed: for the embedded catalog a directory or
	// an object-store URL (s3://bucket/prefix; default <Out>/warehouse); for REST the
	// warehouse name or location the server expects (optional).
	Warehouse string
	// CredentialFile and TokenFile name files holding the REST secrets; the environment
	// (EnvCredential, EnvToken) is read when they are empty.
	CredentialFile, TokenFile string
	// Properties are passed to the catalog as they are (e.g. "s3.endpoint",
	// "s3.region", "oauth2-server-uri", "scope").
	Properties map[string]string
	// Namespace, when set, is the namespace the lake's namespaces live in, dot-separated
	// ("site1" gives site1.omop.person): several lakes (sites, tests) in one catalog.
	Namespace string
}

// Lake is an open catalog and the namespace the lake's tables live under.
type Lake struct {
	Catalog catalog.Catalog
	// Root is the parent namespace of omop, fhir and bronze (empty: the catalog's top).
	Root []string
}

// Ident is the catalog identifier of layout l's table, e.g. ["omop", "person"].
func (lk *Lake) Ident(l *Layout) []string {
	return append(append(append([]string(nil), lk.Root...), l.Namespace), l.Name)
}

// Namespace is the catalog namespace of one of the lake's namespaces (NamespaceOMOP, ...).
func (lk *Lake) Namespace(ns string) []string {
	return append(append([]string(nil), lk.Root...), ns)
}

// Close closes the catalog when it holds resources (the embedded catalog's database).
func (lk *Lake) Close() error { return Close(lk.Catalog) }

// Name of the catalog in the embedded catalog's database (the SQL catalog's
// catalog_name column). Engines that open <out>/catalog.db directly (pyiceberg's
// SqlCatalog) use this name.
const EmbeddedCatalogName = "fhirstream"

// CatalogFile and WarehouseDir are the embedded catalog's files under Config.Out.
const (
	CatalogFile  = "catalog.db"
	WarehouseDir = "warehouse"
)

// Open opens the lake cfg names; Close it when done.
func Open(ctx context.Context, cfg Config) (*Lake, error) {
	var root []string
	if cfg.Namespace != "" {
		root = strings.Split(cfg.Namespace, ".")
		for _, part := range root {
			if part == "" {
				return nil, fmt.Errorf("lakehouse: namespace %q has an empty level", cfg.Namespace)
			}
		}
	}
	cat, err := OpenCatalog(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Lake{Catalog: cat, Root: root}, nil
}

// OpenCatalog opens the catalog cfg names. Close it with Close.
func OpenCatalog(ctx context.Context, cfg Config) (catalog.Catalog, error) {
	switch cfg.Kind {
	case "", CatalogEmbedded:
		return openEmbedded(ctx, cfg)
	case CatalogREST:
		return openREST(ctx, cfg)
	}
	return nil, fmt.Errorf("lakehouse: unknown catalog %q (want %s or %s)", cfg.Kind, CatalogEmbedded, CatalogREST)
}

func openEmbedded(ctx context.Context, cfg Config) (catalog.Catalog, error) {
	if cfg.Out == "" {
		return nil, errors.New("lakehouse: the embedded catalog needs a lake directory (--out)")
	}
	if strings.Contains(cfg.Out, "://") {
		return nil, fmt.Errorf("lakehouse: the embedded catalog lives in a local directory, not %s; put the warehouse on an object store with --warehouse", cfg.Out)
	}
	dir, err := filepath.Abs(cfg.Out)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lakehouse: %w", err)
	}
	warehouse := cfg.Warehouse
	if warehouse == "" {
		warehouse = filepath.Join(dir, WarehouseDir)
	}
	if !strings.Contains(warehouse, "://") {
		abs, err := filepath.Abs(warehouse)
		if err != nil {
			return nil, err
		}
		warehouse = (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	}
	// WAL lets readers run beside a writer; the busy timeout makes concurrent writers
	// (several sink processes, the three sinks of one process) wait for each other
	// instead of failing, and BEGIN IMMEDIATE (_txlock) is what lets the timeout apply: a
	// transaction that reads first and then writes would otherwise have to upgrade its
	// lock, which SQLite refuses at once with SQLITE_BUSY when another writer holds it
	// (waiting could deadlock), and the catalog's table creation does exactly that.
	dsn := (&url.URL{Scheme: "file", Path: filepath.Join(dir, CatalogFile),
		RawQuery: "_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_txlock=immediate"}).String()
	props := iceberg.Properties{
		"type":                "sql",
		"uri":                 dsn,
		sqlcat.DriverKey:      "sqlite",
		sqlcat.DialectKey:     string(sqlcat.SQLite),
		"init_catalog_tables": "true",
		"warehouse":           warehouse,
	}
	for k, v := range cfg.Properties {
		props[k] = v
	}
	cat, err := catalog.Load(ctx, EmbeddedCatalogName, props)
	if err != nil {
		return nil, fmt.Errorf("lakehouse: open embedded catalog %s: %w", filepath.Join(dir, CatalogFile), err)
	}
	return cat, nil
}

func openREST(ctx context.Context, cfg Config) (catalog.Catalog, error) {
	if cfg.URI == "" {
		return nil, errors.New("lakehouse: the REST catalog needs --catalog-uri")
	}
	u, err := url.Parse(cfg.URI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("lakehouse: catalog URI %q is not an http(s) URL", cfg.URI)
	}
	props := iceberg.Properties{"type": "rest", "uri": cfg.URI}
	if cfg.Warehouse != "" {
		props["warehouse"] = cfg.Warehouse
	}
	cred, err := secret(cfg.CredentialFile, EnvCredential)
	if err != nil {
		return nil, err
	}
	tok, err := secret(cfg.TokenFile, EnvToken)
	if err != nil {
		return nil, err
	}
	if cred != "" {
		props["credential"] = cred
	}
	if tok != "" {
		props["token"] = tok
	}
	for k, v := range cfg.Properties {
		props[k] = v
	}
	cat, err := catalog.Load(ctx, "rest", props)
	if err != nil {
		// The error may quote the request; it never holds the secrets, which travel in
		// the body of the token request and in headers.
		return nil, fmt.Errorf("lakehouse: open REST catalog %s: %w", u.Redacted(), err)
	}
	return cat, nil
}

// secret reads a secret from file (whitespace trimmed) or, without a file, from the
// environment variable env.
func secret(file, env string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv(env)), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("lakehouse: read secret file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Close closes cat when it holds resources (the embedded catalog's database).
func Close(cat catalog.Catalog) error {
	if c, ok := cat.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
