package jwks

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

func TestRegistryShares(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), jwksOf(t, key(t, "k1")))
	writeFile(t, filepath.Join(dir, "b.json"), jwksOf(t, key(t, "k2")))
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	reg := NewRegistry(context.Background())
	defer reg.Close()
	open := reg.Factory()
	get := func(spec decision.IssuerSpec) decision.KeySource {
		t.Helper()
		src, err := open(&spec, dir)
		if err != nil {
			t.Fatal(err)
		}
		return src
	}
	dur := func(d time.Duration) *decision.Duration { return &decision.Duration{Duration: d} }

	a := get(decision.IssuerSpec{JWKSFile: "a.json"})
	if get(decision.IssuerSpec{JWKSFile: filepath.Join(dir, "a.json")}) != a {
		t.Error("the same file opened twice")
	}
	if get(decision.IssuerSpec{JWKSFile: "b.json"}) == a {
		t.Error("two files share a source")
	}
	u := get(decision.IssuerSpec{JWKSURL: s.url(), JWKSCAFile: s.caFile})
	if get(decision.IssuerSpec{JWKSURL: s.url(), JWKSCAFile: s.caFile}) != u {
		t.Error("the same URL opened twice")
	}
	if get(decision.IssuerSpec{JWKSURL: s.url(), JWKSCAFile: s.caFile, JWKSRefreshInterval: dur(time.Minute)}) == u {
		t.Error("a URL with other settings shares a source")
	}
	if h := s.hits.Load(); h != 2 {
		t.Errorf("hits = %d, want 2 (one per distinct source)", h)
	}
	if n := len(reg.Statuses()); n != 4 {
		t.Fatalf("%d sources, want 4", n)
	}

	// Retain keeps only what a policy uses.
	pol := &decision.Policy{Issuers: map[string]*decision.Issuer{"x": {Name: "x", Keys: a}, "y": {Name: "y", Keys: decision.StaticKeys{}}}}
	reg.Retain(pol)
	st := reg.Statuses()
	if len(st) != 1 || st[0].Location != filepath.Join(dir, "a.json") {
		t.Fatalf("after Retain: %+v", st)
	}
	if get(decision.IssuerSpec{JWKSFile: "a.json"}) != a {
		t.Error("a retained source was reopened")
	}

	// Errors name the cause.
	if _, err := open(&decision.IssuerSpec{JWKSFile: "none.json"}, dir); err == nil || !strings.Contains(err.Error(), "none.json") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := open(&decision.IssuerSpec{}, dir); err == nil {
		t.Error("an issuer without keys opened")
	}
	reg.Close()
	if _, err := open(&decision.IssuerSpec{JWKSFile: "a.json"}, dir); err == nil {
		t.Error("a closed registry opened a source")
	}
}

// TestEngineFollowsRotation runs the engine against a JWKS endpoint that
// rotates its keys: a token signed with the new kid is accepted after one
// refetch, and a cached token of the removed kid stops being accepted.
func TestEngineFollowsRotation(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	dir := t.TempDir()
	policy := `
issuers:
  - issuer: ` + testIssuer + `
    audiences: [orders-api]
    jwks_url: ` + s.url() + `
    jwks_ca_file: ca.pem
    jwks_refresh_interval: 1h
    jwks_min_refresh_interval: 100ms
    algorithms: [RS256]
routes:
  - name: read
    match: {methods: [GET], path: /orders}
    require: {all_of: ["orders:read"]}
`
	ca, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"policy.yaml": []byte(policy), "ca.pem": ca} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := NewRegistry(context.Background())
	defer reg.Close()
	pol, err := decision.LoadFile(filepath.Join(dir, "policy.yaml"), decision.CompileOptions{KeySources: reg.Factory()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	decide := func(tok string) decision.Decision {
		return eng.Decide(context.Background(), &decision.Request{Method: "GET", Path: "/orders", Authorization: "Bearer " + tok, AuthorizationCount: 1})
	}

	old := mint(t, key(t, "k1"), "orders:read")
	if d := decide(old); !d.Allow {
		t.Fatalf("k1 token before rotation: %v %s", d.Code, d.Message())
	}
	eng.WaitTokenCache()

	s.serve(http.StatusOK, jwksOf(t, key(t, "k2")))
	time.Sleep(150 * time.Millisecond) // past jwks_min_refresh_interval
	fresh := mint(t, key(t, "k2"), "orders:read")
	if d := decide(fresh); !d.Allow {
		t.Fatalf("k2 token after rotation: %v %s", d.Code, d.Message())
	}
	if d := decide(old); d.Allow || d.Code != decision.KeyNotFound {
		t.Fatalf("k1 token after its key was removed: allow %v code %v", d.Allow, d.Code)
	}
	if h := s.hits.Load(); h != 2 {
		t.Fatalf("hits = %d, want 2", h)
	}
}
