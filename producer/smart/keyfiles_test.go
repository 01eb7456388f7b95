package smart_test

import (
	"bytes"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirstream/fhirstream/producer/smart"
)

// The private key goes to a new file only readable by its owner, the public set to the
// other file and back to the caller, and the two hold the same key.
func TestWriteKeyFiles(t *testing.T) {
	k, err := smart.GenerateKey(smart.AlgES384, "k1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pubPath := filepath.Join(dir, "key.jwk"), filepath.Join(dir, "jwks.json")
	pub, err := smart.WriteKeyFiles(k, priv, pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v, mode %v", err, fi.Mode())
	}
	var jwk jose.JSONWebKey
	if b, err := os.ReadFile(priv); err != nil || json.Unmarshal(b, &jwk) != nil || jwk.IsPublic() || jwk.KeyID != "k1" {
		t.Fatalf("private key file does not hold the private JWK k1: %v", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(pub, &set); err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() || strings.Contains(string(pub), `"d"`) {
		t.Fatalf("public set %s: %v", pub, err)
	}
	pubOfPriv := jwk.Public()
	want, err := pubOfPriv.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := set.Keys[0].Thumbprint(crypto.SHA256); err != nil || !bytes.Equal(got, want) {
		t.Error("the public set holds another key than the private file")
	}
	if onDisk, err := os.ReadFile(pubPath); err != nil || !bytes.Equal(onDisk, pub) {
		t.Errorf("public file differs from the set returned: %v", err)
	}
	if _, err := smart.WriteKeyFiles(k, priv, ""); err == nil || !strings.Contains(err.Error(), "refusing to overwrite an existing key") {
		t.Errorf("second write over the key: %v", err)
	}
}
