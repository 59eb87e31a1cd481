package tokenmint

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

const (
	testIss = "https://id.example.com/"
	testAud = "orders-api"
)

// must unwraps a (*Signer, error) pair, failing the test on error.
func must(t *testing.T) func(*Signer, error) *Signer {
	return func(s *Signer, err error) *Signer {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// parseWith verifies tok as the verifier would, with the keys of jwks
// unless extra supplies its own key option.
func parseWith(t *testing.T, tok string, jwks []byte, extra ...jwt.ParseOption) (jwt.Token, error) {
	t.Helper()
	opts := []jwt.ParseOption{
		jwt.WithValidate(true),
		jwt.WithIssuer(testIss),
		jwt.WithAudience(testAud),
	}
	if len(extra) == 0 {
		opts = append(opts, jwt.WithKeySet(mustSet(t, jwks)))
	}
	return jwt.Parse([]byte(tok), append(opts, extra...)...)
}

func mustAlg(t *testing.T, name string) jwa.SignatureAlgorithm {
	t.Helper()
	a, ok := jwa.LookupSignatureAlgorithm(name)
	if !ok {
		t.Fatalf("unknown algorithm %q", name)
	}
	return a
}

// header decodes the protected header of a compact JWS.
func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	h, _, ok := strings.Cut(tok, ".")
	if !ok {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("header: %v", err)
	}
	return m
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMintRoundTrip(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}

	cases := map[string]struct {
		signer  func(t *testing.T) *Signer
		wantAlg string
	}{
		"rsa": {func(t *testing.T) *Signer { return must(t)(NewRSASigner("k-rsa")) }, "RS256"},
		"ec":  {func(t *testing.T) *Signer { return must(t)(NewECSigner("k-ec")) }, "ES256"},
		"ed25519": {func(t *testing.T) *Signer {
			return must(t)(NewEd25519Signer("k-ed"))
		}, "EdDSA"},
		"rsa PS384": {func(t *testing.T) *Signer { return must(t)(NewSigner("k-ps", "PS384", rsaKey)) }, "PS384"},
		"P-384 default alg": {func(t *testing.T) *Signer {
			return must(t)(NewSigner("k-384", "", p384))
		}, "ES384"},
		"PKCS#1 PEM": {func(t *testing.T) *Signer {
			return must(t)(LoadSignerPEM(writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "k-pkcs1", ""))
		}, "RS256"},
		"SEC1 PEM": {func(t *testing.T) *Signer {
			return must(t)(LoadSignerPEM(writePEM(t, "EC PRIVATE KEY", sec1), "k-sec1", "ES256"))
		}, "ES256"},
		"PKCS#8 PEM": {func(t *testing.T) *Signer {
			return must(t)(LoadSignerPEM(writePEM(t, "PRIVATE KEY", pkcs8), "k-pkcs8", ""))
		}, "ES384"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := tc.signer(t)
			if s.Alg != tc.wantAlg {
				t.Fatalf("Alg = %q, want %q", s.Alg, tc.wantAlg)
			}
			now := time.Now()
			tok, err := s.Mint(StandardClaims(testIss, testAud, "alice", "web-app", "orders:read orders:write", time.Hour, now), map[string]any{"typ": "at+jwt"})
			if err != nil {
				t.Fatal(err)
			}
			h := header(t, tok)
			if h["alg"] != tc.wantAlg || h["kid"] != s.Kid || h["typ"] != "at+jwt" {
				t.Errorf("header = %v, want alg %s kid %s typ at+jwt", h, tc.wantAlg, s.Kid)
			}
			parsed, err := parseWith(t, tok, JWKS(s))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if sub, _ := parsed.Subject(); sub != "alice" {
				t.Errorf("sub = %q", sub)
			}
			var scope, client string
			if err := parsed.Get("scope", &scope); err != nil || scope != "orders:read orders:write" {
				t.Errorf("scope = %q (%v)", scope, err)
			}
			if err := parsed.Get("client_id", &client); err != nil || client != "web-app" {
				t.Errorf("client_id = %q (%v)", client, err)
			}
			if exp, _ := parsed.Expiration(); exp.Unix() != now.Add(time.Hour).Unix() {
				t.Errorf("exp = %v, want %v", exp, now.Add(time.Hour))
			}
		})
	}
}

