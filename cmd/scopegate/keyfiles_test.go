package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrokenKeyFileEveryCommand: every command loads a policy through the
// same path (decision.LoadFile), so a jwks_file that serve refuses fails
// lint, test, diff, catalog and check too, with the same message and the
// same exit status: 2, an input that cannot be loaded (docs/cli.md), for
// every command.
func TestBrokenKeyFileEveryCommand(t *testing.T) {
	const policy = `issuers:
  - issuer: https://id.example.com/
    audiences: [api]
    jwks_file: keys.json
    algorithms: [ES256]
routes:
  - name: read
    match: {methods: [GET], path: /orders}
    require: {all_of: [orders:read]}
`
	files := map[string]struct {
		content string // "" leaves the file missing
		want    string
	}{
		"malformed JSON":  {`{"keys": [`, "not a valid JWKS"},
		"only an oct key": {`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`, "symmetric (oct) key"},
		"no keys":         {`{"keys":[]}`, "the key set has no keys"},
		"not a key set":   {`[1, 2]`, "not a valid JWKS"},
		"missing":         {"", "no such file or directory"},
	}
	for name, f := range files {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
				t.Fatal(err)
			}
			tests := "tests:\n  - name: read\n    request: {path: /orders}\n    token: {sub: alice, scope: orders:read}\n    expect: {allow: true}\n"
			if err := os.WriteFile(filepath.Join(dir, "policy_test.yaml"), []byte(tests), 0o600); err != nil {
				t.Fatal(err)
			}
			if f.content != "" {
				if err := os.WriteFile(filepath.Join(dir, "keys.json"), []byte(f.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			wantLine := path + ":4: issuers[0].jwks_file: cannot read keys from keys.json: "
			commands := map[string][]string{
				"serve":   {"serve", "--policy", path, "--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--metrics-addr", "", "--log-level", "error"},
				"check":   {"check", "--policy", path, "--path", "/orders"},
				"lint":    {"lint", path},
				"test":    {"test", path},
				"diff":    {"diff", path, path},
				"catalog": {"catalog", path},
			}
			var first string
			for cmd, args := range commands {
				code, stdout, stderr := runCLI(t, "", args...)
				out := stdout + stderr
				want := exitUsage
				if code != want {
					t.Errorf("%s: exit %d, want %d\n%s", cmd, code, want, out)
				}
				i := strings.Index(out, wantLine)
				if i < 0 {
					t.Errorf("%s does not report %q:\n%s", cmd, wantLine, out)
					continue
				}
				msg, _, _ := strings.Cut(out[i:], "\n")
				if !strings.Contains(msg, f.want) {
					t.Errorf("%s: %q does not say %q", cmd, msg, f.want)
				}
				if first == "" {
					first = msg
				} else if msg != first {
					t.Errorf("%s says %q; another command said %q", cmd, msg, first)
				}
			}
		})
	}
}
