package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// --admin-issuer is repeatable and comma-separated, and set by the
// environment and the config file like every serve flag.
func TestServeAdminIssuerFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "scopegate.yaml")
	if err := os.WriteFile(file, []byte("admin_issuer: https://file.example/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want []string
	}{
		"unset":              {want: nil},
		"one":                {args: []string{"--admin-issuer", "https://a.example/"}, want: []string{"https://a.example/"}},
		"repeated and comma": {args: []string{"--admin-issuer", "https://a.example/, https://b.example/", "--admin-issuer=https://c.example/"}, want: []string{"https://a.example/", "https://b.example/", "https://c.example/"}},
		"environment":        {env: map[string]string{"SCOPEGATE_ADMIN_ISSUER": "https://a.example/,https://b.example/"}, want: []string{"https://a.example/", "https://b.example/"}},
		"config file":        {args: []string{"--config", file}, want: []string{"https://file.example/"}},
		"flag over file":     {args: []string{"--config", file, "--admin-issuer", "https://a.example/"}, want: []string{"https://a.example/"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, s, err := resolveServe(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := []string(s.adminIssuers); !slices.Equal(got, tc.want) {
				t.Fatalf("admin issuers %q, want %q", got, tc.want)
			}
		})
	}
	var l listFlag
	if err := l.Set("https://a.example/,,https://b.example/"); err == nil {
		t.Fatal("an empty entry was accepted")
	}
}
