package decision

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func hdr(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	return h
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestVerifyReasons(t *testing.T) {
	k := testKeys(t)
	now := testNow
	claims := baseClaims(now)
	pubPEM := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(k.rsa.Public())
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	rsaTok := func(h, c map[string]any) string { return sign(t, k.rsa, "RS256", h, c) }
	flip := func(tok string) string { // corrupt the last signature byte
		parts := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[len(sig)-1] ^= 1
		return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	}

	cases := []struct {
		name   string
		token  func() string
		issuer func(*Issuer)
		keys   []Key // default: the issuer's keys
		want   Code
		detail string
		check  func(t *testing.T, tok *Token)
	}{
		{name: "rs256 ok", token: func() string { return rsaTok(hdr("RS256", "rsa1"), claims) }, want: OK,
			check: func(t *testing.T, tok *Token) {
				if tok.Subject != "user-1" || tok.ClientID != "client-1" || tok.JTI != "jti-1" || tok.Issuer != testIss || tok.Alg != "RS256" || tok.Type != "JWT" {
					t.Errorf("token fields: %+v", tok)
				}
				if !slices.Equal(tok.Scopes, []string{"orders:read", "orders:write"}) {
					t.Errorf("scopes = %q", tok.Scopes)
				}
				if !tok.Expiry().Equal(now.Add(time.Hour)) || !tok.IssuedAt().Equal(now) || !tok.NotBefore().Equal(now) {
					t.Errorf("times: exp %v iat %v nbf %v", tok.Expiry(), tok.IssuedAt(), tok.NotBefore())
				}
				if !slices.Equal(tok.Audience, []string{testAud}) || tok.Claims()["sub"] != "user-1" {
					t.Errorf("aud %q claims %v", tok.Audience, tok.Claims())
				}
			}},
		{name: "ps256 ok", token: func() string { return sign(t, k.rsa, "PS256", hdr("PS256", "rsa1"), claims) }, want: OK},
		{name: "es256 ok", token: func() string { return sign(t, k.p256, "ES256", hdr("ES256", "ec1"), claims) }, want: OK},
		{name: "eddsa ok", token: func() string { return sign(t, k.ed, "EdDSA", hdr("EdDSA", "ed1"), claims) }, want: OK},
		{name: "all optional claims", want: OK, token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "client_id", nil, "azp", "azp-client", "acr", "urn:mfa",
				"amr", []string{"pwd", "otp"}, "auth_time", now.Add(-time.Minute).Unix(),
				"cnf", map[string]any{"x5t#S256": "thumb", "jkt": "jkt-thumb"}))
		}, check: func(t *testing.T, tok *Token) {
			if tok.ClientID != "azp-client" || tok.ACR != "urn:mfa" || !slices.Equal(tok.AMR, []string{"pwd", "otp"}) ||
				!tok.AuthTime().Equal(now.Add(-time.Minute)) || tok.CnfX5tS256 != "thumb" || tok.CnfJKT != "jkt-thumb" {
				t.Errorf("token fields: %+v", tok)
			}
		}},
		{name: "client_id wins over azp", want: OK, token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "azp", "other")) },
			check: func(t *testing.T, tok *Token) {
				if tok.ClientID != "client-1" {
					t.Errorf("client = %q", tok.ClientID)
				}
			}},
		{name: "fractional exp", want: OK, token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "exp", float64(now.Unix())+3600.5))
		}},

		// Algorithms.
		{name: "alg none without signature", token: func() string {
			return b64json(t, map[string]any{"alg": "none"}) + "." + b64json(t, claims) + "."
		}, want: TokenInvalid, detail: "no signature"},
		{name: "alg none with a signature", token: func() string {
			return b64json(t, map[string]any{"alg": "none"}) + "." + b64json(t, claims) + ".c2ln"
		}, want: AlgorithmNotAllowed, detail: "none"},
		{name: "hs256 with the rsa public key as secret", token: func() string {
			return sign(t, pubPEM, "HS256", hdr("HS256", "rsa1"), claims)
		}, want: AlgorithmNotAllowed, detail: "HMAC"},
		{name: "alg not listed for issuer", token: func() string { return sign(t, k.p384, "ES384", hdr("ES384", "ec1"), claims) },
			want: AlgorithmNotAllowed, detail: `"ES384" is not allowed`},
		{name: "alg missing", token: func() string { return rsaTok(map[string]any{"kid": "rsa1"}, claims) }, want: TokenInvalid, detail: "no alg"},
		{name: "alg not a string", token: func() string { return rsaTok(map[string]any{"alg": 256}, claims) }, want: TokenInvalid, detail: "alg is not a string"},

		// Keys.
		{name: "unknown kid", token: func() string { return rsaTok(hdr("RS256", "nope"), claims) }, want: KeyNotFound, detail: `"nope"`},
		{name: "path traversal kid", token: func() string { return rsaTok(hdr("RS256", "../../dev/null"), claims) }, want: KeyNotFound, detail: `no key with kid "../../dev/null"`},
		{name: "long kid truncated", token: func() string { return rsaTok(hdr("RS256", strings.Repeat("k", 200)+"\x01"), claims) }, want: KeyNotFound,
			detail: `"` + strings.Repeat("k", 64) + `..."`},
		{name: "empty kid single fitting key", token: func() string { return rsaTok(hdr("RS256", ""), claims) }, want: OK},
		{name: "empty kid two fitting keys", token: func() string { return rsaTok(hdr("RS256", ""), claims) },
			keys: []Key{{Kid: "a", Public: k.rsa.Public()}, {Kid: "b", Public: k.rsa2.Public()}}, want: KeyNotFound, detail: "2 keys fit"},
		{name: "empty kid no fitting key", token: func() string { return rsaTok(hdr("RS256", ""), claims) },
			keys: []Key{{Kid: "ec1", Public: k.p256.Public()}}, want: KeyNotFound, detail: "no kid"},
		{name: "wrong key type for alg", token: func() string { return sign(t, k.p256, "ES256", hdr("ES256", "rsa1"), claims) },
			want: KeyNotFound, detail: "is not an EC key"},
		{name: "ec key on the wrong curve", token: func() string { return sign(t, k.p256, "ES256", hdr("ES256", "ec1"), claims) },
			keys: []Key{{Kid: "ec1", Public: k.p384.Public()}}, want: KeyNotFound, detail: "P-256"},
		{name: "rsa key for eddsa", token: func() string { return sign(t, k.ed, "EdDSA", hdr("EdDSA", "rsa1"), claims) },
			want: KeyNotFound, detail: "not an Ed25519 key"},
		{name: "key pinned to another alg", token: func() string { return sign(t, k.rsa, "PS256", hdr("PS256", "rsa1"), claims) },
			keys: []Key{{Kid: "rsa1", Alg: "RS256", Public: k.rsa.Public()}}, want: KeyNotFound, detail: "pinned"},
		{name: "rsa key too small", token: func() string { return sign(t, k.rsa1024, "RS256", hdr("RS256", "small"), claims) },
			keys: []Key{{Kid: "small", Public: k.rsa1024.Public()}}, want: KeyNotFound, detail: "1024-bit"},

		// Signatures and headers that try to bring their own key.
		{name: "tampered signature", token: func() string { return flip(rsaTok(hdr("RS256", "rsa1"), claims)) }, want: TokenInvalid, detail: "signature does not verify"},
		{name: "tampered payload", token: func() string {
			parts := strings.Split(rsaTok(hdr("RS256", "rsa1"), claims), ".")
			return parts[0] + "." + b64json(t, with(claims, "scope", "admin")) + "." + parts[2]
		}, want: TokenInvalid, detail: "signature does not verify"},
		{name: "signed by an unknown key under a known kid", token: func() string { return sign(t, k.attacker, "RS256", hdr("RS256", "rsa1"), claims) },
			want: TokenInvalid, detail: "signature does not verify"},
		{name: "jku header ignored", token: func() string {
			return sign(t, k.attacker, "RS256", with(hdr("RS256", "rsa1"), "jku", "https://attacker.example/jwks.json"), claims)
		}, want: TokenInvalid, detail: "signature does not verify"},
		{name: "x5u header ignored", token: func() string {
			return sign(t, k.attacker, "RS256", with(hdr("RS256", "rsa1"), "x5u", "https://attacker.example/cert.pem"), claims)
		}, want: TokenInvalid, detail: "signature does not verify"},
		{name: "embedded jwk ignored", token: func() string {
			n := base64.RawURLEncoding.EncodeToString(k.attacker.N.Bytes())
			return sign(t, k.attacker, "RS256", with(hdr("RS256", ""), "jwk", map[string]any{"kty": "RSA", "n": n, "e": "AQAB"}), claims)
		}, want: TokenInvalid, detail: "signature does not verify"},
		{name: "crit header", token: func() string { return rsaTok(with(hdr("RS256", "rsa1"), "crit", []string{"exp"}), claims) },
			want: TokenInvalid, detail: "crit header not supported"},

		// Structure.
		{name: "two parts", token: func() string { return "eyJhbGciOiJSUzI1NiJ9.e30" }, want: TokenInvalid, detail: "2 parts"},
		{name: "jwe five parts", token: func() string { return "a.b.c.d.e" }, want: TokenInvalid, detail: "JWE"},
		{name: "not a jwt", token: func() string { return "opaque-token" }, want: TokenInvalid, detail: "not a JWT"},
		{name: "json serialization", token: func() string { return `{"payload":"e30"}` }, want: TokenInvalid, detail: "JSON serialization"},
		{name: "padded header", token: func() string {
			tok := rsaTok(hdr("RS256", "rsa1"), claims)
			i := strings.IndexByte(tok, '.')
			return tok[:i] + "=" + tok[i:]
		}, want: TokenInvalid, detail: "b64token alphabet"},
		{name: "payload not an object", token: func() string {
			return sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), nil)
		}, want: TokenInvalid, detail: "payload is not a JSON object"},
		{name: "empty signature", token: func() string {
			tok := rsaTok(hdr("RS256", "rsa1"), claims)
			return tok[:strings.LastIndexByte(tok, '.')+1]
		}, want: TokenInvalid, detail: "no signature"},

		// Issuer.
		{name: "wrong iss", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "iss", "https://evil.test/")) }, want: IssuerUnknown, detail: "https://evil.test/"},
		{name: "iss missing", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "iss", nil)) }, want: IssuerUnknown, detail: "no iss"},
		{name: "iss a number", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "iss", 7)) }, want: IssuerUnknown, detail: "not a string"},

		// Times.
		{name: "expired", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "exp", now.Add(-time.Minute).Unix())) }, want: TokenExpired, detail: "expired at"},
		{name: "expired within skew", token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "exp", now.Add(-10*time.Second).Unix()))
		}, want: OK},
		{name: "exp exactly now minus skew", token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "exp", now.Add(-30*time.Second).Unix()))
		}, want: TokenExpired},
		{name: "nbf in the future", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "nbf", now.Add(time.Minute).Unix())) }, want: TokenNotYetValid, detail: "nbf"},
		{name: "nbf within skew", token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "nbf", now.Add(20*time.Second).Unix()))
		}, want: OK},
		{name: "iat far in the future", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "iat", now.Add(24*time.Hour).Unix())) }, want: TokenNotYetValid, detail: "iat is in the future"},
		{name: "exp missing", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "exp", nil)) }, want: TokenInvalid, detail: "no exp claim"},
		{name: "exp a string", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "exp", "tomorrow")) }, want: TokenInvalid, detail: "claim exp"},
		{name: "nbf a bool", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "nbf", true)) }, want: TokenInvalid, detail: "claim nbf"},

		// Other claim types.
		{name: "sub a number", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "sub", 42)) }, want: TokenInvalid, detail: "claim sub"},
		{name: "client_id an array", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "client_id", []string{"a"})) }, want: TokenInvalid, detail: "claim client_id"},
		{name: "amr a string", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "amr", "pwd")) }, want: TokenInvalid, detail: "claim amr"},
		{name: "cnf a string", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "cnf", "x")) }, want: TokenInvalid, detail: "claim cnf"},

		// Audience.
		{name: "wrong aud", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "aud", "api://billing")) }, want: AudienceMismatch, detail: "api://billing"},
		{name: "aud missing", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "aud", nil)) }, want: AudienceMismatch, detail: "no aud"},
		{name: "aud array with ours among others", token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "aud", []string{"api://billing", testAud}))
		}, want: OK, check: func(t *testing.T, tok *Token) {
			if !slices.Equal(tok.Audience, []string{"api://billing", testAud}) {
				t.Errorf("aud = %q", tok.Audience)
			}
		}},
		{name: "aud array without ours", token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "aud", []string{"api://billing", "api://ledger"}))
		}, want: AudienceMismatch},
		{name: "aud a number", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "aud", 1)) }, want: TokenInvalid, detail: "claim aud"},

		// Scopes.
		{name: "scope empty", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "scope", "")) }, want: OK,
			check: func(t *testing.T, tok *Token) {
				if len(tok.Scopes) != 0 {
					t.Errorf("scopes = %q", tok.Scopes)
				}
			}},
		{name: "scope whitespace", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "scope", "   a   b  a ")) }, want: OK,
			check: func(t *testing.T, tok *Token) {
				if !slices.Equal(tok.Scopes, []string{"a", "b"}) {
					t.Errorf("scopes = %q", tok.Scopes)
				}
			}},
		{name: "scp array", token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "scope", nil, "scp", []string{"x", "y"}))
		}, want: OK,
			check: func(t *testing.T, tok *Token) {
				if !slices.Equal(tok.Scopes, []string{"x", "y"}) {
					t.Errorf("scopes = %q", tok.Scopes)
				}
			}},
		{name: "scope and scp union", token: func() string {
			return rsaTok(hdr("RS256", "rsa1"), with(claims, "scope", "a b", "scp", []string{"b", "c"}, "scopes", "d"))
		}, want: OK, check: func(t *testing.T, tok *Token) {
			if !slices.Equal(tok.Scopes, []string{"a", "b", "c", "d"}) {
				t.Errorf("scopes = %q", tok.Scopes)
			}
		}},
		{name: "scp with a number", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "scp", []any{"a", 1})) }, want: TokenInvalid, detail: "claim scp"},
		{name: "scope an object", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "scope", map[string]any{})) }, want: TokenInvalid, detail: "claim scope"},
		{name: "custom scope claim", issuer: func(i *Issuer) { i.ScopeClaims = []string{"permissions"} },
			token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "permissions", []string{"p:1"})) }, want: OK,
			check: func(t *testing.T, tok *Token) {
				if !slices.Equal(tok.Scopes, []string{"p:1"}) {
					t.Errorf("scopes = %q (scope claim must be ignored)", tok.Scopes)
				}
			}},
		{name: "scopes are exact strings", token: func() string { return rsaTok(hdr("RS256", "rsa1"), with(claims, "scope", "Orders:Read")) }, want: OK,
			check: func(t *testing.T, tok *Token) {
				if !slices.Equal(tok.Scopes, []string{"Orders:Read"}) {
					t.Errorf("scopes = %q", tok.Scopes)
				}
			}},

		// typ.
		{name: "typ absent", token: func() string { return rsaTok(map[string]any{"alg": "RS256", "kid": "rsa1"}, claims) }, want: OK},
		{name: "typ at+jwt", token: func() string { return rsaTok(with(hdr("RS256", "rsa1"), "typ", "at+jwt"), claims) }, want: OK},
		{name: "typ application/AT+JWT", token: func() string { return rsaTok(with(hdr("RS256", "rsa1"), "typ", "application/AT+JWT"), claims) }, want: OK},
		{name: "typ dpop+jwt", token: func() string { return rsaTok(with(hdr("RS256", "rsa1"), "typ", "dpop+jwt"), claims) }, want: TokenInvalid, detail: "typ"},
		{name: "typ a number", token: func() string { return rsaTok(with(hdr("RS256", "rsa1"), "typ", 1), claims) }, want: TokenInvalid, detail: "typ is not a string"},
		{name: "require at+jwt gets JWT", issuer: func(i *Issuer) { i.RequireATJWT = true },
			token: func() string { return rsaTok(hdr("RS256", "rsa1"), claims) }, want: TokenInvalid, detail: "at+jwt"},
		{name: "require at+jwt gets none", issuer: func(i *Issuer) { i.RequireATJWT = true },
			token: func() string { return rsaTok(map[string]any{"alg": "RS256", "kid": "rsa1"}, claims) }, want: TokenInvalid, detail: "no typ"},
		{name: "require at+jwt gets at+jwt", issuer: func(i *Issuer) { i.RequireATJWT = true },
			token: func() string { return rsaTok(with(hdr("RS256", "rsa1"), "typ", "at+jwt"), claims) }, want: OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = k.issuerKeys()
			}
			iss := testIssuer(StaticKeys(keys))
			if tc.issuer != nil {
				tc.issuer(iss)
			}
			v := newTestVerifier(t)
			raw := tc.token()
			vt, code, detail := v.verify(context.Background(), raw, testPolicyWith(iss), now)
			if code != tc.want {
				t.Fatalf("code = %v (%s), want %v", code, detail, tc.want)
			}
			if code == OK {
				if vt == nil || detail != "" {
					t.Fatalf("OK with vt=%v detail=%q", vt, detail)
				}
				if tc.check != nil {
					tc.check(t, &vt.Token)
				}
				return
			}
			if vt != nil {
				t.Fatalf("a deny returned a token")
			}
			if !strings.Contains(detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", detail, tc.detail)
			}
			if detail == "" {
				t.Errorf("empty detail")
			}
			if len(raw) > 8 && strings.Contains(detail, raw) {
				t.Errorf("detail echoes the raw token")
			}
			if parts := strings.Split(raw, "."); len(parts) == 3 && len(parts[2]) > 8 && strings.Contains(detail, parts[2]) {
				t.Errorf("detail echoes the signature")
			}
		})
	}
}

