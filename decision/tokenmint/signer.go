package tokenmint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Signer is a private key that mints tokens under one key id and algorithm,
// the way an issuer's signing key does.
type Signer struct {
	// Kid is the JOSE "kid" header of minted tokens and the kid of the
	// public JWK; "" mints tokens without a kid.
	Kid string
	// Alg is the JWS algorithm, e.g. "RS256", "ES256" or "EdDSA".
	Alg string
	// Key is *rsa.PrivateKey, *ecdsa.PrivateKey or ed25519.PrivateKey.
	Key crypto.Signer
}

// Key kinds, as KeyKind reports them and ExampleSigner accepts them.
const (
	KindRSA     = "rsa"
	KindEC      = "ec"
	KindEd25519 = "ed25519"
)

// NewSigner checks that alg can be used with key and returns a Signer. An
// empty alg picks the usual algorithm for the key (DefaultAlg).
func NewSigner(kid, alg string, key crypto.Signer) (*Signer, error) {
	if key == nil {
		return nil, errors.New("tokenmint: no signing key given")
	}
	if alg == "" {
		a, err := DefaultAlg(key.Public())
		if err != nil {
			return nil, err
		}
		alg = a
	}
	if err := CheckAlg(alg, key.Public()); err != nil {
		return nil, err
	}
	return &Signer{Kid: kid, Alg: alg, Key: key}, nil
}

// NewRSASigner returns a Signer over a fresh RSA 2048 key, signing RS256.
func NewRSASigner(kid string) (*Signer, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("tokenmint: generate RSA key: %w", err)
	}
	return NewSigner(kid, "RS256", k)
}

// NewECSigner returns a Signer over a fresh P-256 key, signing ES256.
func NewECSigner(kid string) (*Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tokenmint: generate P-256 key: %w", err)
	}
	return NewSigner(kid, "ES256", k)
}

// NewEd25519Signer returns a Signer over a fresh Ed25519 key, signing EdDSA.
func NewEd25519Signer(kid string) (*Signer, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tokenmint: generate Ed25519 key: %w", err)
	}
	return NewSigner(kid, "EdDSA", k)
}

// NewSignerOfKind returns a Signer over a fresh key of kind (KindRSA,
// KindEC or KindEd25519), signing with that kind's default algorithm.
func NewSignerOfKind(kind, kid string) (*Signer, error) {
	switch normalizeKind(kind) {
	case KindRSA:
		return NewRSASigner(kid)
	case KindEC:
		return NewECSigner(kid)
	case KindEd25519:
		return NewEd25519Signer(kid)
	}
	return nil, fmt.Errorf("tokenmint: unknown key kind %q: use rsa, ec or ed25519", kind)
}

// LoadSignerPEM reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) and
// returns a Signer for it. An empty alg picks the key's usual algorithm; an
// empty kid mints tokens without a kid header.
func LoadSignerPEM(path, kid, alg string) (*Signer, error) {
	key, err := ParsePrivateKeyPEMFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenmint: %w", err)
	}
	return NewSigner(kid, alg, key)
}

// ParsePrivateKeyPEMFile reads the file at path and decodes it with
// ParsePrivateKeyPEM; errors name the file.
func ParsePrivateKeyPEMFile(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKeyPEM decodes the first private key block of a PEM file.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key block found: expected \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\"")
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported PKCS#8 key type %T: use an RSA, ECDSA or Ed25519 key", k)
			}
			if _, err := KeyKind(s.Public()); err != nil {
				return nil, err
			}
			return s, nil
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#1 RSA private key: %w", err)
			}
			return k, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse SEC1 EC private key: %w", err)
			}
			return k, nil
		}
		// Skip other blocks (EC PARAMETERS, certificates) and keep looking.
	}
}

// KeyKind tells which kind of key pub is: KindRSA, KindEC or KindEd25519.
func KeyKind(pub crypto.PublicKey) (string, error) {
	switch pub.(type) {
	case *rsa.PublicKey:
		return KindRSA, nil
	case *ecdsa.PublicKey:
		return KindEC, nil
	case ed25519.PublicKey:
		return KindEd25519, nil
	}
	return "", fmt.Errorf("unsupported key type %T: use an RSA, ECDSA or Ed25519 key", pub)
}

