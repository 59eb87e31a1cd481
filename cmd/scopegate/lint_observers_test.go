package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The documented shadow rollout lints clean, with the shadow route named
// as an observer of the route that answers.
func TestLintShadowRolloutCLI(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	text := `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [RS256]
scopes:
  - {name: orders:read, description: r, owner: t}
  - {name: orders:audit, description: a, owner: t}
routes:
  - name: orders-any
    match: {methods: [GET], path: "/orders/{rest...}"}
    require: {all_of: [orders:read]}
  - name: order-strict
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read, orders:audit]}
    mode: shadow
`
	if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", "lint", "--policy", pol)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, `shadow route "order-strict" (line 13) observes requests answered by orders-any`) {
		t.Errorf("no observer line:\n%s", out)
	}
	if strings.Contains(out+errs, "can never match") {
		t.Errorf("the shadow route is reported unreachable:\n%s", out)
	}
}