// TestVerifyRefreshesUnknownKid: an unknown kid asks the key source once
// and verifies against what it returns.
func TestVerifyRefreshesUnknownKid(t *testing.T) {
	k := testKeys(t)
	src := &countingKeys{keys: []Key{{Kid: "old", Public: k.rsa.Public()}}}
	pol := testPolicyWith(testIssuer(src))
	v := newTestVerifier(t)
	tok := sign(t, k.rsa2, "RS256", hdr("RS256", "new"), baseClaims(testNow))

	// Not yet published: one refresh, still unknown, not cached as failed.
	for range 2 {
		if _, code, _ := v.verify(context.Background(), tok, pol, testNow); code != KeyNotFound {
			t.Fatalf("code = %v, want key_not_found", code)
		}
		v.wait()
	}
	if n := src.refreshes.Load(); n != 2 {
		t.Fatalf("refreshes = %d, want 2 (one per verification; key_not_found is never cached)", n)
	}

	src.refreshed = []Key{{Kid: "new", Public: k.rsa2.Public()}}
	if _, code, detail := v.verify(context.Background(), tok, pol, testNow); code != OK {
		t.Fatalf("after rotation: %v (%s)", code, detail)
	}
	if n := src.refreshes.Load(); n != 3 {
		t.Fatalf("refreshes = %d, want 3", n)
	}
}

