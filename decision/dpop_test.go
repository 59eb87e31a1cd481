package decision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

const dpopPolicy = `
issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
  - issuer: https://fapi.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
    dpop: required
routes:
  - name: read-order
    match: {methods: [GET, POST], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: payments
    match: {methods: [POST], path: /payments}
    require: {all_of: [orders:read]}
    dpop: required
dpop:
  max_age: 60s
  clock_skew: 5s
`

const dpopURL = "https://api.example.com/orders/42"

type dpopFixture struct {
	engine *decision.Engine
	issuer *decisiontest.Signer
	prover *decisiontest.Prover
	now    time.Time
}

func newDPoPFixture(t testing.TB, policy string, opts decision.Options) *dpopFixture {
	t.Helper()
	iss, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	prover, err := decisiontest.NewProver(decisiontest.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := decision.Compile([]byte(policy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := &dpopFixture{issuer: iss, prover: prover, now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	opts.Keys = decision.StaticKeyResolver(staticKeys(t, iss))
	opts.Clock = func() time.Time { return f.now }
	f.engine, err = decision.NewEngine(pol, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.engine.Close)
	return f
}

// token mints an access token of issuer iss bound to jkt ("" unbound).
func (f *dpopFixture) token(t testing.TB, iss, jkt string) string {
	t.Helper()
	c := decisiontest.StandardClaims(iss, "orders-api", "alice", "app", "orders:read", time.Hour, f.now)
	if jkt != "" {
		c["cnf"] = map[string]any{"jkt": jkt}
	}
	tok, err := f.issuer.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *dpopFixture) proof(t testing.TB, header map[string]any, claims decisiontest.Claims) string {
	t.Helper()
	p, err := f.prover.ProofWith(header, claims)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *dpopFixture) claims(method, htu, token string) decisiontest.Claims {
	return decisiontest.Claims{"htm": method, "htu": htu, "ath": decisiontest.ATH(token), "iat": f.now.Unix(), "jti": decisiontest.RandomID()}
}

func dpopRequest(method, path, token, proof string) *decision.Request {
	r := &decision.Request{Method: method, Path: path, Host: "api.example.com", Scheme: "https", Authorization: "DPoP " + token, AuthorizationCount: 1}
	if proof != "" {
		r.DPoP, r.DPoPCount = proof, 1
	}
	return r
}

func TestDPoPDecisions(t *testing.T) {
	f := newDPoPFixture(t, dpopPolicy, decision.Options{})
	bound := f.token(t, testIssuer, f.prover.JKT)
	unbound := f.token(t, testIssuer, "")
	other, err := decisiontest.NewProver(decisiontest.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	otherBound := f.token(t, testIssuer, other.JKT)
	ok := f.claims("GET", dpopURL, bound)
	with := func(k string, v any) decisiontest.Claims {
		c := f.claims("GET", dpopURL, bound)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	privJWK := map[string]any{}
	for k, v := range f.prover.JWK {
		privJWK[k] = v
	}
	privJWK["d"] = "AAAA"

	cases := []struct {
		name string
		req  func() *decision.Request
		want decision.Code
	}{
		{"valid proof", func() *decision.Request { return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, ok)) }, decision.OK},
		{"query and fragment ignored, default port and case normalized", func() *decision.Request {
			return dpopRequest("GET", "/orders/42?x=1", bound, f.proof(t, nil, with("htu", "HTTPS://API.example.com:443/orders/42#frag")))
		}, decision.OK},
		{"bound token as bearer", func() *decision.Request {
			r := dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, ok))
			r.Authorization = "Bearer " + bound
			return r
		}, decision.DPoPDowngrade},
		{"unbound bearer on an ordinary route", func() *decision.Request {
			r := dpopRequest("GET", "/orders/42", unbound, "")
			r.Authorization = "Bearer " + unbound
			return r
		}, decision.OK},
		{"unbound bearer on a dpop route", func() *decision.Request {
			r := dpopRequest("POST", "/payments", unbound, "")
			r.Authorization = "Bearer " + unbound
			return r
		}, decision.DPoPProofMissing},
		{"unbound bearer of a dpop issuer", func() *decision.Request {
			tok := f.token(t, "https://fapi.example.com/", "")
			r := dpopRequest("GET", "/orders/42", tok, "")
			r.Authorization = "Bearer " + tok
			return r
		}, decision.DPoPProofMissing},
		{"no proof header", func() *decision.Request { return dpopRequest("GET", "/orders/42", bound, "") }, decision.DPoPProofMissing},
		{"two proof headers", func() *decision.Request {
			r := dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, ok))
			r.DPoPCount = 2
			return r
		}, decision.DPoPProofInvalid},
		{"two proofs merged with a comma", func() *decision.Request {
			p := f.proof(t, nil, ok)
			return dpopRequest("GET", "/orders/42", bound, p+", "+p)
		}, decision.DPoPProofInvalid},
		{"not a jws", func() *decision.Request { return dpopRequest("GET", "/orders/42", bound, "not-a-jws") }, decision.DPoPProofInvalid},
		{"alg none", func() *decision.Request {
			p := f.proof(t, map[string]any{"alg": "none"}, ok)
			return dpopRequest("GET", "/orders/42", bound, p[:strings.LastIndexByte(p, '.')+1])
		}, decision.DPoPProofInvalid},
		{"alg HS256", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"alg": "HS256"}, ok))
		}, decision.DPoPProofInvalid},
		{"alg not in the allow-list", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"alg": "RS512"}, ok))
		}, decision.DPoPProofInvalid},
		{"alg that does not fit the key", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"alg": "ES384"}, ok))
		}, decision.DPoPProofInvalid},
		{"private key in jwk", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"jwk": privJWK}, ok))
		}, decision.DPoPProofInvalid},
		{"symmetric jwk", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}, ok))
		}, decision.DPoPProofInvalid},
		{"no jwk", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"jwk": nil}, ok))
		}, decision.DPoPProofInvalid},
		{"typ missing", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"typ": nil}, ok))
		}, decision.DPoPProofInvalid},
		{"typ jwt", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, map[string]any{"typ": "JWT"}, ok))
		}, decision.DPoPProofInvalid},
		{"jti missing", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("jti", nil)))
		}, decision.DPoPProofInvalid},
		{"iat a string", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("iat", "1700000000")))
		}, decision.DPoPProofInvalid},
		{"signature by another key", func() *decision.Request {
			p := f.proof(t, map[string]any{"jwk": other.JWK}, ok)
			return dpopRequest("GET", "/orders/42", bound, p)
		}, decision.DPoPSignatureInvalid},
		{"thumbprint is not cnf.jkt", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", otherBound, f.proof(t, nil, f.claims("GET", dpopURL, otherBound)))
		}, decision.DPoPKeyMismatch},
		{"unbound token with DPoP scheme", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", unbound, f.proof(t, nil, f.claims("GET", dpopURL, unbound)))
		}, decision.DPoPKeyMismatch},
		{"another method", func() *decision.Request {
			return dpopRequest("POST", "/orders/42", bound, f.proof(t, nil, ok))
		}, decision.DPoPMethodMismatch},
		{"method case differs", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("htm", "get")))
		}, decision.DPoPMethodMismatch},
		{"another path", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("htu", "https://api.example.com/orders/43")))
		}, decision.DPoPURIMismatch},
		{"another host", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("htu", "https://evil.example.com/orders/42")))
		}, decision.DPoPURIMismatch},
		{"another scheme", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("htu", "http://api.example.com/orders/42")))
		}, decision.DPoPURIMismatch},
		{"another port", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("htu", "https://api.example.com:8443/orders/42")))
		}, decision.DPoPURIMismatch},
		{"relative htu", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("htu", "/orders/42")))
		}, decision.DPoPURIMismatch},
		{"proxy reported no scheme", func() *decision.Request {
			r := dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, ok))
			r.Scheme = ""
			return r
		}, decision.DPoPURIMismatch},
		{"from the future", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("iat", f.now.Add(6*time.Second).Unix())))
		}, decision.DPoPProofStale},
		{"stale", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("iat", f.now.Add(-66*time.Second).Unix())))
		}, decision.DPoPProofStale},
		{"within skew", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("iat", f.now.Add(-64*time.Second).Unix())))
		}, decision.OK},
		{"proof for another token", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("ath", decisiontest.ATH(otherBound))))
		}, decision.DPoPAthMismatch},
		{"ath missing", func() *decision.Request {
			return dpopRequest("GET", "/orders/42", bound, f.proof(t, nil, with("ath", nil)))
		}, decision.DPoPProofInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), tc.req())
			if d.Code != tc.want {
				t.Fatalf("code %s (%s), want %s", d.Code, d.Message(), tc.want)
			}
			if tc.want != decision.OK && d.Message() == "" {
				t.Fatal("a deny without a message")
			}
		})
	}
}

