package decision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// A stricter rule rolled out in shadow mode: /orders/{id} in shadow requires
// orders:audit, while the enforced /orders/{rest...} requires orders:read.
const shadowPolicy = `
issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
routes:
  - name: orders-any
    match: {methods: [GET], path: "/orders/{rest...}"}
    require: {all_of: [orders:read]}
  - name: order-strict
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read, orders:audit]}
    mode: shadow
`

func TestShadowRouteNeverAnswers(t *testing.T) {
	f := newFixture(t)
	pol, err := decision.Compile([]byte(shadowPolicy), "policy.yaml", decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.engine.SetPolicy(pol)
	cases := []struct {
		name, path, scope string
		wantAllow         bool
		wantRoute         string
		shadowRoute       string
		shadowCode        decision.Code
	}{
		{name: "shadow would deny", path: "/orders/1", scope: "orders:read", wantAllow: true, wantRoute: "orders-any", shadowRoute: "order-strict", shadowCode: decision.InsufficientScope},
		{name: "shadow would allow", path: "/orders/1", scope: "orders:read orders:audit", wantAllow: true, wantRoute: "orders-any", shadowRoute: "order-strict", shadowCode: decision.OK},
		{name: "shadow route does not match", path: "/orders/1/lines", scope: "orders:read", wantAllow: true, wantRoute: "orders-any"},
		{name: "enforced deny stays a deny", path: "/orders/1", scope: "orders:audit", wantAllow: false, wantRoute: "orders-any", shadowRoute: "order-strict", shadowCode: decision.InsufficientScope},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &decision.Trace{}
			d := f.engine.Decide(context.Background(), &decision.Request{Method: "GET", Path: tc.path, Authorization: "Bearer " + f.token(t, f.rsa, tc.scope, nil), AuthorizationCount: 1, Trace: tr})
			if d.Allow != tc.wantAllow || d.Route == nil || d.Route.Name != tc.wantRoute {
				t.Fatalf("decision = %v %s route %v, want allow=%v route %s", d.Allow, d.Code, d.Route, tc.wantAllow, tc.wantRoute)
			}
			if tc.shadowRoute == "" {
				if d.Shadow.Route != nil {
					t.Fatalf("shadow outcome for route %s, want none", d.Shadow.Route.Name)
				}
				return
			}
			if d.Shadow.Route == nil || d.Shadow.Route.Name != tc.shadowRoute || d.Shadow.Code != tc.shadowCode || d.Shadow.Allow != (tc.shadowCode == decision.OK) {
				t.Fatalf("shadow = %+v, want route %s code %s", d.Shadow, tc.shadowRoute, tc.shadowCode)
			}
			last := tr.Steps[len(tr.Steps)-1]
			if last.Check != "shadow" || !strings.Contains(last.Detail, tc.shadowRoute) {
				t.Fatalf("last trace step = %+v, want the shadow outcome", last)
			}
		})
	}
}

func TestUnknownModeIsALoadError(t *testing.T) {
	bad := strings.Replace(shadowPolicy, "mode: shadow", "mode: shadw", 1)
	_, err := decision.Compile([]byte(bad), "policy.yaml", decision.CompileOptions{})
	if err == nil || !strings.Contains(err.Error(), `unknown mode "shadw"`) {
		t.Fatalf("err = %v, want an unknown-mode error", err)
	}
}