// TestVerifyCache covers the verified-token cache: hits, and what makes a
// hit untrusted.
func TestVerifyCache(t *testing.T) {
	k := testKeys(t)
	ctx := context.Background()
	tok := sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), baseClaims(testNow))

	setup := func(t *testing.T) (*verifier, *countingKeys, *Issuer, *verifiedToken) {
		src := &countingKeys{keys: k.issuerKeys()}
		iss := testIssuer(src)
		v := newTestVerifier(t)
		vt, code, detail := v.verify(ctx, tok, testPolicyWith(iss), testNow)
		if code != OK {
			t.Fatalf("first verify: %v (%s)", code, detail)
		}
		v.wait()
		if n := src.keyCalls.Load(); n != 1 {
			t.Fatalf("key calls = %d, want 1", n)
		}
		return v, src, iss, vt
	}

	t.Run("hit after first verify", func(t *testing.T) {
		v, src, iss, first := setup(t)
		vt, code, _ := v.verify(ctx, tok, testPolicyWith(iss), testNow.Add(time.Minute))
		if code != OK || vt != first {
			t.Fatalf("second verify: code %v, same token %v", code, vt == first)
		}
		if n := src.keyCalls.Load(); n != 1 {
			t.Fatalf("a hit consulted the keys (%d calls)", n)
		}
	})
	t.Run("fingerprint change re-verifies", func(t *testing.T) {
		v, src, iss, first := setup(t)
		changed := *iss
		changed.Fingerprint++
		vt, code, _ := v.verify(ctx, tok, testPolicyWith(&changed), testNow)
		if code != OK || vt == first || src.keyCalls.Load() != 2 {
			t.Fatalf("code %v, reused %v, key calls %d", code, vt == first, src.keyCalls.Load())
		}
	})
	t.Run("audience change denies", func(t *testing.T) {
		v, _, iss, _ := setup(t)
		changed := *iss
		changed.Audiences = []string{"api://billing"}
		changed.Fingerprint++
		if _, code, _ := v.verify(ctx, tok, testPolicyWith(&changed), testNow); code != AudienceMismatch {
			t.Fatalf("code %v, want audience_mismatch", code)
		}
	})
	t.Run("issuer removed", func(t *testing.T) {
		v, _, _, _ := setup(t)
		if _, code, _ := v.verify(ctx, tok, testPolicyWith(), testNow); code != IssuerUnknown {
			t.Fatalf("code %v, want issuer_unknown", code)
		}
	})
	t.Run("key epoch change re-verifies", func(t *testing.T) {
		v, src, iss, first := setup(t)
		src.set(k.issuerKeys())
		vt, code, _ := v.verify(ctx, tok, testPolicyWith(iss), testNow)
		if code != OK || vt == first || src.keyCalls.Load() != 2 {
			t.Fatalf("code %v, reused %v, key calls %d", code, vt == first, src.keyCalls.Load())
		}
	})
	t.Run("revoked key denies cached token", func(t *testing.T) {
		v, src, iss, _ := setup(t)
		src.set([]Key{{Kid: "rsa2", Public: k.rsa2.Public()}})
		if _, code, _ := v.verify(ctx, tok, testPolicyWith(iss), testNow); code != KeyNotFound {
			t.Fatalf("code %v, want key_not_found", code)
		}
	})
	t.Run("expiry honoured on hit", func(t *testing.T) {
		v, src, iss, _ := setup(t)
		late := testNow.Add(time.Hour + 31*time.Second)
		if _, code, _ := v.verify(ctx, tok, testPolicyWith(iss), late); code != TokenExpired {
			t.Fatalf("code %v, want token_expired", code)
		}
		if src.keyCalls.Load() != 1 {
			t.Fatalf("expiry was not decided from the cache")
		}
		if _, code, _ := v.verify(ctx, tok, testPolicyWith(iss), testNow.Add(time.Hour+29*time.Second)); code != OK {
			t.Fatalf("within skew: %v", code)
		}
	})
	t.Run("nbf honoured on hit", func(t *testing.T) {
		src := &countingKeys{keys: k.issuerKeys()}
		iss := testIssuer(src)
		v := newTestVerifier(t)
		future := sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), with(baseClaims(testNow), "nbf", testNow.Add(time.Minute).Unix()))
		if _, code, _ := v.verify(ctx, future, testPolicyWith(iss), testNow); code != TokenNotYetValid {
			t.Fatalf("code %v", code)
		}
		v.wait()
		if _, code, _ := v.verify(ctx, future, testPolicyWith(iss), testNow.Add(time.Minute)); code != OK {
			t.Fatalf("later: %v", code)
		}
		if src.keyCalls.Load() != 1 {
			t.Fatalf("key calls = %d, want 1: a not-yet-valid token is cached and re-checked", src.keyCalls.Load())
		}
	})
	t.Run("purge", func(t *testing.T) {
		v, src, iss, first := setup(t)
		v.purge()
		vt, code, _ := v.verify(ctx, tok, testPolicyWith(iss), testNow)
		if code != OK || vt == first || src.keyCalls.Load() != 2 {
			t.Fatalf("code %v, reused %v, key calls %d", code, vt == first, src.keyCalls.Load())
		}
	})
	t.Run("hash collision is not trusted", func(t *testing.T) {
		src := &countingKeys{keys: k.issuerKeys()}
		iss := testIssuer(src)
		v := newTestVerifier(t)
		// An entry stored under tok's key whose raw string differs, as a
		// ristretto hash collision would leave it.
		forged := &verifiedToken{fingerprint: iss.Fingerprint, Token: Token{exp: dateAt(testNow.Add(time.Hour).UnixNano())}}
		forged.Token.Issuer, forged.Token.raw = testIss, "other"
		v.cache.c.Set(tok, cacheValue{vt: forged}, 1)
		v.wait()
		vt, code, _ := v.verify(ctx, tok, testPolicyWith(iss), testNow)
		if code != OK || vt == forged || src.keyCalls.Load() != 1 {
			t.Fatalf("code %v, trusted forged %v", code, vt == forged)
		}
	})
	t.Run("zero allocations on hit", func(t *testing.T) {
		v, _, iss, _ := setup(t)
		pol := testPolicyWith(iss)
		allocs := testing.AllocsPerRun(200, func() {
			if _, code, _ := v.verify(ctx, tok, pol, testNow); code != OK {
				t.Fatal(code)
			}
		})
		if allocs != 0 {
			t.Fatalf("cache hit allocates %.1f times", allocs)
		}
	})
}