// DefaultAlg is the algorithm a key of this kind usually signs with: RS256
// for RSA, ES256/ES384/ES512 by curve for ECDSA, EdDSA for Ed25519.
func DefaultAlg(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256", nil
	case *ecdsa.PublicKey:
		if a, ok := ecAlgByCurve[k.Curve.Params().Name]; ok {
			return a, nil
		}
		return "", fmt.Errorf("unsupported ECDSA curve %s: use P-256, P-384 or P-521", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "EdDSA", nil
	}
	return "", fmt.Errorf("unsupported key type %T: use an RSA, ECDSA or Ed25519 key", pub)
}

var ecAlgByCurve = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}

var rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// CheckAlg reports whether alg can sign with a key whose public half is
// pub, with an error that names the algorithms that would fit.
func CheckAlg(alg string, pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if slices.Contains(rsaAlgs, alg) {
			return nil
		}
		return fmt.Errorf("algorithm %q does not fit an RSA key: use one of %s", alg, strings.Join(rsaAlgs, ", "))
	case *ecdsa.PublicKey:
		want, ok := ecAlgByCurve[k.Curve.Params().Name]
		if !ok {
			return fmt.Errorf("unsupported ECDSA curve %s: use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
		if alg == want {
			return nil
		}
		return fmt.Errorf("algorithm %q does not fit an ECDSA %s key: use %s", alg, k.Curve.Params().Name, want)
	case ed25519.PublicKey:
		if alg == "EdDSA" || alg == "Ed25519" {
			return nil
		}
		return fmt.Errorf("algorithm %q does not fit an Ed25519 key: use EdDSA", alg)
	}
	return fmt.Errorf("unsupported key type %T: use an RSA, ECDSA or Ed25519 key", pub)
}

// Public returns the signer's public key.
func (s *Signer) Public() crypto.PublicKey { return s.Key.Public() }

// JWK returns the signer's public key as a JWK (JSON) with kid, alg and
// use "sig", as an issuer publishes it. It returns nil when the key is not
// an RSA, ECDSA or Ed25519 key.
func (s *Signer) JWK() (publicJWKJSON []byte) {
	b, err := s.jwkJSON()
	if err != nil {
		return nil
	}
	return b
}

func (s *Signer) jwkJSON() ([]byte, error) {
	if s == nil || s.Key == nil {
		return nil, errors.New("tokenmint: signer has no key")
	}
	k, err := jwk.PublicKeyOf(s.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("tokenmint: export public key: %w", err)
	}
	if s.Kid != "" {
		if err := k.Set(jwk.KeyIDKey, s.Kid); err != nil {
			return nil, err
		}
	}
	if s.Alg != "" {
		if err := k.Set(jwk.AlgorithmKey, s.Alg); err != nil {
			return nil, err
		}
	}
	if err := k.Set(jwk.KeyUsageKey, "sig"); err != nil {
		return nil, err
	}
	return json.Marshal(k)
}

// JWKS returns a JWK set ({"keys": [...]}, indented) holding the public keys
// of signers, in order; a signer whose key cannot be exported is left out.
func JWKS(signers ...*Signer) []byte {
	set := struct {
		Keys []json.RawMessage `json:"keys"`
	}{Keys: []json.RawMessage{}}
	for _, s := range signers {
		if b := s.JWK(); b != nil {
			set.Keys = append(set.Keys, b)
		}
	}
	out, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		// Every element is JSON jwx produced; this cannot happen.
		return []byte(`{"keys":[]}`)
	}
	return append(out, '\n')
}

func normalizeKind(kind string) string {
	switch strings.ToLower(kind) {
	case "rsa":
		return KindRSA
	case "ec", "ecdsa", "p256", "p-256":
		return KindEC
	case "ed25519", "ed", "eddsa":
		return KindEd25519
	}
	return ""
}
