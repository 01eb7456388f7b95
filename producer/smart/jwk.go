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
	"math/big"
	"os"
	"strings"
)

// Algorithms the SMART Backend Services profile requires clients and servers to support.
const (
	AlgRS384 = "RS384"
	AlgES384 = "ES384"
)

// JWK is a JSON Web Key (RFC 7517) for the two key types SMART uses, RSA and EC P-384.
// Private members are empty in a public key.
type JWK struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	// RSA
	N  string `json:"n,omitempty"`
	E  string `json:"e,omitempty"`
	D  string `json:"d,omitempty"`
	P  string `json:"p,omitempty"`
	Q  string `json:"q,omitempty"`
	DP string `json:"dp,omitempty"`
	DQ string `json:"dq,omitempty"`
	QI string `json:"qi,omitempty"`
	// EC
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// Key is a private signing key with the algorithm and key id the client asserts with.
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
func GenerateKey(alg, kid string) (*Key, error) {
	if kid == "" {
		return nil, errors.New("generate key: a key id (kid) is required")
	}
	switch alg {
	case AlgRS384:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
		return &Key{Alg: alg, Kid: kid, Signer: k}, nil
	case AlgES384:
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate EC key: %w", err)
		}
		return &Key{Alg: alg, Kid: kid, Signer: k}, nil
	}
	return nil, fmt.Errorf("generate key: algorithm %q is not supported (want RS384 or ES384)", alg)
}

// PrivateJWK returns the private key as a JWK (to be stored with mode 0600).
func (k *Key) PrivateJWK() (JWK, error) {
	j, err := publicJWK(k.Signer.Public(), k.Alg, k.Kid)
	if err != nil {
		return JWK{}, err
	}
	j.KeyOps = []string{"sign"}
	switch p := k.Signer.(type) {
	case *rsa.PrivateKey:
		p.Precompute()
		j.D = b64(p.D.Bytes())
		j.P, j.Q = b64(p.Primes[0].Bytes()), b64(p.Primes[1].Bytes())
		j.DP, j.DQ = b64(p.Precomputed.Dp.Bytes()), b64(p.Precomputed.Dq.Bytes())
		j.QI = b64(p.Precomputed.Qinv.Bytes())
	case *ecdsa.PrivateKey:
		d, err := p.Bytes()
		if err != nil {
			return JWK{}, fmt.Errorf("encode EC key: %w", err)
		}
		j.D = b64(d)
	}
	return j, nil
}

// PublicJWKS returns the public key set to register with the EHR.
func (k *Key) PublicJWKS() (JWKS, error) {
	j, err := publicJWK(k.Signer.Public(), k.Alg, k.Kid)
	if err != nil {
		return JWKS{}, err
	}
	j.KeyOps = []string{"verify"}
	return JWKS{Keys: []JWK{j}}, nil
}

func publicJWK(pub crypto.PublicKey, alg, kid string) (JWK, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", Kid: kid, Alg: alg, N: b64(p.N.Bytes()), E: b64(big.NewInt(int64(p.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P384() {
			return JWK{}, fmt.Errorf("EC key on %s: ES384 needs P-384", p.Curve.Params().Name)
		}
		raw, err := p.Bytes()
		if err != nil || len(raw) != 97 {
			return JWK{}, fmt.Errorf("encode EC public key: %v", err)
		}
		x, y := raw[1:49], raw[49:]
		return JWK{Kty: "EC", Kid: kid, Alg: alg, Crv: "P-384", X: b64(x), Y: b64(y)}, nil
	}
	return JWK{}, fmt.Errorf("unsupported public key type %T", pub)
}

