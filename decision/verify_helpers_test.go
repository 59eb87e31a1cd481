package decision

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

const (
	testIss = "https://issuer.test/"
	testAud = "api://orders"
)

// testKeyPairs are generated once per test binary: RSA generation is slow.
type testKeyPairs struct {
	rsa, rsa2, attacker *rsa.PrivateKey
	rsa1024             *rsa.PrivateKey
	p256, p384          *ecdsa.PrivateKey
	ed                  ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	keyPairs testKeyPairs
)

func testKeys(t testing.TB) *testKeyPairs {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		keyPairs.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keyPairs.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keyPairs.attacker, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		// crypto/rsa refuses to generate keys under 1024 bits; 1024 is
		// enough to test the 2048-bit floor.
		keyPairs.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024)
		must(err)
		keyPairs.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keyPairs.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		_, keyPairs.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
	return &keyPairs
}

// issuerKeys is the key set the test issuer publishes.
func (k *testKeyPairs) issuerKeys() []Key {
	return []Key{
		{Kid: "rsa1", Public: k.rsa.Public()},
		{Kid: "ec1", Public: k.p256.Public()},
		{Kid: "ed1", Public: k.ed.Public()},
	}
}

// b64json encodes v as base64url JSON.
func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sign returns a compact JWS of claims with header, signed by key under alg
// (alg may differ from header["alg"] to forge a token).
func sign(t testing.TB, key any, alg string, header, claims map[string]any) string {
	t.Helper()
	input := b64json(t, header) + "." + b64json(t, claims)
	sig, err := jwsbb.Sign(key, alg, []byte(input), nil)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// baseClaims are valid claims at now.
func baseClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss":       testIss,
		"aud":       testAud,
		"sub":       "user-1",
		"client_id": "client-1",
		"scope":     "orders:read orders:write",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
		"jti":       "jti-1",
	}
}

// countingKeys is a KeySource whose key set and epoch tests change, and
// which counts how often the verifier consults it.
type countingKeys struct {
	mu        sync.Mutex
	keys      []Key
	refreshed []Key // what RefreshUnknownKid serves, if non-nil
	epoch     atomic.Uint64
	keyCalls  atomic.Int64
	refreshes atomic.Int64
}

func (c *countingKeys) Keys() []Key {
	c.keyCalls.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys
}

func (c *countingKeys) RefreshUnknownKid(context.Context, string) ([]Key, bool) {
	c.refreshes.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refreshed == nil {
		return nil, false
	}
	c.keys = c.refreshed
	c.epoch.Add(1)
	return c.keys, true
}

func (c *countingKeys) Epoch() uint64 { return c.epoch.Load() }

func (c *countingKeys) set(keys []Key) {
	c.mu.Lock()
	c.keys = keys
	c.mu.Unlock()
	c.epoch.Add(1)
}

// testIssuer returns the issuer tests verify against, its key set keys
// (nil: none) for the resolver of newTestVerifier.
func testIssuer(keys KeySource) *Issuer {
	iss := &Issuer{
		Name:        testIss,
		Audiences:   []string{testAud, "api://other"},
		Algorithms:  []string{"RS256", "PS256", "ES256", "EdDSA"},
		ClockSkew:   30 * time.Second,
		ScopeClaims: DefaultScopeClaims,
		Fingerprint: 1,
	}
	iss.KeyRef = KeyRef{Issuer: testIss, File: fmt.Sprintf("test-%d.jwks", testKeyFiles.Add(1))}
	iss.bound = new(atomic.Pointer[boundKeys]) // as the compiler does
	if keys != nil {
		testKeySources.Store(iss.KeyRef.File, keys)
	}
	return iss
}

// testKeySources are the key sets of testIssuer's issuers, by their
// KeyRef.File (a copy of an issuer keeps its keys).
var (
	testKeySources sync.Map // string -> KeySource
	testKeyFiles   atomic.Int64
)

var testResolver = KeyResolverFunc(func(ref *KeyRef) KeySource {
	if v, ok := testKeySources.Load(ref.File); ok {
		return v.(KeySource)
	}
	return nil
})

func testPolicyWith(issuers ...*Issuer) *Policy {
	p := &Policy{Issuers: map[string]*Issuer{}}
	for _, i := range issuers {
		p.Issuers[i.Name] = i
	}
	return p
}

func newTestVerifier(t testing.TB) *verifier {
	t.Helper()
	v, err := newVerifier(verifierConfig{MaxEntries: 1000, Keys: testResolver})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.close)
	return v
}
