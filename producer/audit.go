package producer

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/valyala/fastjson"

	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
)

// saveManifest writes the audit copy of each manifest page to ManifestDir: mode 0600 in
// a directory of mode 0700 (a manifest says which data was exported, and when), and
// every URL without its query, which for signed URLs is a credential.
func (cfg *Config) saveManifest(m *bulk.Manifest, statusURL string) error {
	if cfg.ManifestDir == "" {
		return nil
	}
	if err := os.MkdirAll(cfg.ManifestDir, 0o700); err != nil {
		return fmt.Errorf("manifest dir: %w", err)
	}
	base := "manifest-" + hashID(statusURL)[:12] + "-" + m.TransactionTime.UTC().Format("20060102T150405Z")
	for i, p := range m.Pages {
		page, err := redactManifest(p)
		if err != nil {
			return fmt.Errorf("save manifest: %w", err)
		}
		if err := writePrivate(filepath.Join(cfg.ManifestDir, fmt.Sprintf("%s.%d.json", base, i+1)), page); err != nil {
			return fmt.Errorf("save manifest: %w", err)
		}
	}
	return nil
}

// redactManifest returns a manifest page with the query of each file, continuation and
// link URL removed, everything else as the server sent it.
func redactManifest(page []byte) ([]byte, error) {
	var a fastjson.Arena
	v, err := fastjson.ParseBytes(page)
	if err != nil {
		return nil, fmt.Errorf("manifest page: %w", err)
	}
	redactField := func(o *fastjson.Value, field string) {
		if s := o.GetStringBytes(field); s != nil {
			o.Set(field, a.NewString(ehrhttp.Redact(string(s))))
		}
	}
	for _, list := range []string{"output", "error", "deleted", "link"} {
		for _, e := range v.GetArray(list) {
			redactField(e, "url")
			redactField(e, "continuesInFile")
		}
	}
	return v.MarshalTo(nil), nil
}

// writePrivate writes b to name with mode 0600, replacing any file there whole (a file
// left by an older run keeps its mode when merely truncated).
func writePrivate(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".manifest-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), name)
	}
	if werr != nil {
		os.Remove(f.Name())
	}
	return werr
}