// PublicKey converts a public JWK to a Go public key, for verifiers.
func (j JWK) PublicKey() (crypto.PublicKey, error) {
	switch j.Kty {
	case "RSA":
		n, err1 := unb64(j.N)
		e, err2 := unb64(j.E)
		if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("JWK %q: bad RSA modulus or exponent", j.Kid)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		if j.Crv != "P-384" {
			return nil, fmt.Errorf("JWK %q: curve %q is not supported (want P-384)", j.Kid, j.Crv)
		}
		x, err1 := unb64(j.X)
		y, err2 := unb64(j.Y)
		if err := errors.Join(err1, err2); err != nil || len(x) != 48 || len(y) != 48 {
			return nil, fmt.Errorf("JWK %q: bad EC point", j.Kid)
		}
		raw := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P384(), raw)
		if err != nil {
			return nil, fmt.Errorf("JWK %q: %w", j.Kid, err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("JWK %q: key type %q is not supported (want RSA or EC)", j.Kid, j.Kty)
}

// privateKey converts a private JWK to a signing key.
func (j JWK) privateKey() (*Key, error) {
	if j.D == "" {
		return nil, fmt.Errorf("JWK %q holds no private key (no \"d\")", j.Kid)
	}
	pub, err := j.PublicKey()
	if err != nil {
		return nil, err
	}
	d, err := unb64(j.D)
	if err != nil {
		return nil, fmt.Errorf("JWK %q: bad private exponent: %w", j.Kid, err)
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		pb, err1 := unb64(j.P)
		qb, err2 := unb64(j.Q)
		if err := errors.Join(err1, err2); err != nil || len(pb) == 0 || len(qb) == 0 {
			return nil, fmt.Errorf("JWK %q: RSA private key needs p and q", j.Kid)
		}
		k := &rsa.PrivateKey{PublicKey: *p, D: new(big.Int).SetBytes(d),
			Primes: []*big.Int{new(big.Int).SetBytes(pb), new(big.Int).SetBytes(qb)}}
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("JWK %q: invalid RSA key: %w", j.Kid, err)
		}
		k.Precompute()
		return &Key{Alg: orDefault(j.Alg, AlgRS384), Kid: j.Kid, Signer: k}, nil
	case *ecdsa.PublicKey:
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), fixed(d, 48))
		if err != nil {
			return nil, fmt.Errorf("JWK %q: invalid EC key: %w", j.Kid, err)
		}
		if !k.PublicKey.Equal(p) {
			return nil, fmt.Errorf("JWK %q: private key does not match x, y", j.Kid)
		}
		return &Key{Alg: orDefault(j.Alg, AlgES384), Kid: j.Kid, Signer: k}, nil
	}
	return nil, fmt.Errorf("JWK %q: unsupported key", j.Kid)
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
	switch {
	case strings.HasPrefix(trimmed, "-----BEGIN"):
		pk, err := parsePEM([]byte(trimmed))
		if err != nil {
			return nil, err
		}
		if wantKid == "" {
			return nil, errors.New("a PEM key carries no key id: give --kid")
		}
		k = &Key{Kid: wantKid, Signer: pk}
		switch pk.(type) {
		case *rsa.PrivateKey:
			k.Alg = AlgRS384
		case *ecdsa.PrivateKey:
			k.Alg = AlgES384
		}
	case strings.HasPrefix(trimmed, "{"):
		var probe struct {
			Keys json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, fmt.Errorf("not a JWK or JWKS: %w", err)
		}
		if probe.Keys != nil {
			var set JWKS
			if err := json.Unmarshal(raw, &set); err != nil {
				return nil, fmt.Errorf("JWKS: %w", err)
			}
			for _, j := range set.Keys {
				if j.D != "" && (wantKid == "" || j.Kid == wantKid) {
					pk, err := j.privateKey()
					if err != nil {
						return nil, err
					}
					k = pk
					break
				}
			}
			if k == nil {
				return nil, fmt.Errorf("JWKS holds no private key with kid %q", wantKid)
			}
		} else {
			var j JWK
			if err := json.Unmarshal(raw, &j); err != nil {
				return nil, fmt.Errorf("JWK: %w", err)
			}
			pk, err := j.privateKey()
			if err != nil {
				return nil, err
			}
			k = pk
			if wantKid != "" {
				k.Kid = wantKid
			}
		}
	default:
		return nil, errors.New("not a JWK, JWKS or PEM private key")
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

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// fixed left-pads b with zeros to n bytes, as JWK requires for EC coordinates.
func fixed(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
