package jwks

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/scopegate/scopegate/decision"
)

// testKey is an RSA signing key under a kid.
type testKey struct {
	kid  string
	priv *rsa.PrivateKey
}

var (
	keysMu   sync.Mutex
	keyCache = map[string]*testKey{}
)

// key returns the test key for kid, generated once per test binary.
func key(t testing.TB, kid string) *testKey {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keyCache[kid]; ok {
		return k
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := &testKey{kid: kid, priv: priv}
	keyCache[kid] = k
	return k
}

// jwksOf returns the public JWKS of keys.
func jwksOf(t testing.TB, keys ...*testKey) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		pub, err := jwk.Import(k.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Set(jwk.KeyIDKey, k.kid); err != nil {
			t.Fatal(err)
		}
		if err := pub.Set(jwk.KeyUsageKey, "sig"); err != nil {
			t.Fatal(err)
		}
		if err := set.AddKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mint signs an access token for the test policy with k.
func mint(t testing.TB, k *testKey, scope string) string {
	t.Helper()
	priv, err := jwk.Import(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := priv.Set(jwk.KeyIDKey, k.kid); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewBuilder().
		Issuer(testIssuer).
		Audience([]string{"orders-api"}).
		Subject("user-1").
		IssuedAt(time.Now()).
		Expiration(time.Now().Add(time.Hour)).
		Claim("scope", scope).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), priv))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

const testIssuer = "https://id.example.com/"

// writeFile replaces path's content atomically (write and rename, as
// configuration tools and mounted secrets do).
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func kids(keys []decision.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Kid
	}
	return out
}
