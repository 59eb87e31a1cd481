package decision_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

const introspectPolicy = `
issuers:
  - issuer: https://as.example.com
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
    introspection:
      endpoint: https://as.example.com/introspect
      client_id: scopegate
      client_secret_env: TEST_SECRET
      cache_ttl: 1m
      negative_cache_ttl: 5s
  - issuer: https://partner.example.net
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
    introspection:
      endpoint: https://partner.example.net/introspect
      client_id: scopegate
      client_secret_env: TEST_SECRET
      token_prefix: "pt_"
      jwt_response: true
routes:
  - name: read-order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: vip
    match: {methods: [GET], path: /vip}
    require: {all_of: [orders:read]}
    when: {claims: [{claim: tier, equals: gold}]}
  - name: payout
    match: {methods: [GET], path: /payout}
    require: {all_of: [orders:read]}
    when: {step_up: {acr: ["urn:mfa"], max_auth_age: 15m}}
`

// fakeAS answers introspection calls from a table of tokens.
type fakeAS struct {
	mu      sync.Mutex
	answers map[string]map[string]any // token → answer
	jwt     func(answer map[string]any) string
	err     error
	calls   map[string]int
}

func (a *fakeAS) Introspect(_ context.Context, in *decision.Introspection, token string) (decision.IntrospectionResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[token]++
	if a.err != nil {
		return decision.IntrospectionResponse{}, a.err
	}
	ans, ok := a.answers[token]
	if !ok {
		ans = map[string]any{"active": false}
	}
	if in.JWTResponse && a.jwt != nil {
		return decision.IntrospectionResponse{Body: []byte(a.jwt(ans)), JWT: true}, nil
	}
	b, _ := json.Marshal(ans)
	return decision.IntrospectionResponse{Body: b}, nil
}

func (a *fakeAS) count(token string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[token]
}

type introFixture struct {
	eng    *decision.Engine
	as     *fakeAS
	signer *decisiontest.Signer
	now    *time.Time
	mu     *sync.Mutex
}

func newIntroFixture(t testing.TB) *introFixture {
	t.Helper()
	signer, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := decision.Compile([]byte(introspectPolicy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := &introFixture{as: &fakeAS{answers: map[string]map[string]any{}, calls: map[string]int{}}, signer: signer, mu: &sync.Mutex{}}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f.now = &now
	clock := func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return *f.now }
	f.eng, err = decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(staticKeys(t, signer)), Clock: clock, Introspector: f.as})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.eng.Close)
	return f
}

func (f *introFixture) advance(d time.Duration) {
	f.mu.Lock()
	*f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *introFixture) active(token, scope string, extra map[string]any) {
	ans := map[string]any{"active": true, "iss": "https://as.example.com", "scope": scope, "client_id": "app", "sub": "alice",
		"aud": "orders-api", "exp": f.now.Add(time.Hour).Unix(), "iat": f.now.Unix(), "jti": "j-" + token}
	for k, v := range extra {
		ans[k] = v
	}
	f.as.mu.Lock()
	f.as.answers[token] = ans
	f.as.mu.Unlock()
}

func (f *introFixture) decide(path, token string) decision.Decision {
	d := f.eng.Decide(context.Background(), &decision.Request{Method: "GET", Path: path, Authorization: "Bearer " + token, AuthorizationCount: 1})
	f.eng.WaitTokenCache()
	return d
}

func wantDecision(t *testing.T, d decision.Decision, want decision.Code) {
	t.Helper()
	if d.Code != want || d.Allow != (want == decision.OK) {
		t.Fatalf("decision %v (%s), want %v", d.Code, d.Message(), want)
	}
}

