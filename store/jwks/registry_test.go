package jwks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// registryPolicy compiles a policy whose issuers use the given key
// settings, one issuer per entry ("name: yaml lines").
func registryPolicy(t testing.TB, dir string, issuers ...string) *decision.Policy {
	t.Helper()
	var b strings.Builder
	b.WriteString("issuers:\n")
	for i, iss := range issuers {
		fmt.Fprintf(&b, "  - issuer: https://issuer%d.example/\n    audiences: [api]\n    algorithms: [RS256]\n", i)
		for _, line := range strings.Split(iss, "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	b.WriteString("routes:\n  - {name: r, match: {path: /r}, require: {all_of: [a]}}\n")
	pol, err := decision.Compile([]byte(b.String()), filepath.Join(dir, "policy.yaml"), decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func issuerN(pol *decision.Policy, i int) *decision.Issuer {
	return pol.Issuers[fmt.Sprintf("https://issuer%d.example/", i)]
}

func TestRegistryShares(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), jwksOf(t, key(t, "k1")))
	writeFile(t, filepath.Join(dir, "b.json"), jwksOf(t, key(t, "k2")))
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	reg := NewRegistry(context.Background())
	defer reg.Close()
	url := "jwks_url: " + s.url() + "\njwks_ca_file: " + s.caFile
	pol := registryPolicy(t, dir,
		"jwks_file: a.json",
		"jwks_file: "+filepath.Join(dir, "a.json"),
		"jwks_file: b.json",
		url,
		url,
		url+"\njwks_refresh_interval: 1m",
	)
	if reg.Keys(&issuerN(pol, 0).KeyRef) != nil {
		t.Fatal("a key set before Open")
	}
	if err := reg.Open(pol); err != nil {
		t.Fatal(err)
	}
	get := func(i int) decision.KeySource { return reg.Keys(&issuerN(pol, i).KeyRef) }
	a := get(0)
	if a == nil || len(a.Keys()) != 1 || a.Keys()[0].Kid != "k1" {
		t.Fatalf("file key set = %v", a)
	}
	if get(1) != a {
		t.Error("the same file opened twice")
	}
	if get(2) == a {
		t.Error("two files share a source")
	}
	if get(3) != get(4) {
		t.Error("the same URL opened twice")
	}
	if get(5) == get(3) {
		t.Error("a URL with other settings shares a source")
	}
	waitFor(t, func() bool { return len(get(3).Keys()) == 1 && len(get(5).Keys()) == 1 })
	if h := s.hits.Load(); h != 2 {
		t.Errorf("hits = %d, want 2 (one per distinct source)", h)
	}
	if n := len(reg.Statuses()); n != 4 {
		t.Fatalf("%d sources, want 4", n)
	}
	// Opening the same policy again opens nothing.
	if err := reg.Open(pol); err != nil || get(0) != a || len(reg.Statuses()) != 4 {
		t.Fatalf("reopen: %v, %d sources", err, len(reg.Statuses()))
	}

	// Retain keeps only what a policy uses.
	only := registryPolicy(t, dir, "jwks_file: a.json")
	reg.Retain(only)
	st := reg.Statuses()
	if len(st) != 1 || st[0].Location != filepath.Join(dir, "a.json") {
		t.Fatalf("after Retain: %+v", st)
	}
	if reg.Keys(&issuerN(only, 0).KeyRef) != a {
		t.Error("a retained source was replaced")
	}
	if get(3) != nil {
		t.Error("a removed source still resolves")
	}

	// A missing file opens (and keeps polling) with no keys.
	missing := registryPolicy(t, dir, "jwks_file: none.json")
	if err := reg.Open(missing); err != nil {
		t.Fatal(err)
	}
	src := reg.Keys(&issuerN(missing, 0).KeyRef)
	if src == nil || len(src.Keys()) != 0 {
		t.Fatalf("missing file: %v", src)
	}
	if st := src.(*slot).Status(); st.LastError == nil || !strings.Contains(st.LastError.Error(), "none.json") {
		t.Errorf("missing file status %+v", st)
	}
	reg.Close()
	if err := reg.Open(pol); err == nil {
		t.Error("a closed registry opened a source")
	}
	if get(0) != nil {
		t.Error("a closed registry resolves")
	}
}

// TestRegistryOpenDoesNotWait: an identity provider that hangs does not
// hold Open (a reload) back; the key set is swapped in when it arrives.
func TestRegistryOpenDoesNotWait(t *testing.T) {
	release := make(chan struct{})
	body := jwksOf(t, key(t, "k1"))
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			_, _ = w.Write(body)
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	changes := make(chan struct{}, 10)
	reg := NewRegistry(context.Background())
	reg.OnChange = func() { changes <- struct{}{} }
	defer reg.Close()
	pol := registryPolicy(t, t.TempDir(), "jwks_url: "+hang.URL+"/jwks.json")
	start := time.Now()
	if err := reg.Open(pol); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("Open took %v while the endpoint hangs", d)
	}
	src := reg.Keys(&issuerN(pol, 0).KeyRef)
	if src == nil || len(src.Keys()) != 0 || src.Epoch() != 0 {
		t.Fatalf("before the first fetch: %v", src)
	}
	release <- struct{}{}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported after the endpoint answered")
	}
	if len(src.Keys()) != 1 || src.Epoch() == 0 {
		t.Fatalf("after the first fetch: %d keys, epoch %d", len(src.Keys()), src.Epoch())
	}
}

// TestRegistryKeepsOldKeysUntilNewArrive: when a reload changes an
// issuer's key settings, the issuer keeps its old keys until the new
// source has fetched, with an epoch of its own.
func TestRegistryKeepsOldKeysUntilNewArrive(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), jwksOf(t, key(t, "k1")))
	release := make(chan struct{})
	body := jwksOf(t, key(t, "k2"))
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			_, _ = w.Write(body)
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	reg := NewRegistry(context.Background())
	defer reg.Close()
	before := registryPolicy(t, dir, "jwks_file: a.json")
	if err := reg.Open(before); err != nil {
		t.Fatal(err)
	}
	after := registryPolicy(t, dir, "jwks_url: "+slow.URL+"/jwks.json")
	if err := reg.Open(after); err != nil {
		t.Fatal(err)
	}
	reg.Retain(after)
	src := reg.Keys(&issuerN(after, 0).KeyRef)
	if k := src.Keys(); len(k) != 1 || k[0].Kid != "k1" {
		t.Fatalf("while the new source fetches: %v, want the old k1", k)
	}
	old := src.Epoch()
	if old&fallbackEpoch == 0 {
		t.Errorf("fallback epoch %x is not marked", old)
	}
	close(release)
	waitFor(t, func() bool { k := src.Keys(); return len(k) == 1 && k[0].Kid == "k2" })
	if src.Epoch() == old {
		t.Error("the epoch did not move when the new keys arrived")
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
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
	pol, err := decision.LoadFile(filepath.Join(dir, "policy.yaml"), decision.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Open(pol); err != nil {
		t.Fatal(err)
	}
	eng, err := decision.NewEngine(pol, decision.Options{Keys: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	decide := func(tok string) decision.Decision {
		return eng.Decide(context.Background(), &decision.Request{Method: "GET", Path: "/orders", Authorization: "Bearer " + tok, AuthorizationCount: 1})
	}

	old := mint(t, key(t, "k1"), "orders:read")
	waitFor(t, func() bool { return decide(old).Code != decision.KeySetUnavailable })
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
