package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCheckNamesMissingScopes: check (text, --explain and -o json) names
// the scopes the token lacks, and marks only those in the governance
// block, for all_of, any_of and both together.
func TestCheckNamesMissingScopes(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	src := `issuers:
  - issuer: https://id.example.com/
    audiences: [orders-api]
    jwks_file: ` + examplePath(t, "examples/keys/jwks.json") + `
    algorithms: [RS256]
routes:
  - name: export
    match: {methods: [GET], path: /export}
    require: {all_of: [orders:read, orders:export], any_of: [region:eu, region:us]}
`
	if err := os.WriteFile(pol, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		scope   string
		missing []string
		line    string
	}{
		"all_of":  {scope: "orders:read region:us", missing: []string{"orders:export"}, line: "DENY insufficient_scope: the token lacks scope orders:export, which route export requires (route=export)"},
		"any_of":  {scope: "orders:read orders:export", missing: []string{"region:eu", "region:us"}, line: "DENY insufficient_scope: the token lacks one of the scopes region:eu or region:us, which route export requires (route=export)"},
		"both":    {scope: "orders:read", missing: []string{"orders:export", "region:eu", "region:us"}, line: "DENY insufficient_scope: the token lacks scope orders:export and one of region:eu or region:us, which route export requires (route=export)"},
		"nothing": {scope: "profile", missing: []string{"orders:read", "orders:export", "region:eu", "region:us"}, line: "DENY insufficient_scope: the token lacks scopes orders:read and orders:export, and one of region:eu or region:us, which route export requires (route=export)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok := mint(t, "--scope", tc.scope)
			args := []string{"check", "--policy", pol, "--path", "/export", "--token", tok, "--explain"}
			code, out, errs := runCLI(t, "", args...)
			if code != exitDeny {
				t.Fatalf("exit %d, want %d: %s%s", code, exitDeny, out, errs)
			}
			if first, _, _ := strings.Cut(out, "\n"); first != tc.line {
				t.Errorf("verdict line\n got %q\nwant %q", first, tc.line)
			}
			if !strings.Contains(spaces.ReplaceAllString(out, " "), "scopes fail "+strings.TrimSuffix(strings.TrimPrefix(tc.line, "DENY insufficient_scope: "), " (route=export)")) {
				t.Errorf("the trace's scopes step does not name the missing scopes:\n%s", out)
			}
			for _, s := range []string{"orders:read", "orders:export", "region:eu", "region:us"} {
				marked := strings.Contains(out, "    "+s+" (the token lacks it)\n")
				if want := slices.Contains(tc.missing, s); marked != want {
					t.Errorf("governance marks %s as lacking: %v, want %v\n%s", s, marked, want, out)
				}
			}

			code, out, errs = runCLI(t, "", append(args, "-o", "json")...)
			if code != exitDeny {
				t.Fatalf("-o json: exit %d: %s", code, errs)
			}
			var got decisionJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, out)
			}
			if !slices.Equal(got.ScopesMissing, tc.missing) {
				t.Errorf("scopes_missing = %q, want %q", got.ScopesMissing, tc.missing)
			}
			if want := `scope="` + strings.Join(tc.missing, " ") + `"`; !strings.Contains(got.WWWAuthenticate, want) {
				t.Errorf("www_authenticate = %q, want %s", got.WWWAuthenticate, want)
			}
		})
	}
}