func TestIntrospectedTokenDecidesLikeAJWT(t *testing.T) {
	f := newIntroFixture(t)
	f.active("opaque-read", "orders:read", nil)
	f.active("opaque-write", "orders:write", nil)
	d := f.decide("/orders/1", "opaque-read")
	wantDecision(t, d, decision.OK)
	if d.Token.Subject != "alice" || d.Token.ClientID != "app" || d.Token.JTI != "j-opaque-read" || d.Token.Issuer != "https://as.example.com" {
		t.Fatalf("token %+v", d.Token)
	}
	wantDecision(t, f.decide("/orders/1", "opaque-write"), decision.InsufficientScope)
	// Cached: a second decision asks nobody.
	wantDecision(t, f.decide("/orders/1", "opaque-read"), decision.OK)
	if n := f.as.count("opaque-read"); n != 1 {
		t.Fatalf("%d introspection calls for one token, want 1 (cached)", n)
	}
	if hits, misses := f.eng.IntrospectionStats(); hits != 1 || misses != 2 {
		t.Fatalf("IntrospectionStats = %d hits, %d misses; want 1, 2", hits, misses)
	}
}

func TestIntrospectionClaimConditions(t *testing.T) {
	f := newIntroFixture(t)
	f.active("gold", "orders:read", map[string]any{"tier": "gold"})
	f.active("silver", "orders:read", map[string]any{"tier": "silver"})
	wantDecision(t, f.decide("/vip", "gold"), decision.OK)
	wantDecision(t, f.decide("/vip", "silver"), decision.ClaimConditionFailed)
}

func TestIntrospectionStepUp(t *testing.T) {
	f := newIntroFixture(t)
	f.active("mfa-recent", "orders:read", map[string]any{"acr": "urn:mfa", "auth_time": f.now.Add(-time.Minute).Unix()})
	f.active("mfa-old", "orders:read", map[string]any{"acr": "urn:mfa", "auth_time": f.now.Add(-time.Hour).Unix()})
	f.active("password", "orders:read", map[string]any{"acr": "urn:pwd", "auth_time": f.now.Unix()})
	wantDecision(t, f.decide("/payout", "mfa-recent"), decision.OK)
	for _, tok := range []string{"mfa-old", "password"} {
		d := f.decide("/payout", tok)
		wantDecision(t, d, decision.InsufficientUserAuthentication)
		if d.Code.Challenge() != decision.ChallengeStepUp {
			t.Fatalf("%s: challenge %v, want the RFC 9470 step-up challenge", tok, d.Code.Challenge())
		}
	}
}

func TestIntrospectionRefusals(t *testing.T) {
	f := newIntroFixture(t)
	f.active("other-aud", "orders:read", map[string]any{"aud": "billing"})
	f.active("no-aud", "orders:read", map[string]any{"aud": nil})
	f.active("other-iss", "orders:read", map[string]any{"iss": "https://evil.example"})
	f.active("expired", "orders:read", map[string]any{"exp": f.now.Add(-time.Hour).Unix()})
	f.active("bad-scope", "orders:read", map[string]any{"scope": 7})
	wantDecision(t, f.decide("/orders/1", "other-aud"), decision.AudienceMismatch)
	wantDecision(t, f.decide("/orders/1", "no-aud"), decision.TokenInvalid)
	wantDecision(t, f.decide("/orders/1", "other-iss"), decision.IssuerUnknown)
	wantDecision(t, f.decide("/orders/1", "expired"), decision.TokenExpired)
	wantDecision(t, f.decide("/orders/1", "bad-scope"), decision.TokenInvalid)
	d := f.decide("/orders/1", "unknown")
	wantDecision(t, d, decision.TokenInvalid)
	if !strings.Contains(d.Detail, "inactive") {
		t.Fatalf("detail %q", d.Detail)
	}
}

func TestIntrospectionNegativeCache(t *testing.T) {
	f := newIntroFixture(t)
	wantDecision(t, f.decide("/orders/1", "revoked"), decision.TokenInvalid)
	wantDecision(t, f.decide("/orders/1", "revoked"), decision.TokenInvalid)
	if n := f.as.count("revoked"); n != 1 {
		t.Fatalf("%d calls within negative_cache_ttl, want 1", n)
	}
	// Past negative_cache_ttl the AS is asked again, and its answer holds.
	f.active("revoked", "orders:read", nil)
	f.advance(6 * time.Second)
	wantDecision(t, f.decide("/orders/1", "revoked"), decision.OK)
	if n := f.as.count("revoked"); n != 2 {
		t.Fatalf("%d calls after negative_cache_ttl, want 2", n)
	}
}

