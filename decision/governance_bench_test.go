package decision_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// allocsOfDecide measures the allocations of one cached decision.
func allocsOfDecide(t *testing.T, e *decision.Engine, req *decision.Request) (float64, decision.Decision) {
	t.Helper()
	ctx := context.Background()
	d := e.Decide(ctx, req)
	for range 100 {
		e.WaitTokenCache()
		d = e.Decide(ctx, req)
	}
	return testing.AllocsPerRun(200, func() { e.Decide(ctx, req) }), d
}

// Drift detection allocates nothing when the token does not drift, and
// nothing either when it keeps drifting the same way (the report is
// shared).
func TestDriftAllocs(t *testing.T) {
	plain := newGovFixture(t, decidePolicy, "orders-api", decision.Options{})
	req := func(f *govFixture, client, scope, method, path string) *decision.Request {
		return &decision.Request{Method: method, Path: path, Authorization: "Bearer " + f.token(t, client, scope, nil), AuthorizationCount: 1}
	}
	base, d := allocsOfDecide(t, plain.engine, req(plain, "web-app", "orders:read", "GET", "/orders/1"))
	if !d.Allow {
		t.Fatalf("baseline: %s", d.Code)
	}
	gov := newGovFixture(t, readGovFile(t, "policy.yaml"), "orders-api", decision.Options{})
	cases := map[string]struct {
		client, scope, method, path string
		drift                       bool
	}{
		"no drift":             {client: "web-app", scope: "orders:read", method: "GET", path: "/orders/1"},
		"monitored drift":      {client: "mobile-app", scope: "orders:read orders:write", method: "GET", path: "/orders/1", drift: true},
		"monitored straddle":   {client: "mobile-app", scope: "orders:read reports:read", method: "GET", path: "/orders/1", drift: true},
		"unregistered, denied": {client: "nobody", scope: "orders:read", method: "GET", path: "/orders/1", drift: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			n, d := allocsOfDecide(t, gov.engine, req(gov, tc.client, tc.scope, tc.method, tc.path))
			if extra, _ := d.Drift(); (extra != nil) != tc.drift {
				t.Fatalf("drift = %v (code %s)", extra, d.Code)
			}
			if n > base {
				t.Fatalf("a cached decision allocates %v times, %v without governance", n, base)
			}
		})
	}
}

// driftBenchPolicy is a policy with a catalog of 40 scopes in 8 segments,
// and n registered clients with three grants each.
func driftBenchPolicy(n int) string {
	var b strings.Builder
	b.WriteString(`issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: keys.json
    algorithms: [RS256]
scopes:
`)
	for s := range 8 {
		for k := range 5 {
			fmt.Fprintf(&b, "  - {name: seg%d:s%d, description: d, owner: o, segment: seg%d}\n", s, k, s)
		}
	}
	b.WriteString("  - {name: orders:read, description: d, owner: o, segment: seg0}\n")
	b.WriteString("  - {name: orders:write, description: d, owner: o, segment: seg0, implies: [orders:read]}\n")
	b.WriteString("segments:\n")
	for s := range 8 {
		fmt.Fprintf(&b, "  - {name: seg%d, owner: o}\n", s)
	}
	b.WriteString(`routes:
  - name: read-order
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
`)
	if n > 0 {
		b.WriteString("drift: {default_mode: enforce}\nclients:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - client_id: client-%d\n    grants:\n", i)
			fmt.Fprintf(&b, "      - {scope: orders:write, approved_by: a, justification: j, expires_at: 2030-01-01}\n")
			fmt.Fprintf(&b, "      - {scope: seg0:s%d, approved_by: a, justification: j}\n", i%5)
			fmt.Fprintf(&b, "      - {segment: seg%d, approved_by: a, justification: j}\n", 1+i%7)
		}
	}
	return b.String()
}

// BenchmarkDecideDrift compares the cached decision of a policy with 10,000
// registered clients (drift checked, none found) with the same policy
// without clients. The target is at most 1.2x.
func BenchmarkDecideDrift(b *testing.B) {
	for _, n := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			f := newGovFixture(b, driftBenchPolicy(n), "orders-api", decision.Options{})
			tok := f.token(b, "client-5000", "orders:write seg0:s0", nil)
			req := &decision.Request{Method: "GET", Path: "/orders/42", Authorization: "Bearer " + tok, AuthorizationCount: 1}
			ctx := context.Background()
			waitCached(b, f.engine, req)
			if d := f.engine.Decide(ctx, req); !d.Allow {
				b.Fatalf("setup: %s (%s)", d.Code, d.Message())
			} else if extra, _ := d.Drift(); extra != nil {
				b.Fatalf("setup drifts: %v", extra)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := f.engine.Decide(ctx, req); !d.Allow {
					b.Fatal(d.Code)
				}
			}
		})
	}
}

// BenchmarkCheckDrift measures the drift check alone (what clients=10000
// adds to BenchmarkDecideDrift/clients=0), which is steadier than the
// difference of two whole-decision benchmarks on a busy machine.
func BenchmarkCheckDrift(b *testing.B) {
	f := newGovFixture(b, driftBenchPolicy(10_000), "orders-api", decision.Options{})
	req := &decision.Request{Method: "GET", Path: "/orders/42", Authorization: "Bearer " + f.token(b, "client-5000", "orders:write seg0:s0", nil), AuthorizationCount: 1}
	waitCached(b, f.engine, req)
	d := f.engine.Decide(context.Background(), req)
	if !d.Allow {
		b.Fatalf("setup: %s", d.Code)
	}
	b.ReportAllocs()
	for b.Loop() {
		if decision.CheckDrift(f.engine, req, &d) != decision.OK {
			b.Fatal("drift")
		}
	}
}
