package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// Fault injection around the JWKS endpoint: down at start, down later,
// serving garbage, and rotating keys under load. Decisions must stay
// correct throughout: never an allow without a key the issuer publishes,
// and never a deny of a valid token while the last good key set stands.

// jwksEndpoint is an httptest JWKS server whose answer the test changes.
type jwksEndpoint struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	body   []byte
	hits   atomic.Int64
}

func newJWKSEndpoint(t testing.TB, body []byte) *jwksEndpoint {
	t.Helper()
	j := &jwksEndpoint{status: http.StatusOK, body: body}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.hits.Add(1)
		j.mu.Lock()
		status, body := j.status, j.body
		j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksEndpoint) serve(status int, body []byte) {
	j.mu.Lock()
	j.status, j.body = status, body
	j.mu.Unlock()
}

func (j *jwksEndpoint) url() string { return j.srv.URL + "/jwks.json" }

const faultRefresh = 300 * time.Millisecond

func faultPolicyYAML(jwksURL string) string {
	return fmt.Sprintf(`version: fault
issuers:
  - issuer: %s
    audiences: [%s]
    jwks_url: %s
    jwks_refresh_interval: %s
    jwks_min_refresh_interval: 100ms
    algorithms: [ES256]
routes:
  - name: orders-read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: health
    match: {methods: [GET], path: /healthz}
    public: true
default: deny
`, atkIssuer, atkAudience, jwksURL, faultRefresh)
}

// faultServer is a server on loopback with its handle.
type faultServer struct {
	srv    *Server
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
}

func startFaultServer(t testing.TB, policy string, edit func(*Config)) (*faultServer, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	// Tests decide at once: wait for the first key set (the default, 0,
	// starts without it; TestFaultJWKSDownAtStart tests that).
	cfg := Config{PolicyPath: path, Logger: atkLogger(), ShutdownTimeout: time.Second, KeyStartupTimeout: 10 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		return nil, err
	}
	f := &faultServer{srv: srv, conn: serveLoopback(t, srv)}
	f.client = authv3.NewAuthorizationClient(f.conn)
	return f, nil
}

func (f *faultServer) health(t testing.TB) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthpb.NewHealthClient(f.conn).Check(atkCtx(t), &healthpb.HealthCheckRequest{Service: ExtAuthzService})
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	return resp.GetStatus()
}

// decide sends GET path with tok and returns the reason code.
func (f *faultServer) decide(t testing.TB, path, tok string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := checkWithHeaders(map[string]string{"authorization": "Bearer " + tok})
	req.Attributes.Request.Http.Path = path
	resp, err := f.client.Check(ctx, req)
	if err != nil {
		t.Errorf("Check: RPC error %v", err)
		return "rpc-error"
	}
	if resp.GetStatus().GetCode() == 0 {
		return decision.OK.String()
	}
	return resp.GetStatus().GetMessage()
}