func TestIntrospectionNeverStaleBeyondTTL(t *testing.T) {
	f := newIntroFixture(t)
	f.active("t1", "orders:read", nil)
	wantDecision(t, f.decide("/orders/1", "t1"), decision.OK)
	// The AS revokes it; within cache_ttl (1m) the answer is reused...
	f.as.mu.Lock()
	delete(f.as.answers, "t1")
	f.as.mu.Unlock()
	f.advance(59 * time.Second)
	wantDecision(t, f.decide("/orders/1", "t1"), decision.OK)
	// ...and not one moment beyond it.
	f.advance(time.Second)
	wantDecision(t, f.decide("/orders/1", "t1"), decision.TokenInvalid)
	if n := f.as.count("t1"); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
	// An exp sooner than cache_ttl bounds the reuse too.
	f.active("short", "orders:read", map[string]any{"exp": f.now.Add(10 * time.Second).Unix()})
	wantDecision(t, f.decide("/orders/1", "short"), decision.OK)
	f.advance(11 * time.Second)
	f.decide("/orders/1", "short")
	if n := f.as.count("short"); n != 2 {
		t.Fatalf("an answer reused past the token's exp (%d calls, want 2)", n)
	}
	// Past exp and the clock skew (30s) the token is expired, as a JWT.
	f.advance(30 * time.Second)
	wantDecision(t, f.decide("/orders/1", "short"), decision.TokenExpired)
}

func TestIntrospectionUnavailable(t *testing.T) {
	f := newIntroFixture(t)
	f.active("t1", "orders:read", nil)
	f.as.err = errors.New("dial tcp: connection refused")
	d := f.decide("/orders/1", "t1")
	wantDecision(t, d, decision.IntrospectionUnavailable)
	if d.Code.HTTPStatus() != 503 || !strings.Contains(d.Detail, "connection refused") {
		t.Fatalf("status %d, detail %q", d.Code.HTTPStatus(), d.Detail)
	}
	// A failure is never cached: the next decision asks again.
	f.as.err = nil
	wantDecision(t, f.decide("/orders/1", "t1"), decision.OK)
}

