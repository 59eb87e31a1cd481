package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

func TestParseSet(t *testing.T) {
	privateSet := func(t *testing.T) []byte {
		k, err := jwk.Import(key(t, "priv").priv)
		if err != nil {
			t.Fatal(err)
		}
		set := jwk.NewSet()
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		data    func(t *testing.T) []byte
		kids    []string
		wantErr string
	}{
		{name: "rsa ec ed25519", data: fixture("valid.json"), kids: []string{"rsa-1", "ec-1", "ed-1"}},
		{name: "single generated key", data: func(t *testing.T) []byte { return jwksOf(t, key(t, "a")) }, kids: []string{"a"}},
		{name: "encryption keys skipped", data: fixture("mixed_use.json"), kids: []string{"rsa-1"}},
		{name: "unsupported key type skipped", data: fixture("unsupported_mixed.json"), kids: []string{"rsa-1"}},
		{name: "only encryption keys", data: fixture("enc_only.json"), wantErr: "no usable signature verification key"},
		{name: "empty set", data: fixture("empty.json"), wantErr: "no keys"},
		{name: "not json", data: fixture("garbage.json"), wantErr: "not a valid JWKS"},
		{name: "malformed RSA key named as such", data: func(*testing.T) []byte { return []byte(`{"keys":[{"kty":"RSA","kid":"r","n":5,"e":"AQAB"}]}`) },
			wantErr: `key "r": a malformed RSA key: n and e must be base64url strings`},
		{name: "unknown key type", data: func(*testing.T) []byte { return []byte(`{"keys":[{"kty":"XYZ"}]}`) }, wantErr: "key 0: unsupported key type XYZ (use RSA, EC or OKP)"},
		{name: "truncated JSON names the byte offset", data: func(*testing.T) []byte { return []byte(`{"keys": [`) }, wantErr: "not JSON: unexpected end of JSON input (at byte 10)"},
		{name: "symmetric key refused", data: fixture("oct.json"), wantErr: "symmetric (oct) key"},
		{name: "private key refused", data: privateSet, wantErr: "private key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseSet(tc.data(t))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := kids(keys); !slices.Equal(got, tc.kids) {
				t.Fatalf("kids = %q, want %q", got, tc.kids)
			}
			for _, k := range keys {
				switch k.Public.(type) {
				case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
				default:
					t.Errorf("key %s exported as %T", k.Kid, k.Public)
				}
			}
		})
	}
}

func TestParseSetKeepsAlg(t *testing.T) {
	keys, err := ParseSet(fixture("valid.json")(t))
	if err != nil {
		t.Fatal(err)
	}
	if keys[0].Alg != "RS256" || keys[1].Alg != "" {
		t.Fatalf("algs = %q, %q", keys[0].Alg, keys[1].Alg)
	}
}

func TestFingerprintFollowsContent(t *testing.T) {
	a, _ := ParseSet(jwksOf(t, key(t, "a")))
	a2, _ := ParseSet(jwksOf(t, key(t, "a")))
	b, _ := ParseSet(jwksOf(t, key(t, "a"), key(t, "b")))
	if fingerprint(a) != fingerprint(a2) {
		t.Error("the same keys parsed twice differ")
	}
	if fingerprint(a) == fingerprint(b) {
		t.Error("adding a key kept the fingerprint")
	}
}

func fixture(name string) func(t *testing.T) []byte {
	return func(t *testing.T) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// TestParseSetMalformedNamesOffset: JSON that does not parse is named by
// its byte offset, not by the JWK library's internals.
func TestParseSetMalformedNamesOffset(t *testing.T) {
	for in, want := range map[string]string{
		`{"keys": [}`:       "at byte 11",
		`{"keys": []`:       "unexpected end of JSON input",
		"{\"keys\": [\n,]}": "at byte 12",
		"":                  "not JSON",
	} {
		_, err := ParseSet([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "not a valid JWKS: not JSON") {
			t.Errorf("ParseSet(%q) = %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "jwk.") {
			t.Errorf("ParseSet(%q) = %v: names the library", in, err)
		}
	}
}