func TestMintRejectedByVerifier(t *testing.T) {
	rsaS := must(t)(NewRSASigner("k1"))
	other := must(t)(NewRSASigner("k1")) // same kid, other key
	claims := StandardClaims(testIss, testAud, "alice", "web-app", "orders:read", time.Hour, time.Now())

	cases := map[string]struct {
		mint func() (string, error)
		jwks []byte
		opts []jwt.ParseOption
		// wantOK is true for the control cases that must verify.
		wantOK bool
	}{
		"control": {
			mint: func() (string, error) { return rsaS.Mint(claims, nil) }, jwks: JWKS(rsaS), wantOK: true,
		},
		"other key under the same kid": {
			mint: func() (string, error) { return rsaS.Mint(claims, nil) }, jwks: JWKS(other),
		},
		// The header says RS384 while the signature is RS256. (A JWK that
		// pins alg RS256 makes jwx verify with RS256 whatever the header
		// says, so the verifier must check the header alg itself.)
		"forged alg header, verified as the header says": {
			mint: func() (string, error) { return rsaS.Mint(claims, map[string]any{"alg": "RS384"}) }, jwks: JWKS(rsaS),
			opts: []jwt.ParseOption{jwt.WithKey(mustAlg(t, "RS384"), rsaS.Public())},
		},
		"genuine alg header, verified as the header says": {
			mint: func() (string, error) { return rsaS.Mint(claims, nil) }, jwks: JWKS(rsaS),
			opts: []jwt.ParseOption{jwt.WithKey(mustAlg(t, "RS256"), rsaS.Public())}, wantOK: true,
		},
		"kid omitted": {
			mint: func() (string, error) { return rsaS.Mint(claims, map[string]any{"kid": ""}) }, jwks: JWKS(rsaS),
		},
		"kid omitted, verifier does not require one": {
			mint: func() (string, error) { return rsaS.Mint(claims, map[string]any{"kid": ""}) }, jwks: JWKS(rsaS),
			opts: []jwt.ParseOption{jwt.WithKeySet(mustSet(t, JWKS(rsaS)), jws.WithRequireKid(false))}, wantOK: true,
		},
		"unsigned": {
			mint: func() (string, error) { return MintUnsigned(claims, map[string]any{"kid": "k1"}) }, jwks: JWKS(rsaS),
		},
		"expired": {
			mint: func() (string, error) {
				return rsaS.Mint(StandardClaims(testIss, testAud, "alice", "web-app", "", -time.Hour, time.Now()), nil)
			},
			jwks: JWKS(rsaS),
		},
		"wrong audience": {
			mint: func() (string, error) {
				return rsaS.Mint(StandardClaims(testIss, "billing-api", "alice", "web-app", "", time.Hour, time.Now()), nil)
			},
			jwks: JWKS(rsaS),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok, err := tc.mint()
			if err != nil {
				t.Fatal(err)
			}
			_, err = parseWith(t, tok, tc.jwks, tc.opts...)
			if tc.wantOK && err != nil {
				t.Fatalf("verify failed: %v", err)
			}
			if !tc.wantOK && err == nil {
				t.Fatal("verify succeeded, want failure")
			}
		})
	}
}