func TestIntrospectionNoClient(t *testing.T) {
	pol, err := decision.Compile([]byte(introspectPolicy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	d := eng.Decide(context.Background(), &decision.Request{Method: "GET", Path: "/orders/1", Authorization: "Bearer abc", AuthorizationCount: 1})
	wantDecision(t, d, decision.IntrospectionUnavailable)
}

func TestIntrospectionRevocation(t *testing.T) {
	f := newIntroFixture(t)
	f.active("t1", "orders:read", nil)
	f.active("t2", "orders:read", map[string]any{"sub": "bob", "client_id": "other"})
	f.active("t3", "orders:read", map[string]any{"sub": "carol", "client_id": "bad-app"})
	wantDecision(t, f.decide("/orders/1", "t1"), decision.OK)
	f.eng.SetRevocations(decision.NewRevocationSet([]decision.Revocation{
		{ID: "1", Kind: decision.RevokeToken, Issuer: "https://as.example.com", JTI: "j-t1"},
		{ID: "2", Kind: decision.RevokeSubject, Subject: "bob"},
		{ID: "3", Kind: decision.RevokeClient, ClientID: "bad-app"},
	}))
	for _, tok := range []string{"t1", "t2", "t3"} {
		wantDecision(t, f.decide("/orders/1", tok), decision.Revoked)
	}
}

func TestIntrospectionRecognition(t *testing.T) {
	f := newIntroFixture(t)
	// A JWT is verified, never introspected.
	jwt, err := f.signer.Mint(decisiontest.StandardClaims("https://as.example.com", "orders-api", "alice", "app", "orders:read", time.Hour, *f.now), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDecision(t, f.decide("/orders/1", jwt), decision.OK)
	if n := f.as.count(jwt); n != 0 {
		t.Fatalf("a JWT was introspected %d times", n)
	}
	// A prefixed token goes to the partner issuer, which wants RFC 9701
	// answers: a plain JSON one is refused.
	f.as.answers["pt_abc"] = map[string]any{"active": true}
	d := f.decide("/orders/1", "pt_abc")
	wantDecision(t, d, decision.IntrospectionUnavailable)
	if !strings.Contains(d.Detail, "partner.example.net") || !strings.Contains(d.Detail, "RFC 9701") {
		t.Fatalf("detail %q", d.Detail)
	}
}

func TestIntrospectionJWTResponse(t *testing.T) {
	f := newIntroFixture(t)
	other, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	sign := func(s *decisiontest.Signer, typ, iss, aud string) func(map[string]any) string {
		return func(ans map[string]any) string {
			tok, err := s.Mint(decisiontest.Claims{"iss": iss, "aud": aud, "iat": f.now.Unix(), "token_introspection": ans}, map[string]any{"typ": typ})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	ans := map[string]any{"active": true, "scope": "orders:read", "aud": "orders-api", "sub": "alice", "exp": f.now.Add(time.Hour).Unix()}
	for _, tc := range []struct {
		name string
		jwt  func(map[string]any) string
		want decision.Code
	}{
		{"signed", sign(f.signer, "token-introspection+jwt", "https://partner.example.net", "scopegate"), decision.OK},
		{"another key", sign(other, "token-introspection+jwt", "https://partner.example.net", "scopegate"), decision.IntrospectionUnavailable},
		{"wrong typ", sign(f.signer, "at+jwt", "https://partner.example.net", "scopegate"), decision.IntrospectionUnavailable},
		{"wrong iss", sign(f.signer, "token-introspection+jwt", "https://as.example.com", "scopegate"), decision.IntrospectionUnavailable},
		{"wrong aud", sign(f.signer, "token-introspection+jwt", "https://partner.example.net", "someone-else"), decision.IntrospectionUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := "pt_" + strings.ReplaceAll(tc.name, " ", "_")
			f.as.mu.Lock()
			f.as.answers[tok], f.as.jwt = ans, tc.jwt
			f.as.mu.Unlock()
			wantDecision(t, f.decide("/orders/1", tok), tc.want)
		})
	}
}

func TestCompileIntrospection(t *testing.T) {
	base := "issuers:\n  - issuer: https://as.example.com\n    audiences: [a]\n    jwks_file: k.json\n    algorithms: [RS256]\n    introspection: %s\nroutes: [{name: r, match: {path: /x}, require: {all_of: [s]}}]\n"
	for _, tc := range []struct{ name, block, want string }{
		{"inline secret", "{endpoint: https://as.example.com/i, client_id: c, client_secret: hunter2}", "client_secret_file"},
		{"no secret", "{endpoint: https://as.example.com/i, client_id: c}", "needs the client secret"},
		{"two secrets", "{endpoint: https://as.example.com/i, client_id: c, client_secret_file: s, client_secret_env: E}", "only one of"},
		{"no endpoint", "{client_id: c, client_secret_env: E}", "discovery: true"},
		{"plain http endpoint", "{endpoint: http://as.example.com/i, client_id: c, client_secret_env: E}", "https"},
		{"no client", "{endpoint: https://as.example.com/i, client_secret_env: E}", "client_id"},
		{"unknown auth", "{endpoint: https://as.example.com/i, client_id: c, client_auth: tls_client_auth, client_secret_env: E}", "unknown client_auth"},
		{"key jwt without key", "{endpoint: https://as.example.com/i, client_id: c, client_auth: private_key_jwt}", "private_key_file"},
		{"zero timeout", "{endpoint: https://as.example.com/i, client_id: c, client_secret_env: E, timeout: 0s}", "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decision.Compile([]byte(strings.Replace(base, "%s", tc.block, 1)), "p.yaml", decision.CompileOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the error echoes the secret")
			}
		})
	}
	two := "issuers:\n" +
		"  - {issuer: https://a.example, audiences: [a], jwks_file: k.json, algorithms: [RS256], introspection: {endpoint: https://a.example/i, client_id: c, client_secret_env: E}}\n" +
		"  - {issuer: https://b.example, audiences: [a], jwks_file: k.json, algorithms: [RS256], introspection: {endpoint: https://b.example/i, client_id: c, client_secret_env: E}}\n" +
		"routes: [{name: r, match: {path: /x}, require: {all_of: [s]}}]\n"
	if _, err := decision.Compile([]byte(two), "p.yaml", decision.CompileOptions{}); err == nil || !strings.Contains(err.Error(), "token_prefix") {
		t.Fatalf("two issuers without token_prefix: %v", err)
	}
}