func TestDPoPReplay(t *testing.T) {
	f := newDPoPFixture(t, dpopPolicy, decision.Options{})
	tok := f.token(t, testIssuer, f.prover.JKT)
	p := f.proof(t, nil, f.claims("GET", dpopURL, tok))
	if d := f.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42", tok, p)); !d.Allow {
		t.Fatalf("first use: %s (%s)", d.Code, d.Message())
	}
	if d := f.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42", tok, p)); d.Code != decision.DPoPProofReplayed {
		t.Fatalf("second use: %s, want dpop_proof_replayed", d.Code)
	}
	// A denied proof is not remembered: only allows claim a jti.
	c := f.claims("GET", dpopURL, tok)
	p2 := f.proof(t, nil, c)
	if d := f.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42?", tok, p2)); !d.Allow {
		t.Fatalf("fresh proof: %s (%s)", d.Code, d.Message())
	}
}

type downReplay struct{}

func (downReplay) Claim(context.Context, decision.ReplayKey, time.Time) (bool, error) {
	return false, errors.New("store down")
}

func TestDPoPReplayUnavailable(t *testing.T) {
	f := newDPoPFixture(t, dpopPolicy, decision.Options{Replay: downReplay{}})
	tok := f.token(t, testIssuer, f.prover.JKT)
	d := f.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42", tok, f.proof(t, nil, f.claims("GET", dpopURL, tok))))
	if d.Code != decision.DPoPReplayUnavailable || d.Code.HTTPStatus() != 503 {
		t.Fatalf("code %s, want dpop_replay_unavailable (503)", d.Code)
	}
}

func TestMemReplayCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := decision.NewMemReplayCache(3*128, func() time.Time { return now })
	ctx := context.Background()
	key := func(b byte) decision.ReplayKey { return decision.ReplayKey{b} }
	for i := byte(1); i <= 3; i++ {
		if replayed, err := c.Claim(ctx, key(i), now.Add(time.Minute)); replayed || err != nil {
			t.Fatalf("claim %d: %v, %v", i, replayed, err)
		}
	}
	if replayed, err := c.Claim(ctx, key(2), now.Add(time.Minute)); !replayed || err != nil {
		t.Fatalf("replay of 2: %v, %v", replayed, err)
	}
	// Full of unexpired proofs: refused, never evicted.
	if _, err := c.Claim(ctx, key(4), now.Add(time.Minute)); !errors.Is(err, decision.ErrReplayCacheFull) {
		t.Fatalf("full cache: %v, want ErrReplayCacheFull", err)
	}
	if replayed, _ := c.Claim(ctx, key(1), now.Add(time.Minute)); !replayed {
		t.Fatal("a full cache forgot key 1")
	}
	now = now.Add(2 * time.Minute)
	if replayed, err := c.Claim(ctx, key(4), now.Add(time.Minute)); replayed || err != nil {
		t.Fatalf("after expiry: %v, %v", replayed, err)
	}
	if n := c.Len(); n != 1 {
		t.Fatalf("after expiry the cache holds %d entries, want 1", n)
	}
}

// sharedReplay is a shared replay cache in memory that counts its calls
// and can be made to fail.
type sharedReplay struct {
	seen  map[decision.ReplayKey]bool
	calls int
	err   error
}

func (s *sharedReplay) Claim(_ context.Context, key decision.ReplayKey, _ time.Time) (bool, error) {
	s.calls++
	if s.err != nil {
		return false, s.err
	}
	if s.seen[key] {
		return true, nil
	}
	s.seen[key] = true
	return false, nil
}

func TestLayeredReplayCache(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	exp := now.Add(time.Minute)
	ctx := context.Background()
	key := func(b byte) decision.ReplayKey { return decision.ReplayKey{b} }
	shared := &sharedReplay{seen: map[decision.ReplayKey]bool{}}
	c := &decision.LayeredReplayCache{Local: decision.NewMemReplayCache(2*128, clock), Shared: shared}

	if replayed, err := c.Claim(ctx, key(1), exp); replayed || err != nil || shared.calls != 1 {
		t.Fatalf("new key: %v, %v, %d shared calls; want new, one call", replayed, err, shared.calls)
	}
	// Seen here: a replay without asking the shared cache.
	if replayed, err := c.Claim(ctx, key(1), exp); !replayed || err != nil || shared.calls != 1 {
		t.Fatalf("local replay: %v, %v, %d shared calls; want replayed, no new call", replayed, err, shared.calls)
	}
	// Seen by another replica only: the shared cache says replay.
	shared.seen[key(2)] = true
	if replayed, err := c.Claim(ctx, key(2), exp); !replayed || err != nil {
		t.Fatalf("replay seen by another replica: %v, %v", replayed, err)
	}
	// The local cache is full now; the shared cache still decides.
	if replayed, err := c.Claim(ctx, key(3), exp); replayed || err != nil {
		t.Fatalf("new key with the local cache full: %v, %v", replayed, err)
	}
	if replayed, err := c.Claim(ctx, key(3), exp); !replayed || err != nil {
		t.Fatalf("replay with the local cache full: %v, %v", replayed, err)
	}
	// The shared cache down: an error, never a new proof accepted.
	shared.err = errors.New("store down")
	if replayed, err := c.Claim(ctx, key(4), exp); err == nil {
		t.Fatalf("shared cache down: %v, nil error; want its error", replayed)
	}
}

