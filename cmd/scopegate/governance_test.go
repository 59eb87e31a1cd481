package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision/decisiontest"
)

func examplePath(t *testing.T, rel string) string {
	t.Helper()
	p, err := decisiontest.ExamplePath(rel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// lintAt is the clock of lint runs whose findings depend on dates.
const lintAt = "2026-11-23T09:00:00Z"

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestGovernanceCommands(t *testing.T) {
	pol := examplePath(t, "examples/policy.yaml")
	full := examplePath(t, "examples/orders-full.yaml")
	api := examplePath(t, "examples/openapi.yaml")
	lonely := filepath.Join(t.TempDir(), "lonely.yaml")
	if err := os.WriteFile(lonely, []byte("routes: [{name: h, match: {path: /h}, public: true}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args     []string
		wantCode int
		wantOut  []string // in stdout
		wantErr  []string // in stderr
		last     string   // regexp the last line of stdout must match
	}{
		"lint the example":               {args: []string{"lint", pol, "--now", lintAt}, wantCode: exitOK, wantOut: []string{"0 error(s), 0 warning(s)"}},
		"lint the example with --policy": {args: []string{"lint", "--now", lintAt, "--policy", pol}, wantCode: exitOK},
		"lint: grants about to expire": {
			args: []string{"lint", pol, "--now", "2027-02-20T00:00:00Z"}, wantCode: exitOK,
			wantOut: []string{`warning: clients[1].grants[1].expires_at: the grant of scope orders:refund to client "support-console" expires on 2027-03-02 (within 10 days)`, "0 error(s), 1 warning(s)"},
		},
		"lint against the OpenAPI document": {
			args: []string{"lint", pol, "--openapi", api, "--now", lintAt}, wantCode: exitOK, wantOut: []string{"0 error(s), 0 warning(s)"},
		},
		"lint: a route the API does not have": {
			args: []string{"lint", "--openapi", api, full, "--now", lintAt}, wantCode: exitError,
			wantOut: []string{`orders-full.yaml:35: routes[3]: route "update-order" (/orders/{id}) reaches no operation`, "1 error(s)"},
		},
		"lint: flags after the policy": {
			args: []string{"lint", pol, "--name-regex", "^[a-z]+$"}, wantCode: exitError,
			wantOut: []string{`scope "orders:read" does not follow the naming convention ^[a-z]+$`},
		},
		"lint: -- ends the flags": {args: []string{"lint", "--", pol}, wantCode: exitOK},
		"lint: a policy that does not load": {
			args: []string{"lint", "testdata/bad-policy.yaml"}, wantCode: exitUsage,
			wantOut: []string{"bad-policy.yaml:8: routes[0].match.path", "3 error(s)"},
		},
		"lint: no policy":         {args: []string{"lint"}, wantCode: exitUsage, wantErr: []string{"name the policy file"}},
		"lint: two policies":      {args: []string{"lint", pol, full}, wantCode: exitUsage, wantErr: []string{"give one policy file"}},
		"lint: policy twice":      {args: []string{"lint", "--policy", pol, full}, wantCode: exitUsage, wantErr: []string{"the policy is given twice"}},
		"lint: bad --now":         {args: []string{"lint", pol, "--now", "tomorrow"}, wantCode: exitUsage, wantErr: []string{"--now"}},
		"lint: bad pattern":       {args: []string{"lint", pol, "--name-regex", "("}, wantCode: exitUsage, wantErr: []string{"invalid name pattern"}},
		"lint: unknown flag":      {args: []string{"lint", pol, "--nope"}, wantCode: exitUsage, wantErr: []string{"unknown flag: --nope; did you mean --now?"}},
		"lint: --help after args": {args: []string{"lint", pol, "--help"}, wantCode: exitOK, wantOut: []string{"scopegate lint POLICY [flags]", "--openapi string", "Arguments:"}},

		"test the example with full coverage": {
			args: []string{"test", pol, "--require-full-coverage"}, wantCode: exitOK,
			wantOut: []string{"coverage: 6/6 routes, 4/4 scopes"}, last: `^\d+ passed, 0 failed$`,
		},
		"test the full example": {
			args: []string{"test", "--require-full-coverage", full}, wantCode: exitOK, last: `^\d+ passed, 0 failed$`,
		},
		"test: a failing case": {
			args: []string{"test", pol, "testdata/gov-failing_test.yaml"}, wantCode: exitError,
			wantOut: []string{"FAIL writes do not read, but this case claims they do (testdata/gov-failing_test.yaml:9)", "got:     deny insufficient_scope"},
			last:    `^1 passed, 1 failed$`,
		},
		"test: missing coverage passes without the flag": {
			args: []string{"test", pol, "testdata/gov-partial_test.yaml"}, wantCode: exitOK,
			wantOut: []string{"route not covered: create-order (POST /orders)", "scope not covered: admin:all"}, last: `^2 passed, 0 failed$`,
		},
		"test: missing coverage fails with the flag": {
			args: []string{"test", pol, "testdata/gov-partial_test.yaml", "--require-full-coverage"}, wantCode: exitError, last: `^2 passed, 0 failed$`,
		},
		"test: a broken test file": {
			args: []string{"test", pol, "testdata/gov-broken_test.yaml", "testdata/gov-partial_test.yaml"}, wantCode: exitUsage,
			wantErr: []string{`gov-broken_test.yaml:4: unknown field "expectt"`, "1 test file(s) could not be read"},
			last:    `^2 passed, 0 failed$`,
		},
		"test: a policy that does not load": {
			args: []string{"test", "testdata/bad-policy.yaml", "testdata/gov-partial_test.yaml"}, wantCode: exitUsage,
			wantErr: []string{"the policy has 3 error(s)"},
			last:    `^0 passed, 0 failed \(the policy does not load`,
		},
		"test: no test files beside the policy": {
			args: []string{"test", lonely}, wantCode: exitUsage, wantErr: []string{"no *_test.yaml file beside"},
		},
		"test: no policy": {args: []string{"test"}, wantCode: exitUsage, wantErr: []string{"name the policy file"}},

		"diff: wider and narrower": {
			args: []string{"diff", pol, "testdata/gov-diff-new.yaml"}, wantCode: exitOK,
			wantOut: []string{"~ read-order", "WIDER", "a token with only [orders:write] is allowed now", "~ admin", "NARROWER", "no longer allows DELETE"},
			last:    `^1 wider, 1 narrower, 0 neutral$`,
		},
		"diff: --fail-on-wider": {
			args: []string{"diff", "--fail-on-wider", pol, "testdata/gov-diff-new.yaml"}, wantCode: exitError, wantErr: []string{"1 change(s) widen access"},
		},
		"diff: the other way is narrower": {
			args: []string{"diff", "--fail-on-wider", "testdata/gov-diff-new.yaml", pol}, wantCode: exitError,
			wantOut: []string{"now also allows DELETE", "a token with only [orders:write] is refused now"},
		},
		"diff: no change": {
			args: []string{"diff", "--fail-on-wider", pol, pol}, wantCode: exitOK, wantOut: []string{"no change to access"},
		},
		"diff: one file":         {args: []string{"diff", pol}, wantCode: exitUsage, wantErr: []string{"scopegate diff OLD NEW"}},
		"diff: a bad policy":     {args: []string{"diff", pol, "testdata/bad-policy.yaml"}, wantCode: exitUsage, wantErr: []string{"bad-policy.yaml:8"}},
		"catalog of the example": {args: []string{"catalog", pol, "--now", "2026-11-23T09:00:00Z"}, wantCode: exitOK, wantOut: []string{"# Scope catalog", "### `orders:refund`", "| `read-order` | all of `orders:read` | none | `GET /orders/example` | allow (200) |"}},
		"catalog: a bad policy":  {args: []string{"catalog", "testdata/bad-policy.yaml"}, wantCode: exitUsage, wantErr: []string{"the policy has 3 error(s)"}},
		"help lists the commands": {
			args: []string{"help"}, wantCode: exitOK, wantOut: []string{"  lint ", "  test ", "  diff ", "  catalog ", "  explain "},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(t, "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, out, errs)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if tc.last != "" && !regexp.MustCompile(tc.last).MatchString(lastLine(out)) {
				t.Errorf("last line %q does not match %s", lastLine(out), tc.last)
			}
		})
	}
}

func TestGovernanceJSON(t *testing.T) {
	pol := examplePath(t, "examples/policy.yaml")
	t.Run("lint", func(t *testing.T) {
		code, out, _ := runCLI(t, "", "lint", "--json", "testdata/bad-policy.yaml")
		var got struct {
			Errors   int
			Problems []struct{ File, Message, Level string }
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitUsage || got.Errors != 3 || len(got.Problems) != 3 || got.Problems[0].Level != "error" {
			t.Errorf("exit %d, %v: %+v\n%s", code, err, got, out)
		}
	})
	t.Run("test", func(t *testing.T) {
		code, out, _ := runCLI(t, "", "test", pol, "--json")
		var got struct {
			Passed, Failed int
			Coverage       struct{ Routes, Scopes []struct{ Covered bool } }
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitOK || got.Passed == 0 || got.Failed != 0 || len(got.Coverage.Routes) != 6 {
			t.Errorf("exit %d, %v: %+v", code, err, got)
		}
	})
	t.Run("diff", func(t *testing.T) {
		code, out, _ := runCLI(t, "", "diff", "--json", pol, "testdata/gov-diff-new.yaml")
		var got struct {
			Changes []struct{ Kind, Op, Subject, Verdict, Detail string }
			Summary map[string]int
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitOK || got.Summary["wider"] != 1 || got.Summary["narrower"] != 1 || len(got.Changes) != 2 {
			t.Errorf("exit %d, %v: %+v", code, err, got)
		}
	})
}

func TestCatalogOut(t *testing.T) {
	out := filepath.Join(t.TempDir(), "scopes.md")
	code, stdout, errs := runCLI(t, "", "catalog", "--out", out, "--now", "2026-11-23T09:00:00Z", examplePath(t, "examples/policy.yaml"))
	if code != exitOK || stdout != "" {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, errs)
	}
	b, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(b), "## Segment `admin`") {
		t.Errorf("catalog file: %v\n%s", err, b)
	}
}

func TestExplainGovernance(t *testing.T) {
	pol := examplePath(t, "examples/policy.yaml")
	write := mint(t, "--scope", "orders:write", "--client", "web-app")
	admin := mint(t, "--scope", "admin:all", "--client", "web-app")
	cases := map[string]struct {
		args     []string
		wantCode int
		want     []string
		not      []string
	}{
		"explain shows the catalog entry, segment and grant": {
			args:     []string{"explain", "--policy", pol, "--method", "POST", "--path", "/orders", "--token", write},
			wantCode: exitOK,
			want: []string{
				"4. scopes pass", "governance:", "orders:write",
				`catalog: "Place orders on your behalf", owner team-orders, risk medium, status active`,
				"segment: orders (owner team-orders)",
				`grant:   client web-app, scope orders:write (scope), approved by dana on 2026-01-12: "checkout"`,
			},
			not: []string{write},
		},
		"check --explain shows drift and missing grants": {
			args:     []string{"check", "--explain", "--policy", pol, "--path", "/admin/users", "--token", admin},
			wantCode: exitOK,
			want: []string{"note:    client web-app holds no grant of it", `drift (monitored): client "web-app" holds no active grant for "admin:all"`,
				"extra scopes: admin:all: add the grant to the client in the policy, or stop the authorization server issuing the scope"},
			not: []string{"segment straddle:"},
		},
		"explain tells a straddle from extra scopes, each with its remedy": {
			args: []string{"explain", "--policy", examplePath(t, "examples/orders-full.yaml"), "--path", "/admin/users", "--source-ip", "10.0.0.1",
				"--token", mint(t, "--scope", "admin:all orders:read", "--client", "admin-console", "--ttl", "30m")},
			wantCode: exitDeny,
			want: []string{"extra scopes: orders:read: add the grant",
				"segment straddle: orders + admin (scopes admin:all, orders:read, granted or not): approve the combination in the client's segments_together, or split the client"},
		},
		"without --explain nothing is added": {
			args:     []string{"check", "--policy", pol, "--path", "/admin/users", "--token", admin},
			wantCode: exitOK,
			not:      []string{"governance:"},
		},
		"a public route has no scope to explain": {
			args:     []string{"explain", "--policy", pol, "--path", "/healthz"},
			wantCode: exitOK,
			not:      []string{"governance:"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(t, "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.wantCode, out, errs)
			}
			flat := spaces.ReplaceAllString(out, " ")
			for _, w := range tc.want {
				if !strings.Contains(flat, spaces.ReplaceAllString(w, " ")) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out+errs, w) {
					t.Errorf("output contains %q:\n%s", w, out)
				}
			}
		})
	}

	code, out, _ := runCLI(t, "", "check", "--json", "--explain", "--policy", pol, "--method", "POST", "--path", "/orders", "--token", write)
	var got decisionJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitOK {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
	if len(got.Governance) != 1 || got.Governance[0].Scope != "orders:write" || got.Governance[0].Catalog == nil ||
		got.Governance[0].Catalog.Owner != "team-orders" || len(got.Governance[0].Grants) != 1 || got.Governance[0].Grants[0].ApprovedBy != "dana" {
		t.Errorf("governance = %+v", got.Governance)
	}
}

// TestExitCodeTable: the one exit-code table holds for every command: a
// policy that does not load is 2 everywhere, findings are 1, a deny is 3.
func TestExitCodeTable(t *testing.T) {
	pol := examplePath(t, "examples/policy.yaml")
	bad := "testdata/bad-policy.yaml"
	read := mint(t, "--scope", "orders:read")
	cases := map[string]struct {
		args []string
		want int
	}{
		"lint ok":             {[]string{"lint", pol}, exitOK},
		"check allow":         {[]string{"check", "--policy", pol, "--path", "/orders/1", "--token", read}, exitOK},
		"check deny":          {[]string{"check", "--policy", pol, "--method", "POST", "--path", "/orders", "--token", read}, exitDeny},
		"explain deny":        {[]string{"explain", "--policy", pol, "--method", "POST", "--path", "/orders", "--token", read}, exitDeny},
		"lint findings":       {[]string{"lint", pol, "--name-regex", "^[a-z]+$"}, exitError},
		"test failures":       {[]string{"test", pol, "testdata/gov-failing_test.yaml"}, exitError},
		"diff wider":          {[]string{"diff", "--fail-on-wider", pol, "testdata/gov-diff-new.yaml"}, exitError},
		"lint bad policy":     {[]string{"lint", bad}, exitUsage},
		"check bad policy":    {[]string{"check", "--policy", bad, "--path", "/x"}, exitUsage},
		"explain bad policy":  {[]string{"explain", "--policy", bad, "--path", "/x"}, exitUsage},
		"catalog bad policy":  {[]string{"catalog", bad}, exitUsage},
		"test bad policy":     {[]string{"test", bad, "testdata/gov-partial_test.yaml"}, exitUsage},
		"diff bad policy":     {[]string{"diff", pol, bad}, exitUsage},
		"serve bad policy":    {[]string{"serve", "--policy", bad, "--audit", "off"}, exitUsage},
		"missing policy file": {[]string{"lint", "testdata/none.yaml"}, exitUsage},
		"bad flag":            {[]string{"diff", "--fail-on-widr", pol, pol}, exitUsage},
		"bad command":         {[]string{"lnt", pol}, exitUsage},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(t, "", tc.args...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errs)
			}
			if strings.Contains(errs, "goroutine ") || strings.Contains(errs, "panic") {
				t.Errorf("stack trace on stderr:\n%s", errs)
			}
		})
	}
}