// metric returns the first sample of the metric called name.
func metric(t testing.TB, s *Server, name string) (float64, bool) {
	t.Helper()
	mfs, err := s.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func faultSigner(t testing.TB, kid string) *decisiontest.Signer {
	t.Helper()
	s, err := decisiontest.NewECSigner(kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func faultToken(t testing.TB, s *decisiontest.Signer) string {
	t.Helper()
	tok, err := s.Mint(decisiontest.StandardClaims(atkIssuer, atkAudience, "alice", "app", "orders:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestFaultJWKSDownAtStart: a JWKS endpoint that is down at start (refusing
// connections, answering 503, serving garbage, or hanging) leaves the
// server running NOT_SERVING, denying the issuer's tokens with
// key_set_unavailable, until the endpoint comes back; then it turns
// SERVING without a restart. With KeyStartupTimeout the server refuses to
// start instead, naming the endpoint and the cause.
func TestFaultJWKSDownAtStart(t *testing.T) {
	s := faultSigner(t, "k1")
	good := decisiontest.JWKS(s)
	downs := map[string]struct {
		set     func(j *jwksEndpoint)
		wantErr string // in the KeyStartupTimeout error
	}{
		"refuses connections": {set: nil, wantErr: "connect"},
		"answers 503":         {set: func(j *jwksEndpoint) { j.serve(http.StatusServiceUnavailable, []byte("down")) }, wantErr: "503"},
		"serves garbage":      {set: func(j *jwksEndpoint) { j.serve(http.StatusOK, []byte("<html>login</html>")) }, wantErr: "not a valid JWKS"},
	}
	for name, tc := range downs {
		// url returns the endpoint's URL and a function that brings it up.
		endpoint := func(t *testing.T) (string, func()) {
			if tc.set == nil {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := lis.Addr().String()
				lis.Close()
				return "http://" + addr + "/jwks.json", func() {
					l, err := net.Listen("tcp", addr)
					if err != nil {
						t.Skipf("cannot listen on %s again: %v", addr, err)
					}
					srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(good) })}
					go func() { _ = srv.Serve(l) }()
					t.Cleanup(func() { _ = srv.Close() })
				}
			}
			j := newJWKSEndpoint(t, good)
			tc.set(j)
			return j.url(), func() { j.serve(http.StatusOK, good) }
		}
		t.Run(name+": NOT_SERVING, then SERVING when it comes back", func(t *testing.T) {
			url, up := endpoint(t)
			start := time.Now()
			f, err := startFaultServer(t, faultPolicyYAML(url), func(c *Config) { c.KeyStartupTimeout = 0 })
			if err != nil {
				t.Fatalf("NewServer: %v (the server must start and wait for keys)", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("starting took %v: it must not wait for the endpoint", d)
			}
			if st := f.health(t); st != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("health %v while the endpoint is down, want NOT_SERVING", st)
			}
			if code := readyz(t, f.srv); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz = %d while the endpoint is down, want 503", code)
			}
			tok := faultToken(t, s)
			if code := f.decide(t, "/orders/1", tok); code != decision.KeySetUnavailable.String() {
				t.Errorf("a token while keys are unavailable = %s, want key_set_unavailable", code)
			}
			if code := f.decide(t, "/healthz", tok); code != decision.OK.String() {
				t.Errorf("public route = %s, want ok", code)
			}
			up()
			deadline := time.Now().Add(10 * time.Second)
			for f.health(t) != healthpb.HealthCheckResponse_SERVING {
				if time.Now().After(deadline) {
					t.Fatal("still NOT_SERVING 10s after the endpoint came back")
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("SERVING %v after start", time.Since(start).Round(time.Millisecond))
			if code := readyz(t, f.srv); code != http.StatusOK {
				t.Errorf("/readyz = %d once keys arrived, want 200", code)
			}
			if code := f.decide(t, "/orders/1", tok); code != decision.OK.String() {
				t.Errorf("decision once keys arrived = %s, want ok", code)
			}
		})
		t.Run(name+": with KeyStartupTimeout the server does not start", func(t *testing.T) {
			url, _ := endpoint(t)
			start := time.Now()
			_, err := startFaultServer(t, faultPolicyYAML(url), func(c *Config) { c.KeyStartupTimeout = 500 * time.Millisecond })
			if err == nil {
				t.Fatal("NewServer started without keys")
			}
			if !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "KeyStartupTimeout") {
				t.Errorf("error %q does not name the URL, the cause (%q) and the setting", err, tc.wantErr)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("failing took %v", d)
			}
		})
	}
	t.Run("key source with no keys yet: NOT_SERVING and fail closed", func(t *testing.T) {
		empty := &slowKeys{release: make(chan struct{})}
		close(empty.release)
		f, err := startFaultServer(t, faultPolicyYAML("https://unused.test/jwks.json"), func(c *Config) {
			c.Keys = decision.StaticKeyResolver(empty)
			c.KeyStartupTimeout = 0
		})
		if err != nil {
			t.Fatal(err)
		}
		if st := f.health(t); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health %v with no keys, want NOT_SERVING", st)
		}
		if v, ok := metric(t, f.srv, "scopegate_serving"); ok && v != 0 {
			t.Errorf("scopegate_serving = %v, want 0", v)
		}
		tok := faultToken(t, faultSigner(t, "k1"))
		if code := f.decide(t, "/orders/1", tok); code != decision.KeySetUnavailable.String() {
			t.Errorf("a token with no keys to check it = %s, want key_set_unavailable", code)
		}
		// Keys arrive: the next health evaluation turns SERVING.
		s := faultSigner(t, "k1")
		empty.keys.Store(&[]decision.Key{keyOf(s)})
		f.srv.updateHealth()
		if st := f.health(t); st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %v once keys arrived, want SERVING", st)
		}
		if code := f.decide(t, "/orders/1", faultToken(t, s)); code != decision.OK.String() {
			t.Errorf("decision once keys arrived = %s, want ok", code)
		}
	})
}

// TestFaultJWKSHangingReload: a reload that adds an issuer whose JWKS
// endpoint hangs returns at once; the old issuers keep deciding, the new
// one is denied key_set_unavailable until its keys arrive, and a reload
// that removes it stops its fetches.
func TestFaultJWKSHangingReload(t *testing.T) {
	s := faultSigner(t, "k1")
	j := newJWKSEndpoint(t, decisiontest.JWKS(s))
	release := make(chan struct{})
	var hangHits atomic.Int64
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hangHits.Add(1)
		select {
		case <-release:
			_, _ = w.Write(decisiontest.JWKS(s))
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	f, err := startFaultServer(t, faultPolicyYAML(j.url()), nil)
	if err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(faultPolicyYAML(j.url()), "routes:", `  - issuer: https://slow.example/
    audiences: [`+atkAudience+`]
    jwks_url: `+hang.URL+`/jwks.json
    algorithms: [ES256]
routes:`, 1)
	path := f.srv.cfg.PolicyPath
	if err := os.WriteFile(path, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := f.srv.ReloadFrom("test"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("reload with a hanging identity provider took %v", took)
	if took > time.Second {
		t.Errorf("reload took %v while the new issuer's endpoint hangs", took)
	}
	if code := f.decide(t, "/orders/1", faultToken(t, s)); code != decision.OK.String() {
		t.Errorf("existing issuer after the reload = %s, want ok", code)
	}
	slowTok, err := s.Mint(decisiontest.StandardClaims("https://slow.example/", atkAudience, "alice", "app", "orders:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := f.decide(t, "/orders/1", slowTok); code != decision.KeySetUnavailable.String() {
		t.Errorf("new issuer before its keys arrive = %s, want key_set_unavailable", code)
	}
	if st := f.health(t); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health %v with an issuer without keys, want NOT_SERVING", st)
	}
	// Removing the issuer stops its source.
	if err := os.WriteFile(path, []byte(faultPolicyYAML(j.url())), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.ReloadFrom("test"); err != nil {
		t.Fatal(err)
	}
	for _, st := range f.srv.registry.Statuses() {
		if strings.Contains(st.Location, hang.URL) {
			t.Errorf("the removed issuer's source still runs: %+v", st)
		}
	}
	if st := f.health(t); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health %v after removing the issuer without keys, want SERVING", st)
	}
}

// readyz returns the status /readyz answers.
func readyz(t testing.TB, s *Server) int {
	t.Helper()
	rec := httptest.NewRecorder()
	s.opsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code
}

// TestFaultJWKSDownLater breaks a JWKS endpoint in every way a server can
// while scopegate runs: the last good keys keep verifying, the age metric
// grows and failures are counted, and health stays SERVING.
func TestFaultJWKSDownLater(t *testing.T) {
	s := faultSigner(t, "k1")
	good := decisiontest.JWKS(s)
	j := newJWKSEndpoint(t, good)
	f, err := startFaultServer(t, faultPolicyYAML(j.url()), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := faultToken(t, s)
	attacker := faultToken(t, faultSigner(t, "k1"))
	if code := f.decide(t, "/orders/1", tok); code != "ok" {
		t.Fatalf("before the fault: %s", code)
	}
	bigKeys := strings.Repeat(" ", 1<<20+1)
	for _, fault := range []struct {
		name   string
		status int
		body   []byte
	}{
		{"503", http.StatusServiceUnavailable, []byte("unavailable")},
		{"404", http.StatusNotFound, nil},
		{"not json", http.StatusOK, []byte("<html>sign in</html>")},
		{"truncated json", http.StatusOK, good[:len(good)/2]},
		{"empty key set", http.StatusOK, []byte(`{"keys":[]}`)},
		{"symmetric key", http.StatusOK, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1"}]}`)},
		{"over 1 MiB", http.StatusOK, []byte(bigKeys)},
	} {
		t.Run(fault.name, func(t *testing.T) {
			failures0, _ := metric(t, f.srv, "scopegate_jwks_refresh_failures_total")
			hits := j.hits.Load()
			j.serve(fault.status, fault.body)
			waitFor(t, "two refetches", func() bool { return j.hits.Load() >= hits+2 })
			failures, _ := metric(t, f.srv, "scopegate_jwks_refresh_failures_total")
			if failures < failures0+1 {
				t.Errorf("refresh failures %v → %v: not counted", failures0, failures)
			}
			f.srv.Engine().PurgeTokenCache() // verify from the keys, not the cache
			if code := f.decide(t, "/orders/1", tok); code != "ok" {
				t.Errorf("valid token during the fault = %s, want ok (last good keys)", code)
			}
			if code := f.decide(t, "/orders/1", attacker); code == "ok" {
				t.Error("a forged token was allowed during the fault")
			}
			if st := f.health(t); st != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health %v during the fault, want SERVING on the last good keys", st)
			}
		})
	}
	age, ok := metric(t, f.srv, "scopegate_jwks_age_seconds")
	if !ok || age < 1 {
		t.Errorf("jwks age %v (present %v) after the faults, want it to grow past 1s", age, ok)
	}
	j.serve(http.StatusOK, good)
	waitFor(t, "the age to reset", func() bool { a, _ := metric(t, f.srv, "scopegate_jwks_age_seconds"); return a < age })
	if code := f.decide(t, "/orders/1", tok); code != "ok" {
		t.Errorf("after recovery: %s", code)
	}

	t.Run("endpoint gone", func(t *testing.T) {
		j.srv.Close() // connections refused from now on
		time.Sleep(2 * faultRefresh)
		f.srv.Engine().PurgeTokenCache()
		if code := f.decide(t, "/orders/1", tok); code != "ok" {
			t.Errorf("valid token with the endpoint gone = %s, want ok", code)
		}
		// An unknown kid triggers a refetch that fails fast, then denies.
		start := time.Now()
		if code := f.decide(t, "/orders/1", faultToken(t, faultSigner(t, "k9"))); code != decision.KeyNotFound.String() {
			t.Errorf("unknown kid with the endpoint gone = %s, want key_not_found", code)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("the unknown-kid refetch held the decision %v", d)
		}
	})
}

// TestFaultJWKSRotationUnderLoad rotates the issuer's keys while clients
// send checks: a token of a key published throughout is always allowed, a
// forged token never, and a rotated key's tokens are allowed or denied
// key_not_found, nothing else.
func TestFaultJWKSRotationUnderLoad(t *testing.T) {
	stable, a, b := faultSigner(t, "stable"), faultSigner(t, "a"), faultSigner(t, "b")
	j := newJWKSEndpoint(t, decisiontest.JWKS(stable, a))
	f, err := startFaultServer(t, faultPolicyYAML(j.url()), nil)
	if err != nil {
		t.Fatal(err)
	}
	tokStable, tokA, tokB := faultToken(t, stable), faultToken(t, a), faultToken(t, b)
	forgedStable := faultToken(t, faultSigner(t, "stable"))
	forgedB := faultToken(t, faultSigner(t, "b"))

	var wrong atomic.Int64
	var checks atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	report := func(what, code string) {
		if wrong.Add(1) <= 5 {
			t.Errorf("%s: %s", what, code)
		}
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				checks.Add(1)
				if c := f.decide(t, "/orders/1", tokStable); c != "ok" {
					report("token of the stable key", c)
				}
				if c := f.decide(t, "/orders/1", forgedStable); c == "ok" {
					report("forged token with the stable kid", c)
				}
				if c := f.decide(t, "/orders/1", forgedB); c == "ok" {
					report("forged token with the new kid", c)
				}
				for _, tk := range []string{tokA, tokB} {
					if c := f.decide(t, "/orders/1", tk); c != "ok" && c != decision.KeyNotFound.String() {
						report("rotated key's token", c)
					}
				}
			}
		})
	}
	phase := func(keys ...*decisiontest.Signer) {
		j.serve(http.StatusOK, decisiontest.JWKS(keys...))
		time.Sleep(3 * faultRefresh)
	}
	phase(stable, a, b) // b published beside a
	if c := f.decide(t, "/orders/1", tokB); c != "ok" {
		t.Errorf("new key's token after publication = %s", c)
	}
	phase(stable, b) // a retired
	if c := f.decide(t, "/orders/1", tokA); c != decision.KeyNotFound.String() {
		t.Errorf("retired key's token = %s, want key_not_found", c)
	}
	phase(stable, a, b) // and back
	close(stop)
	wg.Wait()
	if checks.Load() == 0 {
		t.Fatal("no load ran")
	}
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d wrong decisions in %d rounds", n, checks.Load())
	}
	t.Logf("%d rounds of 5 checks across 3 rotations, no wrong decision", checks.Load())
}
