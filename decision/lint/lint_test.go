package lint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// issuer is the issuers section the inline policies share.
const issuer = `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_url: https://id.test/jwks.json
    algorithms: [ES256]
`

var lintNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func render(ps []decision.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestLint(t *testing.T) {
	cases := map[string]struct {
		policy   string
		opts     Options
		errors   []string // substrings, each in some error
		warnings []string // substrings, each in some warning
		absent   []string // substrings in no problem
		nErrors  int      // exact count when >= 0
	}{
		"a clean policy": {
			policy:  "@clean.yaml",
			nErrors: 0,
			absent:  []string{"warning"},
		},
		"loader errors keep their lines": {
			policy: issuer + "routes:\n  - name: a\n    match: {pathh: /a}\n",
			errors: []string{`p.yaml:8: routes[0].match.pathh: unknown field "pathh"`},
		},
		"naming convention, default: warnings": {
			policy:   issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {all_of: [Orders.Read, openid, orders:read:own]}\n",
			warnings: []string{`p.yaml:9: warning: routes[0].require.all_of[0]: scope "Orders.Read" does not follow the naming convention`},
			absent:   []string{`"openid"`, `"orders:read:own" does not`},
			nErrors:  0,
		},
		"naming convention, explicit: errors": {
			policy:  issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {all_of: [read_orders, orders:read]}\n",
			opts:    Options{NamePattern: `^[a-z]+:[a-z]+$`},
			errors:  []string{`scope "read_orders" does not follow the naming convention ^[a-z]+:[a-z]+$`},
			absent:  []string{`"orders:read" does not`},
			nErrors: 1,
		},
		"SMART scopes follow the SMART grammar": {
			policy: issuer + `routes:
  - name: a
    match: {path: /a}
    require: {any_of: [patient/Observation.rs, "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", patient/Observation.dus, user/Observation.sr, system/Patient.read, launch/patient, system/observation.rs]}
`,
			errors: []string{
				`any_of[2]: SMART scope "patient/Observation.dus": permissions must be`,
				`any_of[3]: SMART scope "user/Observation.sr"`,
				`any_of[6]: SMART scope "system/observation.rs": the resource type must be`,
			},
			absent:  []string{`"launch/patient"`, `system/Patient.read`, `laboratory`},
			nErrors: 3,
		},
		"wildcards in prod are errors": {
			policy:  "environment: prod\n" + issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {any_of: [\"patient/*.rs\", \"orders:*\"]}\n",
			errors:  []string{`wildcard scope "patient/*.rs" in a policy for environment prod`, `wildcard scope "orders:*"`},
			nErrors: 2,
		},
		"wildcards allowed explicitly": {
			policy:  "environment: prod\n" + issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {any_of: [\"patient/*.rs\", \"orders:*\"]}\n",
			opts:    Options{AllowedWildcards: []string{"patient/*.rs"}},
			errors:  []string{`wildcard scope "orders:*"`},
			absent:  []string{`"patient/*.rs" in a policy`},
			nErrors: 1,
		},
		"wildcards allowed wholesale": {
			policy:  "environment: prod\n" + issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {any_of: [\"patient/*.rs\", \"orders:*\"]}\n",
			opts:    Options{AllowWildcards: true},
			nErrors: 0,
		},
		"wildcards outside prod are warnings": {
			policy:   "environment: dev\n" + issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {all_of: [\"orders:*\"]}\n",
			warnings: []string{`wildcard scope "orders:*": it grants whatever it will match tomorrow`},
			nErrors:  0,
		},
		"owners": {
			policy: issuer + `routes:
  - name: a
    match: {path: /a}
    require: {all_of: [a:read]}
scopes:
  - {name: a:read, description: d, segment: s}
segments:
  - {name: s}
clients:
  - client_id: c
    grants: [{scope: a:read, approved_by: x, justification: y}]
`,
			errors:   []string{`p.yaml:11: scopes[0].owner: scope "a:read" has no owner`, `p.yaml:13: segments[0].owner: segment "s" has no owner`},
			warnings: []string{`p.yaml:15: warning: clients[0].owner: client "c" has no owner`},
			nErrors:  2,
		},
		"unused catalog scopes": {
			policy: issuer + `routes:
  - name: a
    match: {path: /a}
    require: {all_of: [a:read]}
scopes:
  - {name: a:read, description: d, owner: o}
  - {name: a:write, description: d, owner: o, implies: [a:read]}
  - {name: a:export, description: d, owner: o}
  - {name: a:old, description: d, owner: o, status: retired}
`,
			warnings: []string{`p.yaml:13: warning: scopes[2]: catalog scope "a:export" opens no route`},
			absent:   []string{`"a:write" opens`, `"a:old" opens`, `"a:read" opens`},
			nErrors:  0,
		},
		"no catalog: undeclared scopes and misspellings": {
			policy:   issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {all_of: [orders:read]}\n  - name: b\n    match: {path: /b}\n    require: {all_of: [order:read]}\n",
			warnings: []string{"the policy has no scope catalog", `scope "order:read" looks like a misspelling of "orders:read" (line 9)`},
			nErrors:  0,
		},
		"no catalog, with clients: scopes nobody holds": {
			policy: issuer + `routes:
  - name: a
    match: {path: /a}
    require: {all_of: [a:read, a:other]}
clients:
  - client_id: c
    owner: o
    grants: [{scope: a:read, approved_by: x, justification: y}]
`,
			warnings: []string{`route "a" requires "a:other", which no client is granted`},
			absent:   []string{`requires "a:read", which`},
		},
		"segments overlapping through implies": {
			policy: issuer + `routes:
  - name: a
    match: {path: /a}
    require: {any_of: [a:read, b:read]}
scopes:
  - {name: a:read, description: d, owner: o, segment: sa, implies: [b:read]}
  - {name: b:read, description: d, owner: o, segment: sb}
segments:
  - {name: sa, owner: o}
  - {name: sb, owner: o}
`,
			warnings: []string{"segments sa and sb overlap: a:read (segment sa) implies b:read (segment sb)"},
		},
		"shadowed routes": {
			policy: issuer + `routes:
  - name: any
    match: {methods: [GET], path: "/a/{rest...}"}
  - name: one
    match: {methods: [GET], path: "/a/{x}"}
  - name: more
    match: {methods: [GET], path: "/a/{x}/{rest...}"}
  - name: partly
    match: {methods: [GET, POST], path: "/b/{rest...}"}
  - name: b-one
    match: {methods: [GET], path: "/b/{x}"}
  - name: b-more
    match: {methods: [GET], path: "/b/{x}/{rest...}"}
  - name: fine
    match: {methods: [GET], path: "/c/{x}"}
  - name: fine-literal
    match: {methods: [GET], path: /c/special}
  - name: catch-all
    match: {path: "/{rest...}"}
    public: true
`,
			errors: []string{
				`p.yaml:7: routes[0]: route "any" can never match`,
				`p.yaml:13: routes[3].match.methods: route "partly" never decides GET`,
			},
			absent:  []string{`"fine" can never`, `"fine-literal"`, `"catch-all"`, `"one" can never`, `"more" can never`},
			nErrors: 2,
		},
		"grants that expired or expire soon": {
			policy: issuer + `routes:
  - name: a
    match: {path: /a}
    require: {all_of: [a:read]}
scopes:
  - {name: a:read, description: d, owner: o}
clients:
  - client_id: c
    owner: o
    grants:
      - {scope: a:read, approved_by: x, justification: y, expires_at: 2026-05-01}
      - {scope: a:read, approved_by: x, justification: y, expires_at: 2026-06-20}
      - {scope: a:read, approved_by: x, justification: y, expires_at: 2027-06-20}
`,
			warnings: []string{
				`p.yaml:16: warning: clients[0].grants[0].expires_at: the grant of scope a:read to client "c" expired on 2026-05-01`,
				`p.yaml:17: warning: clients[0].grants[1].expires_at: the grant of scope a:read to client "c" expires on 2026-06-20 (within 19 days)`,
			},
			absent:  []string{"2027-06-20"},
			nErrors: 0,
		},
		"expiry warnings can be turned off": {
			policy:  issuer + "routes:\n  - name: a\n    match: {path: /a}\n    require: {all_of: [a:read]}\nscopes:\n  - {name: a:read, description: d, owner: o}\nclients:\n  - client_id: c\n    owner: o\n    grants:\n      - {scope: a:read, approved_by: x, justification: y, expires_at: 2026-06-20}\n",
			opts:    Options{ExpiryWarning: -1},
			absent:  []string{"expires on"},
			nErrors: 0,
		},
		"deprecated scopes past their sunset": {
			policy: issuer + `routes:
  - name: a
    match: {path: /a}
    require: {any_of: [a:v1, a:read]}
  - name: b
    match: {path: /b}
    require: {all_of: [a:read]}
scopes:
  - {name: a:read, description: d, owner: o}
  - {name: a:v1, description: d, owner: o, status: deprecated, replacement: a:read, sunset: 2026-01-31}
  - {name: a:v0, description: d, owner: o, status: deprecated, replacement: a:read, sunset: 2026-01-31}
  - {name: a:v2, description: d, owner: o, status: deprecated, replacement: a:read, sunset: 2027-01-31, implies: [a:read]}
clients:
  - client_id: c
    owner: o
    grants: [{scope: a:v1, approved_by: x, justification: y}]
`,
			errors:   []string{`p.yaml:7: routes[0].require: route "a" still requires "a:v1", deprecated with a sunset on 2026-01-31 that has passed (its replacement is a:read)`},
			warnings: []string{`client "c" is still granted "a:v1"`, `scope "a:v0" passed its sunset (2026-01-31); retire it`},
			absent:   []string{`"a:v2" passed`},
			nErrors:  1,
		},
		// The line of a merged field is where the merge brings it from, as
		// the loader reports it: lint once answered the line of the item.
		"a merged field's line is where it is written": {
			policy: issuer + `routes:
  - name: b
    match: {path: /b}
    require: {all_of: [a:read]}
scopes:
  - {name: a:read, description: d, owner: o}
  - &retiring {name: a:v1, description: d, owner: o, status: deprecated, replacement: a:read, sunset: 2026-01-31}
  - <<: *retiring
    name: a:v0
`,
			warnings: []string{
				`p.yaml:12: warning: scopes[1].status: scope "a:v1" passed its sunset`,
				`p.yaml:12: warning: scopes[2].status: scope "a:v0" passed its sunset`,
			},
			nErrors: 0,
		},
		"a missing jwks_file": {
			policy: strings.Replace(issuer, "jwks_url: https://id.test/jwks.json", "jwks_file: nowhere.json", 1) + "routes:\n  - name: a\n    match: {path: /a}\n",
			errors: []string{"cannot read keys from nowhere.json: open nowhere.json"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			text, file := tc.policy, "p.yaml"
			if ref, ok := strings.CutPrefix(text, "@"); ok {
				b, err := os.ReadFile(filepath.Join("testdata", ref))
				if err != nil {
					t.Fatal(err)
				}
				text, file = string(b), filepath.Join("testdata", ref)
			}
			opts := tc.opts
			opts.Now = lintNow
			res, err := Lint([]byte(text), file, opts)
			if err != nil {
				t.Fatal(err)
			}
			var errs, warns []decision.Problem
			for _, p := range res.Problems {
				if p.Warning {
					warns = append(warns, p)
				} else {
					errs = append(errs, p)
				}
			}
			all := render(res.Problems)
			for _, w := range tc.errors {
				if !strings.Contains(render(errs), w) {
					t.Errorf("no error contains %q; got:\n%s", w, all)
				}
			}
			for _, w := range tc.warnings {
				if !strings.Contains(render(warns), w) {
					t.Errorf("no warning contains %q; got:\n%s", w, all)
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(all, w) {
					t.Errorf("a problem contains %q:\n%s", w, all)
				}
			}
			if tc.nErrors >= 0 && (tc.nErrors > 0 || len(tc.errors) == 0) && len(errs) != tc.nErrors {
				t.Errorf("%d errors, want %d:\n%s", len(errs), tc.nErrors, all)
			}
			if res.Errors() != len(errs) {
				t.Errorf("Errors() = %d, want %d", res.Errors(), len(errs))
			}
			// Errors come first.
			seenWarning := false
			for _, p := range res.Problems {
				if p.Warning {
					seenWarning = true
				} else if seenWarning {
					t.Errorf("error after a warning:\n%s", all)
					break
				}
			}
		})
	}
}

func TestLintOptionsErrors(t *testing.T) {
	if _, err := Lint([]byte(issuer), "p.yaml", Options{NamePattern: "("}); err == nil || !strings.Contains(err.Error(), "invalid name pattern") {
		t.Errorf("bad pattern: %v", err)
	}
	if _, err := Lint([]byte(issuer), "p.yaml", Options{OpenAPI: "testdata/none.yaml"}); err == nil || !strings.Contains(err.Error(), "cannot read the OpenAPI document") {
		t.Errorf("missing OpenAPI document: %v", err)
	}
	res, err := File("testdata/none.yaml", Options{})
	if err != nil || res.Errors() != 1 || !strings.Contains(render(res.Problems), "cannot read the policy file") {
		t.Errorf("missing policy: %v %+v", err, res)
	}
}

func TestRepresentativesBound(t *testing.T) {
	// Eight parameters over a wide alphabet exceed the bound: the route is
	// not judged rather than judged on a sample.
	alphabet := make([][]string, 9)
	for i := range alphabet {
		for j := range 10 {
			alphabet[i] = append(alphabet[i], string(rune('a'+j)))
		}
	}
	segs := []string{"{a}", "{b}", "{c}", "{d}", "{e}", "{f}", "{g}", "{h}"}
	if _, ok := representatives(segs, alphabet, 8, "z"); ok {
		t.Error("10^8 representatives were enumerated")
	}
	got, ok := representatives([]string{"x", "{rest...}"}, [][]string{{"x", "z"}, {"y", "z"}, {"z"}}, 2, "z")
	want := []string{"/x/y", "/x/z", "/x/y/z", "/x/z/z"}
	if !ok || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("representatives = %v, want %v", got, want)
	}
}

// TestLintKeyFiles: lint reads every jwks_file as serve does, so a file
// serve refuses is a lint error with serve's message; a jwks_url is noted,
// not fetched.
func TestLintKeyFiles(t *testing.T) {
	dir := t.TempDir()
	policy := func(keys string) string {
		return "issuers:\n  - issuer: https://id.test/\n    audiences: [api]\n    " + keys +
			"\n    algorithms: [ES256]\nroutes:\n  - name: a\n    match: {path: /a}\n    require: {all_of: [a:read]}\n"
	}
	for name, tc := range map[string]struct {
		file, want string
	}{
		"malformed JSON":  {`{"keys": [`, "not a valid JWKS"},
		"only an oct key": {`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`, "symmetric (oct) key"},
		"no keys":         {`{"keys":[]}`, "the key set has no keys"},
		"a private key":   {`{"keys":[{"kty":"EC","crv":"P-256","kid":"p","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","d":"870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE"}]}`, "private key"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			src := policy("jwks_file: " + filepath.Base(path))
			res, err := Lint([]byte(src), filepath.Join(dir, "policy.yaml"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, loadErr := decision.Load([]byte(src), filepath.Join(dir, "policy.yaml"), decision.CompileOptions{})
			if res.Errors() != 1 || loadErr == nil {
				t.Fatalf("lint errors %d (%v), load error %v; want one each", res.Errors(), res.Problems, loadErr)
			}
			got := res.Problems[0].String()
			if !strings.Contains(got, tc.want) || !strings.Contains(got, "issuers[0].jwks_file") || !strings.Contains(loadErr.Error(), got) {
				t.Errorf("lint says %q; load says %q; want the same problem, naming %q", got, loadErr, tc.want)
			}
		})
	}
	t.Run("jwks_url is noted, not fetched", func(t *testing.T) {
		res, err := Lint([]byte(policy("jwks_url: https://127.0.0.1:1/jwks.json")), "policy.yaml", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors() != 0 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "policy.yaml:2: note: issuers[0].jwks_url: https://127.0.0.1:1/jwks.json is not fetched offline") {
			t.Errorf("problems %v, notes %q", res.Problems, res.Notes)
		}
	})
}

// The documented shadow rollout (a stricter route of the same or a more
// specific path in mode shadow) is reported as an observer, not as a route
// that can never match; a shadow route that could not observe anything
// even with the shadow routes enforced is still an error.
func TestLintShadowRoutesAreObservers(t *testing.T) {
	cases := map[string]struct {
		routes    string
		observers []Observer
		errors    []string
	}{
		"the documented rollout: a more specific path": {routes: `
  - name: orders
    match: {methods: [GET], path: "/orders/{rest...}"}
    require: {all_of: [orders:read]}
  - name: order-strict
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read, orders:audit]}
    mode: shadow
`, observers: []Observer{{Route: "order-strict", Line: 10, Observes: []string{"orders"}}}},
		"observing two enforced routes": {routes: `
  - name: list
    match: {methods: [GET], path: "/orders"}
    require: {all_of: [orders:read]}
  - name: orders
    match: {methods: [GET], path: "/orders/{x}/{rest...}"}
    require: {all_of: [orders:read]}
  - name: strict
    match: {methods: [GET], path: "/orders/{rest...}"}
    require: {all_of: [orders:read, orders:audit]}
    mode: shadow
`, observers: []Observer{{Route: "strict", Line: 13, Observes: []string{""}}}},
		"a new route with no enforced route under it": {routes: `
  - name: orders
    match: {methods: [GET], path: "/orders"}
    require: {all_of: [orders:read]}
  - name: export
    match: {methods: [GET], path: "/export"}
    require: {all_of: [orders:read]}
    mode: shadow
`, observers: []Observer{{Route: "export", Line: 10, Observes: []string{""}}}},
		"a shadow route under more specific enforced routes": {routes: `
  - name: one
    match: {methods: [GET], path: "/a/{x}"}
    require: {all_of: [orders:read]}
  - name: more
    match: {methods: [GET], path: "/a/{x}/{rest...}"}
    require: {all_of: [orders:read]}
  - name: never
    match: {methods: [GET], path: "/a/{rest...}"}
    require: {all_of: [orders:read]}
    mode: shadow
`, errors: []string{`p.yaml:13: routes[2]: shadow route "never" can never observe a request`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := Lint([]byte(issuer+"routes:"+tc.routes), "p.yaml", Options{Now: lintNow})
			if err != nil {
				t.Fatal(err)
			}
			out := render(res.Problems)
			if strings.Contains(out, "can never match") || strings.Contains(out, "never decides") {
				t.Errorf("a shadow route is reported as unreachable:\n%s", out)
			}
			if res.Errors() != len(tc.errors) {
				t.Errorf("%d errors, want %d:\n%s", res.Errors(), len(tc.errors), out)
			}
			for _, e := range tc.errors {
				if !strings.Contains(out, e) {
					t.Errorf("no error %q in:\n%s", e, out)
				}
			}
			if len(res.Observers) != len(tc.observers) {
				t.Fatalf("observers = %+v, want %+v", res.Observers, tc.observers)
			}
			for i, o := range tc.observers {
				g := res.Observers[i]
				if g.Route != o.Route || g.Line != o.Line || strings.Join(g.Observes, ",") != strings.Join(o.Observes, ",") {
					t.Errorf("observer %d = %+v, want %+v", i, g, o)
				}
			}
		})
	}
}

// Look-alike scopes are reported inside a catalog too, where two teams
// declaring twins is most likely; related names (replacement, implies)
// are not.
func TestLintCatalogLookAlikes(t *testing.T) {
	route := "routes:\n  - name: a\n    match: {path: /a}\n    require: {any_of: [orders:read]}\n"
	cases := map[string]struct {
		scopes   string
		warnings []string
		absent   []string
	}{
		"one edit apart": {scopes: `
  - {name: orders:read, description: d, owner: team-a}
  - {name: order:read, description: d, owner: team-b}
`, warnings: []string{`catalog scopes "order:read" and "orders:read" (line 11) differ by one character`}},
		"equal but for case": {scopes: `
  - {name: orders:read, description: d, owner: team-a}
  - {name: Orders:Read, description: d, owner: team-b}
`, warnings: []string{`catalog scopes "Orders:Read" and "orders:read" (line 11) differ only in case`}},
		"a route naming a twin of a catalog scope": {scopes: `
  - {name: orders:read, description: d, owner: team-a}
  - {name: orders:reads, description: d, owner: team-b}
`, warnings: []string{`catalog scopes "orders:reads" and "orders:read"`}},
		"a replacement is related": {scopes: `
  - {name: orders:read, description: d, owner: team-a}
  - {name: orders:rea, description: d, owner: team-a, status: deprecated, replacement: orders:read, sunset: 2027-01-01}
`, absent: []string{"differ by one"}},
		"distinct names": {scopes: `
  - {name: orders:read, description: d, owner: team-a}
  - {name: orders:write, description: d, owner: team-a}
`, absent: []string{"differ by one", "differ only in case", "misspelling"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := Lint([]byte(issuer+route+"scopes:"+tc.scopes), "p.yaml", Options{Now: lintNow})
			if err != nil {
				t.Fatal(err)
			}
			out := render(res.Problems)
			for _, w := range tc.warnings {
				if !strings.Contains(out, w) {
					t.Errorf("no warning %q in:\n%s", w, out)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(out, a) {
					t.Errorf("unexpected %q in:\n%s", a, out)
				}
			}
		})
	}
}
