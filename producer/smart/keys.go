package smart

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Algorithms the SMART Backend Services profile requires clients and servers to support.
const (
	AlgRS384 = "RS384"
	AlgES384 = "ES384"
)

// Key is a private signing key with the algorithm and key id the client asserts with.
// JWK and JWKS encoding, decoding and thumbprints are go-jose's (JSONWebKey).
type Key struct {
	Alg    string
	Kid    string
	Signer crypto.Signer // *rsa.PrivateKey or *ecdsa.PrivateKey
	// JKU, when set, is sent as the assertion's jku header: the URL of the client's JWKS.
	JKU string
}

// String never prints key material, so a Key can be logged safely.
func (k *Key) String() string { return fmt.Sprintf("%s key %q", k.Alg, k.Kid) }

// GenerateKey makes a new private key for alg (RS384: RSA 2048 bits; ES384: P-384).
// An empty kid becomes the key's RFC 7638 thumbprint.
func GenerateKey(alg, kid string) (*Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case AlgRS384:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case AlgES384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	default:
		return nil, fmt.Errorf("generate key: algorithm %q is not supported (want RS384 or ES384)", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	k := &Key{Alg: alg, Kid: kid, Signer: signer}
	if k.Kid == "" {
		if k.Kid, err = k.Thumbprint(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Thumbprint is the key's RFC 7638 JWK thumbprint (SHA-256, base64url).
func (k *Key) Thumbprint() (string, error) {
	j := jose.JSONWebKey{Key: k.Signer.Public()}
	tp, err := j.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// PrivateJWK returns the private key as a JWK (to be stored with mode 0600).
func (k *Key) PrivateJWK() (jose.JSONWebKey, error) {
	j := jose.JSONWebKey{Key: k.Signer, KeyID: k.Kid, Algorithm: k.Alg, Use: "sig"}
	if !j.Valid() {
		return jose.JSONWebKey{}, fmt.Errorf("key %q cannot be encoded as a JWK", k.Kid)
	}
	return j, nil
}

// PublicJWKS returns the public key set to register with the EHR.
func (k *Key) PublicJWKS() (jose.JSONWebKeySet, error) {
	j, err := k.PrivateJWK()
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{j.Public()}}, nil
}

// LoadKey reads a private key from a JWK, a JWKS (the first private key, or the one
// whose kid is wantKid) or a PEM file (PKCS#8, PKCS#1 or SEC 1). For PEM, which carries
// no key id, kid must be given; alg defaults from the key type.
func LoadKey(path, wantKid, alg string) (*Key, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	k, err := ParseKey(raw, wantKid, alg)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKey is LoadKey on bytes.
func ParseKey(raw []byte, wantKid, alg string) (*Key, error) {
	trimmed := strings.TrimSpace(string(raw))
	var k *Key
	var err error
	switch {
	case strings.HasPrefix(trimmed, "-----BEGIN"):
		k, err = parsePEMKey([]byte(trimmed), wantKid)
	case strings.HasPrefix(trimmed, "{"):
		k, err = parseJWKKey(raw, wantKid)
	default:
		err = errors.New("not a JWK, JWKS or PEM private key")
	}
	if err != nil {
		return nil, err
	}
	if alg != "" {
		k.Alg = alg
	}
	if err := checkAlg(k); err != nil {
		return nil, err
	}
	if k.Kid == "" {
		return nil, errors.New("the key has no kid: give --kid")
	}
	return k, nil
}

func parsePEMKey(raw []byte, wantKid string) (*Key, error) {
	pk, err := parsePEM(raw)
	if err != nil {
		return nil, err
	}
	if wantKid == "" {
		return nil, errors.New("a PEM key carries no key id: give --kid")
	}
	return &Key{Kid: wantKid, Signer: pk, Alg: defaultAlg(pk)}, nil
}

// parseJWKKey reads a private JWK, or picks a private key from a JWKS.
func parseJWKKey(raw []byte, wantKid string) (*Key, error) {
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("not a JWK or JWKS: %w", err)
	}
	var j jose.JSONWebKey
	if probe.Keys != nil {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(raw, &set); err != nil {
			return nil, fmt.Errorf("JWKS: %w", err)
		}
		found := false
		for _, c := range set.Keys {
			if !c.IsPublic() && (wantKid == "" || c.KeyID == wantKid) {
				j, found = c, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("JWKS holds no private key with kid %q", wantKid)
		}
	} else {
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("JWK: %w", err)
		}
		if wantKid != "" {
			j.KeyID = wantKid
		}
	}
	signer, ok := j.Key.(crypto.Signer)
	if !ok || j.IsPublic() {
		return nil, fmt.Errorf("JWK %q holds no private key", j.KeyID)
	}
	alg := j.Algorithm
	if alg == "" {
		alg = defaultAlg(signer)
	}
	return &Key{Alg: alg, Kid: j.KeyID, Signer: signer}, nil
}

func defaultAlg(s crypto.Signer) string {
	switch s.(type) {
	case *rsa.PrivateKey:
		return AlgRS384
	case *ecdsa.PrivateKey:
		return AlgES384
	}
	return ""
}

func checkAlg(k *Key) error {
	switch s := k.Signer.(type) {
	case *rsa.PrivateKey:
		if k.Alg != AlgRS384 {
			return fmt.Errorf("an RSA key signs RS384, not %q", k.Alg)
		}
		if s.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits: at least 2048 are required", s.N.BitLen())
		}
	case *ecdsa.PrivateKey:
		if k.Alg != AlgES384 {
			return fmt.Errorf("an EC key signs ES384, not %q", k.Alg)
		}
		if s.Curve != elliptic.P384() {
			return errors.New("ES384 needs a P-384 key")
		}
	default:
		return fmt.Errorf("unsupported private key type %T", k.Signer)
	}
	return nil
}

func parsePEM(raw []byte) (crypto.Signer, error) {
	for len(raw) > 0 {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#8 key: %w", err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("PKCS#8 key of type %T cannot sign", k)
			}
			return s, nil
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#1 key: %w", err)
			}
			return k, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("SEC 1 key: %w", err)
			}
			return k, nil
		}
	}
	return nil, errors.New("no private key block in the PEM file")
}

// FileModeProblem describes why a file holding a secret (a private key, a client
// secret, a bearer token) is exposed: readable or writable by its group or by others.
// It returns "" when only the owner has access, or on systems without Unix modes.
func FileModeProblem(path string) string {
	st, err := os.Stat(path)
	if err != nil || runtime.GOOS == "windows" {
		return ""
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("%s has mode %04o: others than its owner can read or change it (chmod 600 %s)", path, perm, path)
	}
	return ""
}
