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

const testIssuer = "https://id.example.com/"

const decidePolicy = `
issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256, ES256, EdDSA]
routes:
  - name: read-order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: create-order
    match: {methods: [POST], path: /orders}
    require: {all_of: [orders:write]}
  - name: reports
    match: {methods: [GET], path: /reports}
    require: {any_of: [reports:read, admin:all]}
  - name: admin
    match: {methods: [GET, POST, DELETE], path: "/admin/{rest...}"}
    require: {all_of: [admin:all]}
  - name: health
    match: {methods: [GET], path: /healthz}
    public: true
default: deny
`

type fixture struct {
	engine *decision.Engine
	rsa    *decisiontest.Signer
	other  *decisiontest.Signer // a key the issuer does not publish
	now    time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	rsaSigner, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := decisiontest.NewRSASigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := staticKeys(t, rsaSigner)
	pol, err := decision.Compile([]byte(decidePolicy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return &fixture{engine: eng, rsa: rsaSigner, other: other, now: now}
}

func staticKeys(t testing.TB, signers ...*decisiontest.Signer) decision.StaticKeys {
	t.Helper()
	var ks decision.StaticKeys
	for _, s := range signers {
		ks = append(ks, decision.Key{Kid: s.Kid, Alg: s.Alg, Public: s.Key.Public()})
	}
	return ks
}

func (f *fixture) token(t testing.TB, s *decisiontest.Signer, scope string, edit func(decisiontest.Claims)) string {
	t.Helper()
	c := decisiontest.StandardClaims(testIssuer, "orders-api", "alice", "web-app", scope, time.Hour, f.now)
	if edit != nil {
		edit(c)
	}
	tok, err := s.Mint(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestDecideReasons(t *testing.T) {
	f := newFixture(t)
	read := f.token(t, f.rsa, "orders:read", nil)
	admin := f.token(t, f.rsa, "admin:all orders:read", nil)
	reports := f.token(t, f.rsa, "reports:read", nil)
	forged := f.token(t, f.other, "orders:read admin:all", nil)
	expired := f.token(t, f.rsa, "orders:read", func(c decisiontest.Claims) {
		c["exp"] = f.now.Add(-time.Hour).Unix()
		c["iat"] = f.now.Add(-2 * time.Hour).Unix()
	})
	future := f.token(t, f.rsa, "orders:read", func(c decisiontest.Claims) { c["nbf"] = f.now.Add(time.Hour).Unix() })
	wrongIss := f.token(t, f.rsa, "orders:read", func(c decisiontest.Claims) { c["iss"] = "https://evil.example/" })
	wrongAud := f.token(t, f.rsa, "orders:read", func(c decisiontest.Claims) { c["aud"] = "billing-api" })

	cases := []struct {
		name          string
		method, path  string
		authz         string
		count         int
		want          decision.Code
		route         string
		used          string
		detailContain string
	}{
		{name: "allow", method: "GET", path: "/orders/42", authz: "Bearer " + read, want: decision.OK, route: "read-order", used: "orders:read"},
		{name: "allow lowercase scheme", method: "GET", path: "/orders/42", authz: "bearer " + read, want: decision.OK, route: "read-order"},
		{name: "allow any_of", method: "GET", path: "/reports", authz: "Bearer " + reports, want: decision.OK, route: "reports", used: "reports:read"},
		{name: "allow rest", method: "DELETE", path: "/admin/users/7", authz: "Bearer " + admin, want: decision.OK, route: "admin", used: "admin:all"},
		{name: "public needs no token", method: "GET", path: "/healthz", want: decision.OK, route: "health"},
		{name: "token missing", method: "GET", path: "/orders/42", want: decision.TokenMissing, route: "read-order"},
		{name: "token in query is not read", method: "GET", path: "/orders/42?access_token=" + read, want: decision.TokenMissing},
		{name: "two authorization headers", method: "GET", path: "/orders/42", authz: "Bearer " + read, count: 2, want: decision.RequestInvalid},
		{name: "merged authorization headers", method: "GET", path: "/orders/42", authz: "Bearer " + read + ",Bearer " + admin, want: decision.RequestInvalid},
		{name: "garbage token", method: "GET", path: "/orders/42", authz: "Bearer abc.def.ghi", want: decision.TokenInvalid},
		{name: "signature by unknown key", method: "GET", path: "/orders/42", authz: "Bearer " + forged, want: decision.TokenInvalid},
		{name: "expired", method: "GET", path: "/orders/42", authz: "Bearer " + expired, want: decision.TokenExpired},
		{name: "not yet valid", method: "GET", path: "/orders/42", authz: "Bearer " + future, want: decision.TokenNotYetValid},
		{name: "issuer unknown", method: "GET", path: "/orders/42", authz: "Bearer " + wrongIss, want: decision.IssuerUnknown},
		{name: "audience mismatch", method: "GET", path: "/orders/42", authz: "Bearer " + wrongAud, want: decision.AudienceMismatch},
		{name: "insufficient scope", method: "POST", path: "/orders", authz: "Bearer " + read, want: decision.InsufficientScope, route: "create-order", detailContain: "orders:write"},
		{name: "insufficient any_of", method: "GET", path: "/reports", authz: "Bearer " + read, want: decision.InsufficientScope, route: "reports"},
		{name: "no route", method: "GET", path: "/invoices/1", authz: "Bearer " + admin, want: decision.NoRoute},
		{name: "method not allowed", method: "PUT", path: "/orders/42", authz: "Bearer " + admin, want: decision.MethodNotAllowed},
		{name: "path climbs above root", method: "GET", path: "/../orders/1", authz: "Bearer " + read, want: decision.PathInvalid},
		{name: "encoded slash", method: "GET", path: "/orders/1%2F..%2Fadmin", authz: "Bearer " + read, want: decision.PathInvalid},
		{name: "dot segments resolve before matching", method: "GET", path: "/orders/../admin/x", authz: "Bearer " + read, want: decision.InsufficientScope, route: "admin"},
		{name: "no method", method: "", path: "/orders/42", authz: "Bearer " + read, want: decision.RequestInvalid},
		{name: "empty path", method: "GET", path: "", authz: "Bearer " + read, want: decision.PathInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			count := tc.count
			if count == 0 && tc.authz != "" {
				count = 1
			}
			d := f.engine.Decide(context.Background(), &decision.Request{Method: tc.method, Path: tc.path, Authorization: tc.authz, AuthorizationCount: count})
			if d.Code != tc.want {
				t.Fatalf("code = %s (%s), want %s", d.Code, d.Message(), tc.want)
			}
			if d.Allow != (tc.want == decision.OK) {
				t.Fatalf("allow = %v for code %s", d.Allow, d.Code)
			}
			if tc.route != "" && (d.Route == nil || d.Route.Name != tc.route) {
				t.Fatalf("route = %v, want %s", d.Route, tc.route)
			}
			if tc.used != "" && strings.Join(d.ScopesUsed(), " ") != tc.used {
				t.Fatalf("scopes used = %v, want %s", d.ScopesUsed(), tc.used)
			}
			if tc.detailContain != "" && !strings.Contains(d.Message(), tc.detailContain) {
				t.Fatalf("message %q does not mention %q", d.Message(), tc.detailContain)
			}
			if strings.Contains(d.Message(), read) || strings.Contains(d.Message(), admin) {
				t.Fatal("a message echoes the raw token")
			}
		})
	}
}

func TestDecideExplainTrace(t *testing.T) {
	f := newFixture(t)
	tr := &decision.Trace{}
	d := f.engine.Decide(context.Background(), &decision.Request{Method: "POST", Path: "/orders", Authorization: "Bearer " + f.token(t, f.rsa, "orders:read", nil), AuthorizationCount: 1, Trace: tr})
	if d.Code != decision.InsufficientScope {
		t.Fatalf("code = %s", d.Code)
	}
	var checks []string
	for _, s := range tr.Steps {
		checks = append(checks, s.Check+"="+s.Result)
	}
	if got := strings.Join(checks, " "); got != "path=pass route=pass token=pass scopes=fail" {
		t.Fatalf("trace = %s", got)
	}
}

func TestSetPolicySwapsAtomically(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, f.rsa, "orders:read", nil)
	req := &decision.Request{Method: "GET", Path: "/orders/1", Authorization: "Bearer " + tok, AuthorizationCount: 1}
	if d := f.engine.Decide(context.Background(), req); !d.Allow {
		t.Fatalf("before swap: %s", d.Code)
	}
	stricter := strings.Replace(decidePolicy, "all_of: [orders:read]", "all_of: [orders:read, orders:audit]", 1)
	pol, err := decision.Compile([]byte(stricter), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.engine.SetPolicy(pol)
	if d := f.engine.Decide(context.Background(), req); d.Code != decision.InsufficientScope {
		t.Fatalf("after swap: %s, want insufficient_scope (the cached token must be re-evaluated against the new policy)", d.Code)
	}
}

func TestCompileReportsEveryProblem(t *testing.T) {
	bad := `
issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256, HS256]
routes:
  - name: a
    match: {methods: [get], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: a
    match: {methods: [GET], path: "/x/{rest...}/y"}
  - name: public-with-scopes
    match: {path: /p}
    public: true
    require: {all_of: [x]}
default: allow
`
	_, err := decision.Compile([]byte(bad), "bad.yaml", decision.CompileOptions{})
	var le *decision.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *LoadError", err)
	}
	msg := err.Error()
	for _, want := range []string{"HS256", `"get"`, "already used", "last segment", "public route", `"allow" is not accepted`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	for _, p := range le.Problems {
		if p.Line == 0 {
			t.Errorf("problem without a line: %s", p)
		}
	}
}

func BenchmarkDecideCached(b *testing.B) {
	f := newFixture(b)
	req := &decision.Request{Method: "GET", Path: "/orders/42", Authorization: "Bearer " + f.token(b, f.rsa, "orders:read", nil), AuthorizationCount: 1}
	ctx := context.Background()
	if d := f.engine.Decide(ctx, req); !d.Allow {
		b.Fatalf("setup: %s", d.Code)
	}
	waitCached(b, f.engine, req)
	b.ReportAllocs()
	for b.Loop() {
		d := f.engine.Decide(ctx, req)
		if !d.Allow {
			b.Fatal(d.Code)
		}
	}
}

func BenchmarkDecideColdRS256(b *testing.B) {
	f := newFixture(b)
	const n = 512
	toks := make([]string, n)
	for i := range toks {
		toks[i] = "Bearer " + f.token(b, f.rsa, "orders:read", nil) // distinct jti: distinct tokens
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%n == 0 {
			f.engine.PurgeTokenCache()
		}
		d := f.engine.Decide(ctx, &decision.Request{Method: "GET", Path: "/orders/42", Authorization: toks[i%n], AuthorizationCount: 1})
		if !d.Allow {
			b.Fatal(d.Code)
		}
		i++
	}
}

// waitCached decides until the verified-token cache serves the token (the
// cache admits entries asynchronously).
func waitCached(b *testing.B, e *decision.Engine, req *decision.Request) {
	for i := 0; i < 100; i++ {
		e.WaitTokenCache()
		if e.Decide(context.Background(), req).Allow {
			return
		}
	}
}

// TestDecideMethodMustBeAToken: a route open to every method must not
// take a malformed method for one (two :method headers a proxy merged
// with a comma, say).
func TestDecideMethodMustBeAToken(t *testing.T) {
	pol, err := decision.Compile([]byte("routes:\n  - name: health\n    match: {path: /healthz}\n    public: true\ndefault: deny\n"), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	for method, want := range map[string]decision.Code{
		"GET": decision.OK, "get": decision.OK, "PROPFIND": decision.OK, "M-SEARCH": decision.OK,
		",": decision.RequestInvalid, "GET,GET": decision.RequestInvalid, "GET ": decision.RequestInvalid,
		"G\x00T": decision.RequestInvalid, "GÉT": decision.RequestInvalid, strings.Repeat("A", 65): decision.RequestInvalid,
		"": decision.RequestInvalid,
	} {
		if d := eng.Decide(context.Background(), &decision.Request{Method: method, Path: "/healthz"}); d.Code != want {
			t.Errorf("method %q: %s (%s), want %s", method, d.Code, d.Detail, want)
		}
	}
}
