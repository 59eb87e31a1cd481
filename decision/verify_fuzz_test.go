package decision

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// Fuzz targets for the token path: bearer extraction and verification.
// Beyond "no panic on any bytes", each checks a property an attacker would
// need to break: a token that verifies keeps verifying when presented
// again (and the cache agrees with a cold verification), and nothing but a
// token the issuer signed ever verifies.

// fuzzNow is the fixed clock of the token fuzzers, so seeds never expire.
var fuzzNow = time.Unix(1_900_000_000, 0)

const fuzzPolicy = `
version: fuzz
issuers:
  - issuer: https://issuer.fuzz/
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [ES256]
routes:
  - name: read
    match: {methods: [GET], path: "/r/{id}"}
    require: {all_of: [r]}
  - name: any-token
    match: {methods: [GET], path: /t}
default: deny
`

// fuzzIssuer is the key pair and the tokens the token fuzzers start from.
type fuzzIssuer struct {
	key    *ecdsa.PrivateKey
	pol    *Policy
	keys   StaticKeys
	tokens []string
	// signed holds the signing inputs ("header.payload") the issuer
	// signed: the only ones a verifying token may carry.
	signed map[string]bool
}

var (
	fuzzIssuerOnce sync.Once
	fuzzIss        *fuzzIssuer
	fuzzIssErr     error
)

func getFuzzIssuer(tb testing.TB) *fuzzIssuer {
	tb.Helper()
	fuzzIssuerOnce.Do(func() { fuzzIss, fuzzIssErr = newFuzzIssuer() })
	if fuzzIssErr != nil {
		tb.Fatal(fuzzIssErr)
	}
	return fuzzIss
}

func newFuzzIssuer() (*fuzzIssuer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	keys := StaticKeys{{Kid: "k1", Alg: "ES256", Public: &k.PublicKey}}
	pol, err := Compile([]byte(fuzzPolicy), "fuzz.yaml", CompileOptions{})
	if err != nil {
		return nil, err
	}
	fi := &fuzzIssuer{key: k, pol: pol, keys: keys, signed: map[string]bool{}}
	claims := func(scope any, edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "https://issuer.fuzz/", "aud": "api", "sub": "alice", "client_id": "app",
			"iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix(), "jti": "j1", "scope": scope}
		if edit != nil {
			edit(c)
		}
		return c
	}
	for _, tc := range []struct {
		header map[string]any
		claims map[string]any
	}{
		{map[string]any{"alg": "ES256", "kid": "k1", "typ": "at+jwt"}, claims("r", nil)},
		{map[string]any{"alg": "ES256", "kid": "k1"}, claims("x y", nil)},
		{map[string]any{"alg": "ES256"}, claims([]string{"r", "s"}, nil)},
		{map[string]any{"alg": "ES256", "kid": "k1"}, claims("r", func(c map[string]any) { c["aud"] = []string{"x", "api"} })},
		{map[string]any{"alg": "ES256", "kid": "k1"}, claims("r", func(c map[string]any) { c["exp"] = fuzzNow.Add(-time.Hour).Unix() })},
		{map[string]any{"alg": "ES256", "kid": "k1"}, claims("r", func(c map[string]any) { c["iss"] = "https://other/" })},
		{map[string]any{"alg": "ES256", "kid": "k2"}, claims("r", nil)},
		{map[string]any{"alg": "none", "kid": "k1"}, claims("r", nil)},
	} {
		hb, err := json.Marshal(tc.header)
		if err != nil {
			return nil, err
		}
		pb, err := json.Marshal(tc.claims)
		if err != nil {
			return nil, err
		}
		input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
		sig, err := jwsbb.Sign(k, "ES256", []byte(input), nil)
		if err != nil {
			return nil, err
		}
		fi.signed[input] = true
		fi.tokens = append(fi.tokens, input+"."+base64.RawURLEncoding.EncodeToString(sig))
	}
	return fi, nil
}

func FuzzExtractBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer x", "BEARER  x==", "Bearer", "Bearer ", "Basic abc", "Bearer a,Bearer b",
		" \tBearer x\t ", "Bearerx", "Bearer a b", "Bearer a=b", "Bearer ~+/-._=", "Bearer \x00", "Bearer é"} {
		f.Add(s, 1, 64)
	}
	f.Add("Bearer x", 2, 64)
	f.Add("Bearer x", 0, 64)
	f.Add("Bearer "+strings.Repeat("a", 65), 1, 64)
	f.Fuzz(func(t *testing.T, authz string, count, maxBytes int) {
		if maxBytes <= 0 || maxBytes > 1<<20 {
			maxBytes = 16 << 10
		}
		tok, code, detail := extractBearer(authz, count, maxBytes)
		if code != OK {
			if tok != "" || detail == "" {
				t.Fatalf("extractBearer(%q) = %q, %s, %q: a failure must carry a detail and no token", authz, tok, code, detail)
			}
			if code != TokenMissing && code != TokenInvalid && code != RequestInvalid {
				t.Fatalf("extractBearer(%q): unexpected code %s", authz, code)
			}
			if count > 1 && code != RequestInvalid {
				t.Fatalf("extractBearer(%q, %d): two headers must be request_invalid, got %s", authz, count, code)
			}
			return
		}
		if count != 1 {
			t.Fatalf("extractBearer accepted %d Authorization headers", count)
		}
		if tok == "" || len(tok) > maxBytes || !strings.HasSuffix(strings.TrimRight(authz, " \t"), tok) {
			t.Fatalf("extractBearer(%q) = %q: not a bounded suffix of the header", authz, tok)
		}
		// The alphabet is checked apart (the verifier checks it on a cache
		// miss): exactly RFC 6750's b64token is accepted.
		body := strings.TrimRight(tok, "=")
		want := body != "" && !strings.ContainsFunc(body, func(r rune) bool { return r > 0xff || !b64tokenChar[byte(r)] })
		if code, _ := checkB64Token(tok); (code == OK) != want {
			t.Fatalf("checkB64Token(%q) = %s, want b64token=%v", tok, code, want)
		}
		// Re-presenting the token in any accepted spelling gives it back.
		for _, again := range []string{"Bearer " + tok, "bearer  " + tok, " BEARER " + tok + " "} {
			if tok2, code2, _ := extractBearer(again, 1, maxBytes); code2 != OK || tok2 != tok {
				t.Fatalf("re-presenting %q as %q = %q, %s", tok, again, tok2, code2)
			}
		}
		// ...and never when it comes twice.
		if _, code2, _ := extractBearer(authz, 2, maxBytes); code2 != RequestInvalid {
			t.Fatalf("the same header twice = %s, want request_invalid", code2)
		}
	})
}

func FuzzVerifyToken(f *testing.F) {
	fi := getFuzzIssuer(f)
	for _, tok := range fi.tokens {
		f.Add(tok, "/r/1")
		f.Add(tok, "/t")
	}
	f.Add("e30.e30.", "/t")
	f.Add("a.b.c.d.e", "/t")
	f.Add("{\"payload\":\"e30\"}", "/t")
	eng, err := NewEngine(fi.pol, Options{Keys: StaticKeyResolver(fi.keys), Clock: func() time.Time { return fuzzNow }, TokenCacheSize: 1 << 12})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(eng.Close)
	f.Fuzz(func(t *testing.T, tok, path string) {
		req := Request{Method: "GET", Path: path, Authorization: "Bearer " + tok, AuthorizationCount: 1}
		d1 := eng.Decide(context.Background(), &req)
		eng.WaitTokenCache()
		d2 := eng.Decide(context.Background(), &req)
		if d1.Allow != d2.Allow || d1.Code != d2.Code {
			t.Fatalf("the same token decided %s then %s: the cache disagrees with a cold verification", d1.Code, d2.Code)
		}
		if d1.Code >= numCodes || (!d1.Allow && d1.Code == OK) || (d1.Allow && d1.Code != OK) {
			t.Fatalf("inconsistent decision %+v", d1)
		}
		if d1.Token == nil {
			return
		}
		// A verified token: only one the issuer signed, and it must verify
		// again from scratch.
		i := strings.LastIndexByte(tok, '.')
		if i < 0 || !fi.signed[tok[:i]] {
			t.Fatalf("a token the issuer never signed verified: %q", tok)
		}
		if d1.Token.Issuer != "https://issuer.fuzz/" || d1.Token.Expiry().IsZero() {
			t.Fatalf("verified token with claims %+v", d1.Token)
		}
		eng.PurgeTokenCache()
		if d3 := eng.Decide(context.Background(), &req); d3.Code != d1.Code || d3.Token == nil {
			t.Fatalf("verified token decided %s after a purge, %s before", d3.Code, d1.Code)
		}
	})
}
