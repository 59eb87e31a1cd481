package decision

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// MaxKeySetBytes bounds a JWKS, read from a file or fetched.
const MaxKeySetBytes = 1 << 20

// ReadKeyFile reads and validates the JWKS file at path (ParseKeySet). It
// is how every command reads a jwks_file, and how the server's file key
// source rereads one that changed, so a file is accepted or refused the
// same way everywhere.
func ReadKeyFile(path string) ([]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeySetBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxKeySetBytes {
		return nil, errors.New("the JWKS file is larger than 1 MiB")
	}
	return ParseKeySet(data)
}

// keyMembers are the public members of each key type scopegate verifies
// with.
var keyMembers = map[string]string{"RSA": "n and e", "EC": "crv, x and y", "OKP": "crv and x"}

// ParseKeySet parses a JWKS (or a single JWK) into verification keys. Keys
// meant for encryption (use other than "sig", or key_ops without
// "verify") and key types scopegate cannot verify with are skipped; a set
// holding a private or symmetric key is refused outright, because
// publishing one is a leak the operator must hear about; a set with no
// usable key is an error.
func ParseKeySet(data []byte) ([]Key, error) {
	// Non-strict parsing keeps a key set usable when it also carries key
	// types this version does not understand (they become placeholders,
	// skipped below).
	// Malformed JSON is named by its byte offset, in encoding/json's words
	// rather than the JWK library's internals.
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not a valid JWKS: not JSON: %v (at byte %d)", se, se.Offset)
		}
		return nil, fmt.Errorf("not a valid JWKS: not JSON: %v", err)
	}
	set, err := jwk.Parse(data, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		return nil, fmt.Errorf("not a valid JWKS: %w", err)
	}
	var keys []Key
	var skipped []string
	for i := range set.Len() {
		k, ok := set.Key(i)
		if !ok {
			continue
		}
		kid, _ := k.KeyID()
		name := fmt.Sprintf("key %d", i)
		if kid != "" {
			name = fmt.Sprintf("key %q", kid)
		}
		if _, unsupported := k.(jwk.UnsupportedKey); unsupported {
			switch kty := k.KeyType().String(); kty {
			case "RSA", "EC", "OKP":
				// A type this version verifies with, which did not parse.
				skipped = append(skipped, name+": a malformed "+kty+" key: "+keyMembers[kty]+" must be base64url strings")
			default:
				skipped = append(skipped, name+": unsupported key type "+kty+" (use RSA, EC or OKP)")
			}
			continue
		}
		if _, sym := k.(jwk.SymmetricKey); sym {
			return nil, fmt.Errorf("%s is a symmetric (oct) key: a JWKS is public, so a shared secret in it is leaked; remove it and rotate the secret", name)
		}
		if priv, err := jwk.IsPrivateKey(k); err == nil && priv {
			return nil, fmt.Errorf("%s is a private key: publish only public keys in a JWKS (and rotate this one)", name)
		}
		if use, ok := k.KeyUsage(); ok && use != "" && use != "sig" {
			skipped = append(skipped, name+": use is "+use)
			continue
		}
		if ops, ok := k.KeyOps(); ok && len(ops) > 0 && !hasVerifyOp(ops) {
			skipped = append(skipped, name+": key_ops has no verify")
			continue
		}
		var raw any
		if err := jwk.Export(k, &raw); err != nil {
			skipped = append(skipped, name+": "+err.Error())
			continue
		}
		switch pub := raw.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		case ed25519.PublicKey:
		case *ed25519.PublicKey:
			raw = *pub
		default:
			skipped = append(skipped, fmt.Sprintf("%s: %T cannot verify signatures", name, raw))
			continue
		}
		alg := ""
		if a, ok := k.Algorithm(); ok {
			alg = a.String()
		}
		keys = append(keys, Key{Kid: kid, Alg: alg, Public: raw})
	}
	if len(keys) == 0 {
		if len(skipped) > 0 {
			return nil, errors.New("the key set has no usable signature verification key (" + strings.Join(skipped, "; ") + ")")
		}
		return nil, errors.New("the key set has no keys")
	}
	return keys, nil
}

func hasVerifyOp(ops jwk.KeyOperationList) bool {
	for _, op := range ops {
		if op == jwk.KeyOpVerify {
			return true
		}
	}
	return false
}