const dpopNoncePolicy = dpopPolicy + `  nonce: required
`

func TestDPoPNonce(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	f := newDPoPFixture(t, dpopNoncePolicy, decision.Options{DPoPNonceSecret: secret})
	tok := f.token(t, testIssuer, f.prover.JKT)
	d := f.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42", tok, f.proof(t, nil, f.claims("GET", dpopURL, tok))))
	if d.Code != decision.DPoPNonceRequired || d.DPoPNonce == "" || d.Code.Challenge() != decision.ChallengeDPoPNonce {
		t.Fatalf("without a nonce: %s, nonce %q", d.Code, d.DPoPNonce)
	}
	nonce := d.DPoPNonce
	withNonce := func() decision.Decision {
		c := f.claims("GET", dpopURL, tok)
		c["nonce"] = nonce
		return f.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42", tok, f.proof(t, nil, c)))
	}
	if d := withNonce(); !d.Allow {
		t.Fatalf("with the nonce: %s (%s)", d.Code, d.Message())
	}
	// Accepted in the next window too, not in the one after.
	f.now = f.now.Add(60 * time.Second)
	if d := withNonce(); !d.Allow {
		t.Fatalf("nonce of the previous window: %s (%s)", d.Code, d.Message())
	}
	f.now = f.now.Add(60 * time.Second)
	if d = withNonce(); d.Code != decision.DPoPNonceRequired || d.DPoPNonce == nonce {
		t.Fatalf("nonce two windows old: %s, new nonce %q", d.Code, d.DPoPNonce)
	}
	// Another deployment's secret makes other nonces.
	g := newDPoPFixture(t, dpopNoncePolicy, decision.Options{DPoPNonceSecret: []byte(strings.Repeat("t", 32))})
	g.now = f.now
	tok = g.token(t, testIssuer, g.prover.JKT)
	dg := g.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42", tok, g.proof(t, nil, g.claims("GET", dpopURL, tok))))
	if dg.DPoPNonce == "" || dg.DPoPNonce == d.DPoPNonce {
		t.Fatalf("two secrets gave the nonce %q", dg.DPoPNonce)
	}
}

func TestDPoPNonceWithoutSecret(t *testing.T) {
	f := newDPoPFixture(t, dpopNoncePolicy, decision.Options{})
	tok := f.token(t, testIssuer, f.prover.JKT)
	d := f.engine.Decide(context.Background(), dpopRequest("GET", "/orders/42", tok, f.proof(t, nil, f.claims("GET", dpopURL, tok))))
	if d.Allow || d.Code != decision.Internal {
		t.Fatalf("nonce required without a secret: %s", d.Code)
	}
	if _, err := decision.NewEngine(nil, decision.Options{DPoPNonceSecret: []byte("short")}); err == nil {
		t.Fatal("a 5-byte nonce secret was accepted")
	}
}

func TestDPoPPolicyErrors(t *testing.T) {
	base := `
issuers:
  - issuer: https://id.example.com/
    audiences: [a]
    jwks_file: keys.json
    algorithms: [RS256]
routes:
  - name: r
    match: {path: /x}
`
	cases := map[string]struct{ extra, field string }{
		"hmac":          {"dpop: {algorithms: [HS256]}", "dpop.algorithms[0]"},
		"none":          {"dpop: {algorithms: [none]}", "dpop.algorithms[0]"},
		"unknown alg":   {"dpop: {algorithms: [es256]}", "dpop.algorithms[0]"},
		"window":        {"dpop: {max_age: 1h}", "dpop"},
		"nonce value":   {"dpop: {nonce: yes}", "dpop.nonce"},
		"route value":   {"", "routes[0].dpop"},
		"issuer value":  {"", "issuers[0].dpop"},
		"zero max_age":  {"dpop: {max_age: 0s}", "dpop.max_age"},
		"twice the alg": {"dpop: {algorithms: [ES256, ES256]}", "dpop.algorithms[1]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			src := base + tc.extra + "\n"
			switch name {
			case "route value":
				src = strings.Replace(src, "match: {path: /x}", "match: {path: /x}\n    dpop: optional", 1)
			case "issuer value":
				src = strings.Replace(src, "algorithms: [RS256]", "algorithms: [RS256]\n    dpop: true", 1)
			}
			_, err := decision.Compile([]byte(src), "p.yaml", decision.CompileOptions{})
			var le *decision.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("compiled without error: %v", err)
			}
			for _, p := range le.Problems {
				if p.Field == tc.field {
					return
				}
			}
			t.Fatalf("no problem on %s: %v", tc.field, err)
		})
	}
}
