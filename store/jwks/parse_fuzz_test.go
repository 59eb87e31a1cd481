package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseSet feeds any bytes to the JWKS parser, as a hostile or broken
// JWKS endpoint would. No input may panic it; a set it accepts holds only
// public keys of the kinds the verifier knows, and parsing is a pure
// function of the bytes (the same bytes give the same keys and fingerprint,
// so the key-set epoch does not move on an unchanged refetch).
func FuzzParseSet(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseSet(data)
		if err != nil {
			if keys != nil || err.Error() == "" {
				t.Fatalf("ParseSet failed with keys %v, error %q", keys, err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("ParseSet accepted a set with no key")
		}
		for i, k := range keys {
			switch pub := k.Public.(type) {
			case *rsa.PublicKey:
				if pub == nil || pub.N == nil {
					t.Fatalf("key %d: nil RSA key", i)
				}
			case *ecdsa.PublicKey:
				if pub == nil || pub.Curve == nil {
					t.Fatalf("key %d: EC key without a curve", i)
				}
			case ed25519.PublicKey:
			default:
				t.Fatalf("key %d: %T is not a public verification key", i, k.Public)
			}
		}
		again, err := ParseSet(data)
		if err != nil || len(again) != len(keys) || fingerprint(again) != fingerprint(keys) {
			t.Fatalf("parsing the same bytes twice: %d keys, then %d (%v)", len(keys), len(again), err)
		}
	})
}
