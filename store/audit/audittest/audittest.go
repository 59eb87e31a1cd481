// Package audittest builds real decisions for the tests of the audit
// pipeline and its consumers: a compiled policy with a scope catalog,
// registered clients and drift in monitor mode, an engine on a fixed clock,
// and a signer for its issuer.
package audittest

import (
	"context"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// Issuer and Audience of the fixture policy's tokens.
const (
	Issuer   = "https://issuer.test/"
	Audience = "orders-api"
)

// Now is the fixture engine's clock.
var Now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// Policy is the fixture policy. web-app is granted orders:write (which
// implies orders:read) and billing:read; mobile-app is granted
// orders:read, the deprecated orders:v1 and billing:read. Drift is
// monitored, so a token carrying a scope beyond its client's grants is
// allowed and its decision carries a drift report.
const Policy = `version: audit-test
issuers:
  - issuer: https://issuer.test/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [ES256]
scopes:
  - {name: orders:read, description: "See orders", owner: team-orders, risk: low}
  - {name: orders:write, description: "Change orders", owner: team-orders, risk: medium, implies: [orders:read]}
  - {name: orders:v1, description: "Old orders scope", owner: team-orders, status: deprecated, replacement: orders:read, sunset: 2099-01-01, implies: [orders:read]}
  - {name: billing:read, description: "See invoices", owner: team-billing, risk: medium}
  - {name: admin:all, description: "Everything", owner: team-ops, risk: high}
routes:
  - name: read-order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: create-order
    match: {methods: [POST], path: /orders}
    require: {all_of: [orders:write]}
  - name: invoice
    match: {methods: [GET], path: "/invoices/{id}"}
    require: {all_of: [billing:read]}
  - name: health
    match: {methods: [GET], path: /healthz}
    public: true
clients:
  - client_id: web-app
    grants:
      - {scope: orders:write, approved_by: alice, approved_at: 2026-01-10, justification: checkout}
      - {scope: billing:read, approved_by: bob, approved_at: 2026-01-10, justification: invoices}
  - client_id: mobile-app
    grants:
      - {scope: orders:read, approved_by: alice, approved_at: 2026-01-10, justification: tracking}
      - {scope: orders:v1, approved_by: alice, approved_at: 2025-01-10, justification: old versions}
      - {scope: billing:read, approved_by: bob, approved_at: 2026-01-10, justification: invoices, expires_at: 2026-06-01}
drift:
  default_mode: monitor
  unregistered_clients: monitor
default: deny
`

// Fixture is a compiled Policy, an engine deciding with it at Now, and
// the issuer's signer.
type Fixture struct {
	Engine *decision.Engine
	Signer *decisiontest.Signer
}

// New compiles Policy and starts an engine; the engine is closed at the
// end of the test.
func New(t testing.TB) *Fixture {
	t.Helper()
	s, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := decision.StaticKeys{{Kid: s.Kid, Alg: s.Alg, Public: s.Public()}}
	pol, err := decision.Compile([]byte(Policy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatalf("compile the fixture policy: %v", err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: decision.StaticKeyResolver(keys), Clock: func() time.Time { return Now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return &Fixture{Engine: eng, Signer: s}
}

// Token mints a token of client carrying scope (space separated) for
// subject sub, issued at Now and valid for an hour.
func (f *Fixture) Token(t testing.TB, sub, client, scope string) string {
	t.Helper()
	tok, err := f.Signer.Mint(decisiontest.StandardClaims(Issuer, Audience, sub, client, scope, time.Hour, Now), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Decide decides method path with token ("" sends none) and returns the
// request and the decision.
func (f *Fixture) Decide(method, path, token string) (decision.Request, decision.Decision) {
	r := decision.Request{Method: method, Path: path, RequestID: "req-1", Host: "shop.test"}
	if token != "" {
		r.Authorization, r.AuthorizationCount = "Bearer "+token, 1
	}
	d := f.Engine.Decide(context.Background(), &r)
	return r, d
}
