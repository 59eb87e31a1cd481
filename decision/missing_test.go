package decision_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

const missingPolicy = `
issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
scopes:
  - {name: orders:read, description: "See your orders", owner: team-orders}
  - {name: orders:write, description: "Change your orders", owner: team-orders, implies: [orders:read]}
  - {name: orders:legacy, description: "Old orders access", owner: team-orders, status: retired, replacement: orders:read}
  - {name: billing:read, description: "See your invoices", owner: team-billing}
  - {name: a, description: "a", owner: team}
  - {name: b, description: "b", owner: team}
  - {name: c, description: "c", owner: team}
  - {name: x, description: "x", owner: team}
  - {name: "y", description: "y", owner: team}
routes:
  - name: three
    match: {methods: [GET], path: /three}
    require: {all_of: [a, b, c]}
  - name: alts
    match: {methods: [GET], path: /alts}
    require: {any_of: [x, "y"]}
  - name: both
    match: {methods: [GET], path: /both}
    require: {all_of: [a, b], any_of: [x, "y"]}
  - name: one-alt
    match: {methods: [GET], path: /one-alt}
    require: {any_of: [x]}
  - name: invoice-orders
    match: {methods: [GET], path: /invoice-orders}
    require: {all_of: [orders:read, billing:read]}
  - name: list-orders
    match: {methods: [GET], path: /orders}
    require: {any_of: [orders:read, orders:legacy]}
`

// TestInsufficientScopeNamesWhatIsMissing: an insufficient_scope deny names
// the scopes the token lacks (all_of), or the alternatives when it carries
// none of any_of, never the scopes it has; the detail, MissingScopes and
// the challenge's scope attribute agree.
func TestInsufficientScopeNamesWhatIsMissing(t *testing.T) {
	f := newGovFixture(t, missingPolicy, "orders-api", decision.Options{})
	cases := map[string]struct {
		path, scope string
		want        decision.Code
		missing     []string
		detail      string
	}{
		"all_of, one missing": {path: "/three", scope: "a c", want: decision.InsufficientScope, missing: []string{"b"},
			detail: "the token lacks scope b, which route three requires"},
		"all_of, two missing": {path: "/three", scope: "b", want: decision.InsufficientScope, missing: []string{"a", "c"},
			detail: "the token lacks scopes a and c, which route three requires"},
		"all_of, none carried": {path: "/three", scope: "x", want: decision.InsufficientScope, missing: []string{"a", "b", "c"},
			detail: "the token lacks scopes a, b and c, which route three requires"},
		"any_of names the alternatives": {path: "/alts", scope: "a", want: decision.InsufficientScope, missing: []string{"x", "y"},
			detail: "the token lacks one of the scopes x or y, which route alts requires"},
		"any_of of one": {path: "/one-alt", scope: "a", want: decision.InsufficientScope, missing: []string{"x"},
			detail: "the token lacks scope x, which route one-alt requires"},
		"both: all_of short, any_of met": {path: "/both", scope: "a y", want: decision.InsufficientScope, missing: []string{"b"},
			detail: "the token lacks scope b, which route both requires"},
		"both: all_of met, any_of not": {path: "/both", scope: "a b", want: decision.InsufficientScope, missing: []string{"x", "y"},
			detail: "the token lacks one of the scopes x or y, which route both requires"},
		"both: neither": {path: "/both", scope: "b", want: decision.InsufficientScope, missing: []string{"a", "x", "y"},
			detail: "the token lacks scope a and one of x or y, which route both requires"},
		"an implied scope counts as carried": {path: "/invoice-orders", scope: "orders:write", want: decision.InsufficientScope, missing: []string{"billing:read"},
			detail: "the token lacks scope billing:read, which route invoice-orders requires"},
		"a retired alternative is not named": {path: "/orders", scope: "billing:read", want: decision.InsufficientScope, missing: []string{"orders:read"},
			detail: "the token lacks scope orders:read, which route list-orders requires"},
		"scope_retired names the replacement route scope": {path: "/orders", scope: "orders:legacy", want: decision.ScopeRetired, missing: []string{"orders:read"},
			detail: "; the token lacks scope orders:read, which route list-orders requires"},
		"an allow names nothing": {path: "/both", scope: "a b x", want: decision.OK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := f.decide("GET", tc.path, f.token(t, "", tc.scope, nil))
			if d.Code != tc.want {
				t.Fatalf("code = %s (%s); want %s", d.Code, d.Message(), tc.want)
			}
			if got := d.MissingScopes(); !slices.Equal(got, tc.missing) {
				t.Errorf("MissingScopes = %q; want %q", got, tc.missing)
			}
			if got, want := d.ChallengeScope(), strings.Join(tc.missing, " "); got != want {
				t.Errorf("ChallengeScope = %q; want %q", got, want)
			}
			if tc.want == decision.InsufficientScope && d.Message() != tc.detail {
				t.Errorf("detail = %q\nwant     %q", d.Message(), tc.detail)
			}
			if tc.want == decision.ScopeRetired && !strings.HasSuffix(d.Message(), tc.detail) {
				t.Errorf("detail = %q; want it to end %q", d.Message(), tc.detail)
			}
		})
	}
}