func mustSet(t *testing.T, b []byte) jwk.Set {
	t.Helper()
	s, err := jwk.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMintHeaders(t *testing.T) {
	s := must(t)(NewEd25519Signer("k-ed"))
	cases := map[string]struct {
		header map[string]any
		want   map[string]any
		absent []string
	}{
		"default":       {nil, map[string]any{"alg": "EdDSA", "kid": "k-ed"}, []string{"typ"}},
		"typ and cty":   {map[string]any{"typ": "at+jwt", "cty": "x"}, map[string]any{"alg": "EdDSA", "kid": "k-ed", "typ": "at+jwt", "cty": "x"}, nil},
		"kid override":  {map[string]any{"kid": "rotated"}, map[string]any{"kid": "rotated"}, nil},
		"kid omitted":   {map[string]any{"kid": ""}, map[string]any{"alg": "EdDSA"}, []string{"kid"}},
		"private field": {map[string]any{"x-test": "yes"}, map[string]any{"x-test": "yes", "kid": "k-ed"}, nil},
		"forged alg":    {map[string]any{"alg": "ES256", "typ": "JWT"}, map[string]any{"alg": "ES256", "kid": "k-ed", "typ": "JWT"}, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok, err := s.Mint(Claims{"sub": "x"}, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			h := header(t, tok)
			for k, v := range tc.want {
				if h[k] != v {
					t.Errorf("header[%q] = %v, want %v (header %v)", k, h[k], v, h)
				}
			}
			for _, k := range tc.absent {
				if _, ok := h[k]; ok {
					t.Errorf("header has %q, want none (header %v)", k, h)
				}
			}
		})
	}
}

func TestMintRaw(t *testing.T) {
	s := must(t)(NewECSigner("k"))
	tok, err := s.MintRaw(map[string]any{"typ": "JWT"}, []byte("not json"))
	if err != nil {
		t.Fatal(err)
	}
	if h := header(t, tok); len(h) != 1 || h["typ"] != "JWT" {
		t.Errorf("header = %v, want only typ", h)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if string(p) != "not json" {
		t.Errorf("payload = %q", p)
	}
	// The signature is genuine ES256 over the signing input.
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if len(sig) != 64 {
		t.Errorf("ES256 signature is %d bytes, want 64", len(sig))
	}
	if _, err := jws.Verify([]byte(tok), jws.WithKey(mustAlg(t, "ES256"), s.Key.Public())); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
}

func TestExampleSigners(t *testing.T) {
	jwksPath, err := ExamplePath(ExampleJWKSFile)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(jwksPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, ek := range ExampleKeys() {
		t.Run(ek.Kind, func(t *testing.T) {
			s, err := ExampleSigner(ek.Kind)
			if err != nil {
				t.Fatal(err)
			}
			if s.Kid != ek.Kid || s.Alg != ek.Alg {
				t.Errorf("signer kid/alg = %s/%s, want %s/%s", s.Kid, s.Alg, ek.Kid, ek.Alg)
			}
			if !strings.Contains(string(s.JWK()), `"use":"sig"`) {
				t.Errorf("JWK lacks use sig: %s", s.JWK())
			}
			tok, err := s.Mint(StandardClaims(testIss, testAud, "alice", "web-app", "orders:read", time.Minute, time.Now()), nil)
			if err != nil {
				t.Fatal(err)
			}
			// The committed jwks.json must verify tokens of the committed keys.
			if _, err := parseWith(t, tok, jwks); err != nil {
				t.Fatalf("examples/keys/jwks.json does not verify the %s key: %v", ek.Kind, err)
			}
		})
	}
	// The published set holds public keys only.
	if strings.Contains(string(jwks), `"d"`) {
		t.Error("examples/keys/jwks.json contains a private key member \"d\"")
	}
	if _, err := ExampleSigner("dsa"); err == nil {
		t.Error("ExampleSigner(dsa) succeeded")
	}
}

func TestSignerErrors(t *testing.T) {
	ec := must(t)(NewECSigner(""))
	rsaS := must(t)(NewRSASigner(""))
	ed := must(t)(NewEd25519Signer(""))
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		err     func() error
		wantSub string
	}{
		"RS256 on EC key":  {func() error { _, err := NewSigner("", "RS256", ec.Key); return err }, "use ES256"},
		"ES256 on RSA key": {func() error { _, err := NewSigner("", "ES256", rsaS.Key); return err }, "RS256"},
		"HS256 on Ed25519": {func() error { _, err := NewSigner("", "HS256", ed.Key); return err }, "use EdDSA"},
		"nil key":          {func() error { _, err := NewSigner("", "", nil); return err }, "no signing key"},
		"missing file":     {func() error { _, err := LoadSignerPEM(filepath.Join(t.TempDir(), "nope.pem"), "", ""); return err }, "read private key"},
		"not PEM":          {func() error { _, err := LoadSignerPEM(notPEM, "", ""); return err }, "no PEM private key block"},
		"unknown kind":     {func() error { _, err := NewSignerOfKind("dsa", ""); return err }, "unknown key kind"},
		"nil signer mints": {func() error { _, err := (*Signer)(nil).Mint(nil, nil); return err }, "no key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.wantSub) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantSub)
			}
		})
	}
}