// TestVerifyNegativeCache: failures found after a signature check, which
// only a key-set or policy change can alter, are remembered (by a digest,
// never the token); failures that cost less than a cache entry to find
// again, and those the key set may cure at any moment, are not.
func TestVerifyNegativeCache(t *testing.T) {
	k := testKeys(t)
	ctx := context.Background()
	claims := baseClaims(testNow)
	cases := []struct {
		name      string
		token     string
		want      Code
		cached    bool
		afterBump bool // still cached after a key epoch change
	}{
		{"bad signature", sign(t, k.attacker, "RS256", hdr("RS256", "rsa1"), claims), TokenInvalid, true, false},
		{"audience mismatch", sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), with(claims, "aud", "api://elsewhere")), AudienceMismatch, true, false},
		{"bad claim after the signature", sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), with(claims, "sub", 7)), TokenInvalid, true, false},
		{"alg not allowed", sign(t, k.p384, "ES384", hdr("ES384", "ec1"), claims), AlgorithmNotAllowed, false, false},
		{"alg none", sign(t, k.rsa, "RS256", hdr("none", ""), claims), AlgorithmNotAllowed, false, false},
		{"bad typ", sign(t, k.rsa, "RS256", map[string]any{"alg": "RS256", "kid": "rsa1", "typ": "id+jwt"}, claims), TokenInvalid, false, false},
		{"unknown issuer", sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), with(claims, "iss", "https://unknown.test/")), IssuerUnknown, false, false},
		{"malformed", "a.b.c.d", TokenInvalid, false, false},
		{"two parts", "eyJhbGciOiJSUzI1NiJ9.e30", TokenInvalid, false, false},
		{"header not JSON", "bm90IGpzb24.e30.c2ln", TokenInvalid, false, false},
		{"payload not JSON", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", TokenInvalid, false, false},
		{"unknown kid", sign(t, k.rsa, "RS256", hdr("RS256", "nope"), claims), KeyNotFound, false, false},
		{"expired", sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), with(claims, "exp", testNow.Add(-time.Hour).Unix())), TokenExpired, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingKeys{keys: k.issuerKeys()}
			pol := testPolicyWith(testIssuer(src))
			v := newTestVerifier(t)
			// A failure is remembered from its second time (failureMemo).
			for range 3 {
				if _, code, _ := v.verify(ctx, tc.token, pol, testNow); code != tc.want {
					t.Fatalf("code %v, want %v", code, tc.want)
				}
				v.wait()
			}
			e, hit := v.cache.c.Get(tc.token)
			if got := hit && e.neg != nil; got != tc.cached {
				t.Fatalf("cached as failure = %v, want %v", got, tc.cached)
			}
			if hit && e.neg != nil && (e.vt != nil || strings.Contains(e.neg.detail, tc.token) || e.neg.digest != tokenDigest(tc.token)) {
				t.Fatalf("the remembered failure holds the token or a wrong digest: %+v", *e.neg)
			}
			wantColds := uint64(3)
			if tc.cached {
				wantColds = 2
			}
			if n := v.colds.Load(); n != wantColds {
				t.Fatalf("%d full verifications for 3 presentations, want %d", n, wantColds)
			}
			if !tc.cached {
				return
			}
			src.set(k.issuerKeys())
			before := v.colds.Load()
			if _, code, _ := v.verify(ctx, tc.token, pol, testNow); code != tc.want {
				t.Fatalf("after bump: %v", code)
			}
			if reused := v.colds.Load() == before; reused != tc.afterBump {
				t.Fatalf("after an epoch change the failure was reused=%v, want %v", reused, tc.afterBump)
			}
			// The failure lapses after negativeTTL even if nothing changed.
			v.wait()
			before = v.colds.Load()
			if _, code, _ := v.verify(ctx, tc.token, pol, testNow.Add(negativeTTL+time.Second)); code != tc.want {
				t.Fatalf("after ttl: %v", code)
			}
			if v.colds.Load() == before {
				t.Fatalf("a failure older than %v was reused", negativeTTL)
			}
		})
	}

	t.Run("issuer unknown until added", func(t *testing.T) {
		src := &countingKeys{keys: k.issuerKeys()}
		other := testIssuer(src)
		other.Name = "https://later.test/"
		tok := sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), with(claims, "iss", other.Name))
		v := newTestVerifier(t)
		if _, code, _ := v.verify(ctx, tok, testPolicyWith(testIssuer(src)), testNow); code != IssuerUnknown {
			t.Fatalf("code %v", code)
		}
		v.wait()
		if _, hit := v.cache.c.Get(tok); hit {
			t.Fatalf("issuer_unknown was cached: an unknown issuer costs no signature check")
		}
		if _, code, detail := v.verify(ctx, tok, testPolicyWith(testIssuer(src), other), testNow); code != OK {
			t.Fatalf("after adding the issuer: %v (%s)", code, detail)
		}
	})
}