// TestInsufficientScopeSMART: a SMART route names the SMART scopes that
// would grant the interaction, one per launch context, not the route's
// requirement (which the token met).
func TestInsufficientScopeSMART(t *testing.T) {
	f := newGovFixture(t, readGovFile(t, "smart.yaml"), "fhir-api", decision.Options{})
	patient := map[string]any{"patient": "123"}
	cases := map[string]struct {
		method, path, scope string
		missing             []string
	}{
		"search without s":     {method: "GET", path: "/fhir/Observation", scope: "patient/Observation.r", missing: []string{"patient/Observation.s", "user/Observation.s", "system/Observation.s"}},
		"create without c":     {method: "POST", path: "/fhir/Condition", scope: "user/Condition.rs", missing: []string{"patient/Condition.c", "user/Condition.c", "system/Condition.c"}},
		"system level history": {method: "GET", path: "/fhir/_history", scope: "user/Observation.rs", missing: []string{"patient/*.s", "user/*.s", "system/*.s"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := f.decide(tc.method, tc.path, f.token(t, "", tc.scope, patient))
			if d.Code != decision.InsufficientScope {
				t.Fatalf("code = %s (%s); want insufficient_scope", d.Code, d.Message())
			}
			if got := d.MissingScopes(); !slices.Equal(got, tc.missing) {
				t.Errorf("MissingScopes = %q; want %q", got, tc.missing)
			}
		})
	}
}

// TestInsufficientScopeDenyAllocatesNothing: a repeated partial-scope deny
// of a cached token is served from the route's memo.
func TestInsufficientScopeDenyAllocatesNothing(t *testing.T) {
	f := newGovFixture(t, missingPolicy, "orders-api", decision.Options{})
	raw := f.token(t, "", "a y", nil)
	req := &decision.Request{Method: "GET", Path: "/both", Authorization: "Bearer " + raw, AuthorizationCount: 1}
	ctx := context.Background()
	for range 3 {
		f.engine.WaitTokenCache()
		f.engine.Decide(ctx, req)
	}
	var d decision.Decision
	n := testing.AllocsPerRun(200, func() {
		d = f.engine.Decide(ctx, req)
		_ = d.ChallengeScope()
	})
	if d.Code != decision.InsufficientScope {
		t.Fatalf("code = %s", d.Code)
	}
	if n != 0 {
		t.Errorf("a cached insufficient_scope deny allocates %v times", n)
	}
}

// BenchmarkDecideInsufficientScope: a cached token denied for a scope it
// lacks, the route naming what is missing from its memo.
func BenchmarkDecideInsufficientScope(b *testing.B) {
	f := newGovFixture(b, missingPolicy, "orders-api", decision.Options{})
	raw := f.token(b, "", "a y", nil)
	req := &decision.Request{Method: "GET", Path: "/both", Authorization: "Bearer " + raw, AuthorizationCount: 1}
	ctx := context.Background()
	for range 3 {
		f.engine.WaitTokenCache()
		f.engine.Decide(ctx, req)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := f.engine.Decide(ctx, req); d.ChallengeScope() != "b" {
			b.Fatal(d.ChallengeScope())
		}
	}
}
