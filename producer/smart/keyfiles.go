package smart

import (
	"encoding/json"
	"fmt"
	"os"
)

// WriteKeyFiles writes k as 'fhirstream keys generate' does: the private JWK to privPath,
// created with mode 0600 and never over an existing file, and, when jwksPath is not
// empty, the public JWKS to jwksPath (mode 0644: it is public, for the EHR's admin or a
// web server serving the jku). It returns the public JWKS as written, for printing.
func WriteKeyFiles(k *Key, privPath, jwksPath string) ([]byte, error) {
	priv, err := k.PrivateJWK()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(priv, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keys generate: encode the private key: %w", err)
	}
	f, err := os.OpenFile(privPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keys generate: %w (refusing to overwrite an existing key)", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("keys generate: write %s: %w", privPath, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("keys generate: %w", err)
	}
	pub, err := k.PublicJWKS()
	if err != nil {
		return nil, err
	}
	pb, err := json.MarshalIndent(pub, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keys generate: encode the public key set: %w", err)
	}
	pb = append(pb, '\n')
	if jwksPath != "" {
		if err := os.WriteFile(jwksPath, pb, 0o644); err != nil {
			return nil, fmt.Errorf("keys generate: write public JWKS: %w", err)
		}
	}
	return pb, nil
}
