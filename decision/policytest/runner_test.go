package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

func loadRunner(t *testing.T, policy string) *Runner {
	t.Helper()
	r, err := Load(filepath.Join("testdata", policy), Options{Now: func() time.Time { return time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatalf("load %s: %v", policy, err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestRun(t *testing.T) {
	cases := map[string]struct {
		policy          string
		tests           string
		passed, failed  int
		wantOut         []string
		uncoveredRoutes []string
		uncoveredScopes []string
	}{
		"allow and deny as expected": {
			policy: "small.yaml",
			tests: `
tests:
  - name: read
    request: {path: /items/1}
    token: {sub: a, scope: items:read}
    expect: {allow: true, route: read, scopes_used: [items:read], status: 200}
  - name: write implies read
    request: {path: /items/1}
    token: {sub: a, scope: [items:write]}
    expect: {allow: true, scopes_used: [items:read]}
  - name: no token
    request: {path: /items/1}
    token: none
    expect: {reason: token_missing, status: 401}
  - name: public
    request: {path: /ping, method: DELETE}
    expect: {allow: true, route: ping}
`,
			passed: 4, failed: 0,
			wantOut:         []string{"4 passed, 0 failed\n", "2/4 routes", "route not covered: write (POST|PUT /items/{id})", "route not covered: special (GET /items/special)"},
			uncoveredRoutes: []string{"write", "special"},
			uncoveredScopes: []string{"items:admin", "items:old", "items:unused"},
		},
		"a wrong expectation fails with want and got": {
			policy: "small.yaml",
			tests: `
tests:
  - name: admin cannot read?
    request: {path: /items/1}
    token: {sub: a, scope: items:admin}
    expect: {allow: false, reason: insufficient_scope}
  - name: wrong route
    request: {path: /items/special}
    token: {sub: a, scope: items:admin}
    expect: {allow: true, route: read}
  - name: wrong scopes used
    request: {path: /items/1, method: PUT}
    token: {sub: a, scope: items:admin}
    expect: {allow: true, scopes_used: [items:write]}
  - name: wrong message
    request: {path: /items/1}
    token: none
    expect: {allow: false, message_contains: "no such text"}
`,
			passed: 0, failed: 4,
			wantOut: []string{
				"FAIL admin cannot read? (testdata/t_test.yaml:2)",
				"want:    deny insufficient_scope",
				"got:     allow route=read scopes_used=[items:read] status=200",
				"FAIL wrong route", "FAIL wrong scopes used", "FAIL wrong message",
				"0 passed, 4 failed\n",
			},
		},
		"retired scopes are denied scope_retired and covered": {
			policy: "small.yaml",
			tests: `
tests:
  - name: retired
    request: {path: /items/1}
    token: {sub: a, scope: items:old}
    expect: {reason: scope_retired}
`,
			passed: 1, failed: 0,
			uncoveredRoutes: []string{"read", "write", "special", "ping"},
			uncoveredScopes: []string{"items:read", "items:write", "items:admin", "items:unused"},
		},
		"the matrix": {
			policy: "small.yaml",
			tests: `
matrix:
  params: {id: "7"}
`,
			// read: GET; write: POST, PUT; special: GET = 4 requests x 6 tokens.
			passed: 24, failed: 0,
			wantOut:         []string{"24 passed, 0 failed"},
			uncoveredRoutes: []string{"ping"},
			uncoveredScopes: []string{"items:unused"},
		},
		"the matrix cannot reach a shadowed parameter value": {
			policy: "small.yaml",
			tests: `
matrix:
  routes: [read, nope]
  params: {id: special}
`,
			passed: 0, failed: 2,
			wantOut: []string{`route "nope" is not in the policy`, "no path built from GET /items/{id} reaches route read"},
		},
		"matrix without a catalog uses the routes' scopes": {
			policy: "nocatalog.yaml",
			tests: `
matrix: {}
`,
			// one request (no methods: GET) x (none, a:x, a:y, a:z); a single
			// scope never satisfies all_of [a:x] and any_of.
			passed: 4, failed: 0,
			uncoveredRoutes: []string{"a"},
			uncoveredScopes: []string{"a:x", "a:y", "a:z"},
		},
		"tokens: audiences, issuers, lifetimes and headers": {
			policy: "nocatalog.yaml",
			tests: `
now: "2026-01-01T00:00:00Z"
tests:
  - name: all of and any of
    request: {path: /a/b/c}
    token: {scope: "a:x a:z", aud: [other, x]}
    expect: {allow: true, scopes_used: [a:x, a:z]}
  - name: expired
    request: {path: /a/b}
    token: {scope: "a:x a:y", iat_offset: -2h, ttl: 1h}
    expect: {reason: token_expired}
  - name: unknown issuer
    request: {path: /a/b}
    token: {iss: "https://other/", scope: "a:x a:y"}
    expect: {reason: issuer_unknown}
  - name: raw authorization header
    request: {path: /a/b, headers: {Authorization: "Basic Zm9vOmJhcg=="}}
    expect: {reason: token_missing}
  - name: claim removed
    request: {path: /a/b}
    token: {scope: "a:x a:y", claims: {exp: null}}
    expect: {reason: token_invalid}
  - name: bad source ip
    request: {path: /a/b, source_ip: "10.0.0.1:80"}
    expect: {reason: token_missing}
`,
			passed: 5, failed: 1,
			wantOut: []string{"FAIL bad source ip", `request.source_ip "10.0.0.1:80" is not an IP address`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := loadRunner(t, tc.policy)
			f, err := Parse([]byte(strings.TrimPrefix(tc.tests, "\n")), "testdata/t_test.yaml")
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			rep := r.Run(context.Background(), []*File{f})
			var out bytes.Buffer
			rep.WriteText(&out, false)
			if rep.Passed != tc.passed || rep.Failed != tc.failed {
				t.Errorf("passed %d, failed %d; want %d, %d\n%s", rep.Passed, rep.Failed, tc.passed, tc.failed, out.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if last := lines[len(lines)-1]; !summaryLine.MatchString(last) {
				t.Errorf("last line %q is not the summary", last)
			}
			if tc.uncoveredRoutes != nil || tc.uncoveredScopes != nil {
				routes, scopes := rep.Coverage.Uncovered()
				if got := names(routes); !slices.Equal(got, tc.uncoveredRoutes) {
					t.Errorf("uncovered routes %v, want %v", got, tc.uncoveredRoutes)
				}
				if got := names(scopes); !slices.Equal(got, tc.uncoveredScopes) {
					t.Errorf("uncovered scopes %v, want %v", got, tc.uncoveredScopes)
				}
			}
		})
	}
}

func names(items []CoverageItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Name)
	}
	return out
}

func TestParseErrors(t *testing.T) {
	cases := map[string]struct {
		text string
		want []string
	}{
		"empty":                  {"", []string{"t_test.yaml: the test file is empty"}},
		"no cases":               {"now: \"2026-01-01T00:00:00Z\"\n", []string{"no tests: and no matrix:"}},
		"unknown field":          {"tests:\n  - name: a\n    reqest: {path: /}\n    expect: {allow: true}\n", []string{`t_test.yaml:3: unknown field "reqest"`, "allowed: expect, name, now, owners, request, token"}},
		"unknown token":          {"tests:\n  - name: a\n    request: {path: /}\n    token: {scopes: x}\n    expect: {allow: true}\n", []string{`t_test.yaml:4: unknown field "scopes" in token`}},
		"token scalar":           {"tests:\n  - name: a\n    request: {path: /}\n    token: yes\n    expect: {allow: true}\n", []string{"token must be none or a mapping"}},
		"no expectation":         {"tests:\n  - name: a\n    request: {path: /}\n    expect: {}\n", []string{"t_test.yaml:4: tests[0].expect: set allow"}},
		"unknown reason":         {"tests:\n  - name: a\n    request: {path: /}\n    expect: {reason: nope}\n", []string{`unknown reason "nope"`, "insufficient_scope"}},
		"contradiction":          {"tests:\n  - name: a\n    request: {path: /}\n    expect: {allow: true, reason: no_route}\n", []string{"allow: true contradicts reason no_route"}},
		"duplicate names":        {"tests:\n  - name: a\n    request: {path: /}\n    expect: {allow: true}\n  - name: a\n    request: {path: /}\n    expect: {allow: true}\n", []string{`t_test.yaml:5: tests[1]: the name "a" is already used on line 2`}},
		"missing path":           {"tests:\n  - name: a\n    expect: {allow: true}\n", []string{"request.path is required"}},
		"bad now":                {"now: tomorrow\nmatrix: {}\n", []string{`now: invalid time "tomorrow"`}},
		"bad offset":             {"tests:\n  - name: a\n    request: {path: /}\n    token: {iat_offset: soon}\n    expect: {allow: true}\n", []string{`invalid duration "soon"`}},
		"bad header":             {"tests:\n  - name: a\n    request: {path: /, headers: {cookie: x}}\n    expect: {allow: true}\n", []string{`t_test.yaml:3: tests[0].request: header "cookie" is not read by the engine`}},
		"matrix path":            {"matrix: {request: {path: /x}}\n", []string{"matrix.request: method and path are set per generated case"}},
		"matrix scope":           {"matrix: {token: {scope: a}}\n", []string{"matrix.token.scope"}},
		"not yaml":               {"tests: [\n", []string{"t_test.yaml"}},
		"reason typo":            {"tests:\n  - name: a\n    request: {path: /}\n    expect: {reason: token_expird}\n", []string{`t_test.yaml:4: tests[0].expect: unknown reason "token_expird"; did you mean "token_expired"?`}},
		"reason on its own line": {"tests:\n  - name: a\n    request: {path: /}\n    expect:\n      allow: false\n      reason: token_expird\n", []string{`t_test.yaml:6: tests[0].expect: unknown reason`}},
		"case now":               {"tests:\n  - name: a\n    request: {path: /}\n    now: tomorrow\n    expect: {allow: true}\n", []string{`t_test.yaml:4: tests[0].now: invalid time "tomorrow"`}},
		"field typo":             {"tests:\n  - name: a\n    request: {path: /}\n    expect: {allow: true, rout: r}\n", []string{`t_test.yaml:4: unknown field "rout"; did you mean "route"?`}},
		"case field typo":        {"tests:\n  - name: a\n    reqest: {path: /}\n    expect: {allow: true}\n", []string{`did you mean "request"?`}},
		"token typo":             {"tests:\n  - name: a\n    request: {path: /}\n    token: {sbu: alice}\n    expect: {allow: true}\n", []string{`unknown field "sbu" in token; did you mean "sub"?`}},
		// One run reports every problem: the unknown fields, the token's
		// and the reason found after them.
		"every problem": {"tests:\n  - name: a\n    request: {path: /}\n    token: {sbu: alice}\n    expect: {reason: token_expird, rout: r}\n  - name: b\n    request: {path: /, methd: GET}\n    expect: {allow: true}\n",
			[]string{`:4: unknown field "sbu"`, `"token_expird"; did you mean`, `:5: unknown field "rout"`, `:7: unknown field "methd"; did you mean "method"?`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text), "t_test.yaml")
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FileError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load("testdata/none.yaml", Options{})
	var le *decision.LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "cannot read the policy file") {
		t.Errorf("missing policy: %v", err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("routes: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad, Options{}); !errors.As(err, &le) {
		t.Errorf("invalid policy: %v", err)
	}
}

func TestExpectedFor(t *testing.T) {
	r := loadRunner(t, "small.yaml")
	pol := r.Policy()
	route := func(name string) *decision.Route {
		for _, rt := range pol.Routes {
			if rt.Name == name {
				return rt
			}
		}
		t.Fatalf("no route %s", name)
		return nil
	}
	cases := map[string]struct {
		route, scope string
		allow        bool
		reason       decision.Code
	}{
		"exact":                {"read", "items:read", true, decision.OK},
		"implied":              {"read", "items:write", true, decision.OK},
		"transitively implied": {"read", "items:admin", true, decision.OK},
		"any_of":               {"write", "items:admin", true, decision.OK},
		"not implied upwards":  {"write", "items:read", false, decision.InsufficientScope},
		"retired would":        {"read", "items:old", false, decision.ScopeRetired},
		"retired would not":    {"write", "items:old", false, decision.InsufficientScope},
		"no scope":             {"read", "", false, decision.InsufficientScope},
		"unknown scope":        {"read", "other", false, decision.InsufficientScope},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			allow, reason := ExpectedFor(pol, route(tc.route), tc.scope)
			if allow != tc.allow || reason != tc.reason {
				t.Errorf("ExpectedFor(%s, %q) = %v, %v; want %v, %v", tc.route, tc.scope, allow, reason, tc.allow, tc.reason)
			}
		})
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("orders.yaml", "")
	write("billing.yaml", "")
	write("orders_test.yaml", "")
	write("orders_refunds_test.yaml", "")
	write("billing_test.yaml", "")
	write("shared_test.yaml", "")
	write("pinned_test.yaml", "policy: billing.yaml\n")
	write("notes.yaml", "")
	cases := map[string][]string{
		"orders.yaml":  {"orders_refunds_test.yaml", "orders_test.yaml", "shared_test.yaml"},
		"billing.yaml": {"billing_test.yaml", "pinned_test.yaml", "shared_test.yaml"},
	}
	for pol, want := range cases {
		t.Run(pol, func(t *testing.T) {
			got, err := Discover(filepath.Join(dir, pol))
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i] = filepath.Base(got[i])
			}
			if !slices.Equal(got, want) {
				t.Errorf("Discover = %v, want %v", got, want)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	r := loadRunner(t, "small.yaml")
	f, err := Parse([]byte("tests:\n  - name: a\n    request: {path: /ping}\n    expect: {allow: true}\n"), "x_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep := r.Run(context.Background(), []*File{f})
	var out bytes.Buffer
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Passed, Failed int
		Results        []Result
		Coverage       Coverage
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if got.Passed != 1 || got.Failed != 0 || len(got.Results) != 1 || !got.Results[0].Pass || len(got.Coverage.Routes) != 4 {
		t.Errorf("JSON report = %+v", got)
	}
}

// summaryLine is the line tooling parses.
var summaryLine = regexp.MustCompile(`^\d+ passed, \d+ failed$`)

// TestSMART runs SMART App Launch cases (scopes written as in the
// specification, v2 and v1 forms) through the runner.
func TestSMART(t *testing.T) {
	r := loadRunner(t, "smart.yaml")
	f, err := ReadFile("testdata/smart_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep := r.Run(context.Background(), []*File{f})
	var out bytes.Buffer
	rep.WriteText(&out, true)
	if rep.Failed != 0 || rep.Passed != 6 || !rep.Coverage.Full() {
		t.Errorf("SMART tests:\n%s", out.String())
	}
}

// A route in shadow mode is covered by a case it would allow, and so are
// the scopes it requires: full coverage is reachable for the documented
// shadow rollout.
func TestCoverageCountsShadowRoutes(t *testing.T) {
	cases := map[string]struct {
		tests           string
		uncoveredRoutes []string
		uncoveredScopes []string
	}{
		"a case the shadow route would allow covers it": {tests: `
tests:
  - name: strict would allow
    request: {path: /orders/1}
    token: {sub: a, scope: "orders:read orders:audit"}
    expect: {allow: true, route: orders-any}
`},
		"a case it would deny does not": {tests: `
tests:
  - name: strict would deny
    request: {path: /orders/1}
    token: {sub: a, scope: orders:read}
    expect: {allow: true, route: orders-any}
`, uncoveredRoutes: []string{"order-strict"}, uncoveredScopes: []string{"orders:audit"}},
		"a request the shadow route does not match does not": {tests: `
tests:
  - name: deeper path
    request: {path: /orders/1/lines}
    token: {sub: a, scope: "orders:read orders:audit"}
    expect: {allow: true, route: orders-any}
`, uncoveredRoutes: []string{"order-strict"}, uncoveredScopes: []string{"orders:audit"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := loadRunner(t, "shadow.yaml")
			f, err := Parse([]byte(strings.TrimPrefix(tc.tests, "\n")), "testdata/t_test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			rep := r.Run(context.Background(), []*File{f})
			if rep.Failed != 0 {
				var out bytes.Buffer
				rep.WriteText(&out, false)
				t.Fatalf("cases failed:\n%s", out.String())
			}
			routes, scopes := rep.Coverage.Uncovered()
			if got := names(routes); !slices.Equal(got, tc.uncoveredRoutes) {
				t.Errorf("uncovered routes %v, want %v", got, tc.uncoveredRoutes)
			}
			if got := names(scopes); !slices.Equal(got, tc.uncoveredScopes) {
				t.Errorf("uncovered scopes %v, want %v", got, tc.uncoveredScopes)
			}
			if rep.Coverage.Full() != (tc.uncoveredRoutes == nil && tc.uncoveredScopes == nil) {
				t.Errorf("Full() = %v", rep.Coverage.Full())
			}
		})
	}
}

// An ownership case is decided from its in-memory data without the
// store's deadline: a caller whose context has already expired (as a
// lookup timeout hit on a loaded machine would look) still gets the
// answer the data gives, so a case's result never depends on scheduling.
func TestOwnersAnswerWithoutDeadline(t *testing.T) {
	src := []byte(`issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [ES256]
lookups:
  orders: {timeout: 1ms}
routes:
  - name: update
    match: {methods: [PUT], path: "/orders/{id}"}
    require: {all_of: [orders:write]}
    owner: {lookup: orders, key: "{id}", claim: sub}
`)
	r, err := New(src, "p.yaml", Options{Now: func() time.Time { return time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for owner, want := range map[string]decision.Code{"alice": decision.OK, "bob": decision.NotOwner} {
		c := &Case{
			Request: RequestSpec{Method: "PUT", Path: "/orders/42"},
			Token:   &TokenSpec{Sub: "alice", Scope: StringList{"orders:write"}},
			Owners:  OwnersSpec{"orders": {"42": {owner}}},
		}
		d, err := r.Decide(ctx, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Code != want {
			t.Errorf("order 42 owned by %s: %s (%s), want %s", owner, d.Code, d.Detail, want)
		}
	}
}
