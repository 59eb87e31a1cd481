package server

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// pprof is off unless asked for: every /debug/pprof path is a 404.
func TestOpsListenerPprofOff(t *testing.T) {
	e := startE2E(t, nil)
	base := startOpsT(t, e.srv)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/symbol",
		"/debug/pprof/trace?seconds=1", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2"} {
		if status, body := httpGet(t, base+p); status != 404 {
			t.Errorf("GET %s with pprof off: %d %.100s", p, status, body)
		}
	}
	if status, _ := httpGet(t, base+"/metrics"); status != 200 {
		t.Errorf("/metrics: %d", status)
	}
}

// /debug/pprof/cmdline serves the command line with its secrets redacted.
func TestPprofCmdlineRedacted(t *testing.T) {
	const pw, pw2, tok = "Pg-S3cret", "Qs-S3cret", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	args := []string{"scopegate", "serve", "--policy", "p.yaml",
		"--store", "postgres://scopegate:" + pw + "@db:5432/sg?sslmode=require",
		"--store=postgresql://u:" + pw + "@db/sg?password=" + pw2,
		"-store", "postgres://db/sg?sslmode=disable&password=" + pw2,
		"--token", tok, "--admin-token=" + tok, "--x-password", pw,
		"--jwks", "https://user:" + pw + "@idp.example/jwks",
		"host=db user=u password=" + pw2 + " dbname=sg",
		"--log-level", "debug"}
	saved := os.Args
	os.Args = args
	t.Cleanup(func() { os.Args = saved })
	e := startE2E(t, func(c *Config) { c.Pprof = true })
	base := startOpsT(t, e.srv)
	status, body := httpGet(t, base+"/debug/pprof/cmdline")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	for _, secret := range []string{pw, pw2, tok} {
		if strings.Contains(body, secret) {
			t.Fatalf("the command line shows a secret: %q", body)
		}
	}
	got := strings.Split(body, "\x00")
	want := []string{"scopegate", "serve", "--policy", "p.yaml",
		"postgres://scopegate:xxxxx@db:5432/sg?sslmode=require",
		"--store=postgresql://u:xxxxx@db/sg?password=xxxxx",
		"-store", "postgres://db/sg?password=xxxxx&sslmode=disable",
		"--token", "xxxxx", "--admin-token=xxxxx", "--x-password", "xxxxx",
		"--jwks", "https://user:xxxxx@idp.example/jwks",
		"host=db user=u password=xxxxx dbname=sg",
		"--log-level", "debug"}
	want = slices.Insert(want, 4, "--store")
	if !slices.Equal(got, want) {
		t.Fatalf("command line\n got %q\nwant %q", got, want)
	}
}