func TestStandardClaims(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := StandardClaims(testIss, testAud, "alice", "", "orders:read", 90*time.Second, now)
	want := map[string]any{"iss": testIss, "aud": testAud, "sub": "alice", "scope": "orders:read",
		"iat": int64(1_700_000_000), "nbf": int64(1_700_000_000), "exp": int64(1_700_000_090)}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, c[k], c[k], v)
		}
	}
	if _, ok := c["client_id"]; ok {
		t.Error("empty client_id was set")
	}
	j1, _ := c["jti"].(string)
	j2, _ := StandardClaims("", "", "", "", "", time.Hour, now)["jti"].(string)
	if len(j1) != 32 || j1 == j2 {
		t.Errorf("jti %q / %q: want two distinct 32-hex-digit ids", j1, j2)
	}
}

func TestFindModuleRoot(t *testing.T) {
	root, err := FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "decision", "tokenmint")); err != nil {
		t.Errorf("root %s does not hold decision/tokenmint: %v", root, err)
	}
	// A go.mod of another module is passed over; outside any scopegate tree
	// the search fails with an explanation.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FindModuleRoot(dir); err == nil || !strings.Contains(err.Error(), "not inside the scopegate source tree") {
		t.Errorf("FindModuleRoot(other module) err = %v", err)
	}
	nested := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("// comment\nmodule   "+ModulePath+"\n\ngo 1.26\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := FindModuleRoot(nested); err != nil || got != dir {
		t.Errorf("FindModuleRoot(nested) = %q, %v; want %q", got, err, dir)
	}
}

func TestKeyKindAndDefaultAlg(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		pub      crypto.PublicKey
		kind     string
		alg      string
		wantFail bool
	}{
		"P-521":       {pub: p521.Public(), kind: KindEC, alg: "ES512"},
		"unsupported": {pub: "not a key", wantFail: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			kind, err1 := KeyKind(tc.pub)
			alg, err2 := DefaultAlg(tc.pub)
			if tc.wantFail {
				if err1 == nil || err2 == nil {
					t.Fatalf("want errors, got %q %q", kind, alg)
				}
				return
			}
			if err1 != nil || err2 != nil || kind != tc.kind || alg != tc.alg {
				t.Fatalf("KeyKind = %q, %v; DefaultAlg = %q, %v", kind, err1, alg, err2)
			}
		})
	}
}

func BenchmarkMint(b *testing.B) {
	for _, ek := range ExampleKeys() {
		b.Run(ek.Alg, func(b *testing.B) {
			s, err := ExampleSigner(ek.Kind)
			if err != nil {
				b.Fatal(err)
			}
			claims := StandardClaims(testIss, testAud, "alice", "web-app", "orders:read", time.Hour, time.Now())
			hdr := map[string]any{"typ": "at+jwt"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Mint(claims, hdr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
