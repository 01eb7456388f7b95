package lakehouse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/iceberg-go/catalog"
)

// OpenExisting opens the catalog c names as the sinks do (OpenCatalog), for commands
// that maintain or read a lake: an embedded catalog must exist already, since such a
// command never creates an empty lake. The function returned closes the catalog.
func OpenExisting(ctx context.Context, c Config) (catalog.Catalog, func(), error) {
	noop := func() {}
	if c.Kind == "" || c.Kind == CatalogEmbedded {
		if c.Out == "" || strings.Contains(c.Out, "://") {
			return nil, noop, fmt.Errorf("the embedded catalog lives in a local directory (--out), not %q", c.Out)
		}
		db := filepath.Join(c.Out, CatalogFile)
		if _, err := os.Stat(db); err != nil {
			return nil, noop, fmt.Errorf("no lake catalog at %s (--out names the lake directory): %w", db, err)
		}
	}
	cat, err := OpenCatalog(ctx, c)
	if err != nil {
		return nil, noop, err
	}
	return cat, func() { _ = Close(cat) }, nil
}

// OpenExistingLake is OpenExisting as a Lake whose root is c.Namespace.
func OpenExistingLake(ctx context.Context, c Config) (*Lake, func(), error) {
	cat, closeCat, err := OpenExisting(ctx, c)
	if err != nil {
		return nil, closeCat, err
	}
	lk := &Lake{Catalog: cat}
	if c.Namespace != "" {
		lk.Root = strings.Split(c.Namespace, ".")
	}
	return lk, closeCat, nil
}