func BenchmarkVerifyCached(b *testing.B) {
	k := testKeys(b)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	v := newTestVerifier(b)
	tok := sign(b, k.rsa, "RS256", hdr("RS256", "rsa1"), baseClaims(testNow))
	ctx := context.Background()
	if _, code, _ := v.verify(ctx, tok, pol, testNow); code != OK {
		b.Fatal(code)
	}
	v.wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, code, _ := v.verify(ctx, tok, pol, testNow); code != OK {
			b.Fatal(code)
		}
	}
}

// BenchmarkVerifyColdRS256 is the full cold path, cache store included;
// compare with BenchmarkBareRSAVerify, the signature check alone.
func BenchmarkVerifyColdRS256(b *testing.B) {
	k := testKeys(b)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	v := newTestVerifier(b)
	tok := sign(b, k.rsa, "RS256", hdr("RS256", "rsa1"), baseClaims(testNow))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, code, _ := v.verifyCold(ctx, tok, pol, testNow); code != OK {
			b.Fatal(code)
		}
	}
}

// BenchmarkBareRSAVerify is the floor: hashing the signing input and one
// RSA-2048 PKCS#1 v1.5 verification.
func BenchmarkBareRSAVerify(b *testing.B) {
	k := testKeys(b)
	tok := sign(b, k.rsa, "RS256", hdr("RS256", "rsa1"), baseClaims(testNow))
	i := strings.LastIndexByte(tok, '.')
	input := tok[:i]
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := k.rsa.Public().(*rsa.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		sum := sha256.Sum256([]byte(input))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHeaderMemo(t *testing.T) {
	var m headerMemo
	enc := func(h map[string]any) string { return b64json(t, h) }
	a := enc(hdr("RS256", "a"))
	p1, f := m.parse(a)
	if f != nil || p1.alg != "RS256" || p1.kid != "a" || p1.typ != "JWT" {
		t.Fatalf("parse: %+v %v", p1, f)
	}
	if p2, _ := m.parse(a); p2 != p1 {
		t.Fatal("a repeated header was parsed again")
	}
	// A header sharing a's slot replaces it and is parsed on its own.
	slot := func(s string) *atomic.Pointer[parsedHeader] {
		for i := range m {
			if p := m[i].Load(); p != nil && p.b64 == s {
				return &m[i]
			}
		}
		return nil
	}
	aSlot := slot(a)
	evicted := false
	for i := range 10000 {
		b := enc(hdr("ES256", "b"+strconv.Itoa(i)))
		p, f := m.parse(b)
		if f != nil || p.alg != "ES256" || p.kid != "b"+strconv.Itoa(i) {
			t.Fatalf("parse %d: %+v %v", i, p, f)
		}
		if slot(b) == aSlot {
			if p, _ := m.parse(a); p == p1 || p.kid != "a" {
				t.Fatalf("after eviction: %+v", p)
			}
			evicted = true
			break
		}
	}
	if !evicted {
		t.Fatal("no header shared a's slot")
	}
	// Invalid headers are never remembered.
	bad := enc(map[string]any{"alg": "RS256", "crit": []string{"b64"}})
	for range 2 {
		if _, f := m.parse(bad); f == nil || f.code != TokenInvalid {
			t.Fatalf("crit header: %v", f)
		}
	}
	if slot(bad) != nil {
		t.Fatal("an invalid header was remembered")
	}
}

// TestVerifiedTokenOwnsItsString: a token arrives as a substring of a
// whole decoded request; what the cache keeps must be a copy, or one cached
// token would keep its request (headers and all) alive.
func TestVerifiedTokenOwnsItsString(t *testing.T) {
	k := testKeys(t)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	tok := sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), baseClaims(testNow))
	request := "x-request-id: 1\nauthorization: Bearer " + tok + "\nuser-agent: test\n"
	start := strings.Index(request, tok)
	raw := request[start : start+len(tok)]
	v := newTestVerifier(t)
	vt, code, detail := v.verify(context.Background(), raw, pol, testNow)
	if code != OK {
		t.Fatalf("verify = %s (%s)", code, detail)
	}
	reqStart := uintptr(unsafe.Pointer(unsafe.StringData(request)))
	if p := uintptr(unsafe.Pointer(unsafe.StringData(vt.Token.raw))); p >= reqStart && p < reqStart+uintptr(len(request)) {
		t.Error("the verified token's string points into the request")
	}
	v.wait()
	if e, ok := v.cache.c.Get(raw); !ok || e.vt == nil || e.vt.Token.raw != raw || unsafe.StringData(e.vt.Token.raw) == unsafe.StringData(raw) {
		t.Errorf("cache entry %v (found %v): want a copy of the token", e.vt != nil, ok)
	}
}

// BenchmarkParseHeader is the protected header's decoding on a memo miss
// (a token signed with a header not seen recently).
func BenchmarkParseHeader(b *testing.B) {
	enc := b64json(b, hdr("RS256", "rsa1"))
	b.ReportAllocs()
	for b.Loop() {
		if _, f := parseHeader(enc); f != nil {
			b.Fatal(f.detail)
		}
	}
}
