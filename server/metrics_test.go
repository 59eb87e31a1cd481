package server

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/decision"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// gathered is one scrape of a registry: family name → family.
type gathered map[string]*dto.MetricFamily

func gather(t testing.TB, g prometheus.Gatherer) gathered {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := gathered{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value returns the sum of the series of family name whose labels include
// want (label=value pairs), and whether there is one. Counters, gauges
// and histograms (their sample count) are read.
func (g gathered) value(name string, want ...string) (float64, bool) {
	f := g[name]
	if f == nil {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum, found = sum+m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			sum, found = sum+m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			sum, found = sum+float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return sum, found
}

func extAuthzRequest(method, path, authz string) *authv3.CheckRequest {
	h := map[string]string{}
	if authz != "" {
		h["authorization"] = authz
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: method, Path: path, Headers: h,
	}}}}
}

// TestMetricsDecisions sends decisions through both gRPC APIs and checks
// that each is counted once, under its result and reason, with its
// latency under its API, and that the token cache counts a miss then hits.
func TestMetricsDecisions(t *testing.T) {
	e := startE2E(t, nil)
	ctx := ctxT(t)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)

	for range 3 {
		resp, err := e.extauthz.Check(ctx, extAuthzRequest("GET", "/api/items/1", "Bearer "+good))
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("allow: %v %v", resp.GetStatus(), err)
		}
		e.srv.engine.WaitTokenCache()
	}
	if _, err := e.extauthz.Check(ctx, extAuthzRequest("GET", "/api/items/1", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.authorizer.Check(ctx, &scopegatev1.CheckRequest{Method: "POST", Path: "/api/items/1", Token: good}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.authorizer.Check(ctx, &scopegatev1.CheckRequest{Method: "GET", Path: "/nowhere", Token: good}); err != nil {
		t.Fatal(err)
	}

	g := gather(t, e.srv.Metrics().Registry())
	for name, tc := range map[string]struct {
		metric string
		labels []string
		want   float64
	}{
		"allows":               {metricDecisions, []string{"result", "allow", "reason", "ok"}, 3},
		"token missing":        {metricDecisions, []string{"result", "deny", "reason", "token_missing"}, 1},
		"insufficient scope":   {metricDecisions, []string{"result", "deny", "reason", "insufficient_scope"}, 1},
		"no route":             {metricDecisions, []string{"result", "deny", "reason", "no_route"}, 1},
		"internal (none)":      {metricDecisions, []string{"result", "deny", "reason", "internal"}, 0},
		"envoy latency":        {metricDecisionDuration, []string{"api", "envoy"}, 4},
		"scopegate latency":    {metricDecisionDuration, []string{"api", "scopegate"}, 2},
		"envoy decisions":      {metricDecisions, []string{"api", "envoy"}, 4},
		"scopegate decisions":  {metricDecisions, []string{"api", "scopegate"}, 2},
		"http latency (none)":  {metricDecisionDuration, []string{"api", "http"}, 0},
		"token cache misses":   {metricTokenCacheMisses, nil, 1},
		"token cache hits":     {metricTokenCacheHits, nil, 3},
		"policy info":          {metricPolicyInfo, []string{"version", e.srv.Engine().Policy().Version}, 1},
		"keys of the issuer":   {metricJWKSKeys, []string{"issuer", testIssuer, "source", "file"}, 1},
		"jwks failures (none)": {metricJWKSFailures, []string{"issuer", testIssuer, "source", "file"}, 0},
		"serving":              {metricServing, nil, 1},
		"reloads (none)":       {metricPolicyReloads, []string{"result", "success"}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := g.value(tc.metric, tc.labels...)
			if !ok {
				t.Fatalf("%s%v is not exported", tc.metric, tc.labels)
			}
			if got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	if age, ok := g.value(metricJWKSAge, "issuer", testIssuer); !ok || age < 0 || age > 60 {
		t.Errorf("%s = %v (exported %v), want a fresh key set", metricJWKSAge, age, ok)
	}
	if ts, ok := g.value(metricPolicyLastReload); !ok || time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("%s = %v, want the start time", metricPolicyLastReload, ts)
	}
	// Fed only by other components: absent until they are.
	for _, name := range []string{metricRevocationSyncAge, metricAuditDropped, metricOwnershipHits, metricScopeSunset} {
		if _, ok := g[name]; ok {
			t.Errorf("%s is exported before anything feeds it", name)
		}
	}
}

// TestMetricsFedByComponents checks the setters other components use, and
// the sunset date exported beside a deprecated scope in use.
func TestMetricsFedByComponents(t *testing.T) {
	e := startE2E(t, func(c *Config) {})
	copyFile(t, "testdata/policy-catalog.yaml", filepath.Join(e.dir, "policy.yaml"))
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	m := e.srv.Metrics()
	m.ObserveDrift("app", "items:write", "monitor")
	m.ObserveDrift("app", "items:write", "monitor")
	m.ObserveDeprecated("items:v1")
	m.ObserveDeprecated("unknown:scope")
	m.SetRevocationSyncAge(func() float64 { return 42 })
	m.AuditDropped(func(emit func(kind, reason string, n uint64)) {
		emit("deny", "caller_share", 7)
		emit("allow", "buffer_full", 3)
	})
	m.SetOwnershipStats(func() (uint64, uint64) { return 5, 2 })

	g := gather(t, m.Registry())
	sunset := time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		metric string
		labels []string
		want   float64
	}{
		"drift":            {metricDrift, []string{"client", "app", "scope", "items:write", "mode", "monitor"}, 2},
		"deprecated":       {metricDeprecatedUsed, []string{"scope", "items:v1"}, 1},
		"sunset":           {metricScopeSunset, []string{"scope", "items:v1"}, float64(sunset.Unix())},
		"revocation age":   {metricRevocationSyncAge, nil, 42},
		"audit dropped":    {metricAuditDropped, []string{"kind", "deny", "reason", "caller_share"}, 7},
		"allows dropped":   {metricAuditDropped, []string{"kind", "allow", "reason", "buffer_full"}, 3},
		"ownership hits":   {metricOwnershipHits, nil, 5},
		"ownership misses": {metricOwnershipMisses, nil, 2},
		"reload counted":   {metricPolicyReloads, []string{"result", "success"}, 1},
		"new version":      {metricPolicyInfo, []string{"version", e.srv.Engine().Policy().Version}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := g.value(tc.metric, tc.labels...)
			if !ok {
				t.Fatalf("%s%v is not exported", tc.metric, tc.labels)
			}
			if got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	if _, ok := g.value(metricScopeSunset, "scope", "unknown:scope"); ok {
		t.Error("a scope outside the catalog has a sunset series")
	}
	if n := len(g[metricPolicyInfo].GetMetric()); n != 1 {
		t.Errorf("%s has %d series after a reload, want only the policy in force", metricPolicyInfo, n)
	}
}

// TestMetricsNilSafe: handlers built without metrics (benchmarks, tests)
// and a nil *Metrics record nothing and do not panic.
func TestMetricsNilSafe(t *testing.T) {
	var m *Metrics
	d := decision.Decision{Code: decision.TokenMissing}
	m.observe(apiEnvoy, &d, time.Microsecond)
	m.policyReloaded(true)
	m.ObserveDrift("c", "s", "monitor")
	m.ObserveDeprecated("s")
	m.SetRevocationSyncAge(func() float64 { return 0 })
	m.AuditDropped(func(func(string, string, uint64)) {})
	m.SetOwnershipStats(func() (uint64, uint64) { return 0, 0 })
}

// TestMetricsEveryCodeCounted: every reason code, and a code outside the
// known range, lands on a deny series named by a known code.
func TestMetricsEveryCodeCounted(t *testing.T) {
	e := startE2E(t, nil)
	m := e.srv.Metrics()
	for _, c := range decision.Codes() {
		d := decision.Decision{Allow: c == decision.OK, Code: c}
		m.observe(apiHTTP, &d, time.Microsecond)
	}
	bogus := decision.Decision{Code: decision.Code(250)}
	m.observe(apiHTTP, &bogus, time.Microsecond)
	g := gather(t, m.Registry())
	for _, c := range decision.Codes() {
		result, want := "deny", 1.0
		switch c {
		case decision.OK:
			result = "allow"
		case decision.Internal:
			want = 2 // its own, and the unknown code
		}
		if got, _ := g.value(metricDecisions, "api", "http", "result", result, "reason", c.String()); got != want {
			t.Errorf("%s{result=%s,reason=%s} = %v, want %v", metricDecisions, result, c, got, want)
		}
	}
	if got, _ := g.value(metricDecisionDuration, "api", "http"); got != float64(len(decision.Codes())+1) {
		t.Errorf("http latency samples = %v, want %d", got, len(decision.Codes())+1)
	}
}

// startOpsT starts the operator listener of e's server on a free loopback
// port and returns its base URL.
func startOpsT(t *testing.T, s *Server) string {
	t.Helper()
	addr, err := s.listenOps("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr.String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOpsListener checks every path of the operator listener, pprof on.
func TestOpsListener(t *testing.T) {
	e := startE2E(t, func(c *Config) { c.Pprof = true })
	base := startOpsT(t, e.srv)
	for name, tc := range map[string]struct {
		path     string
		status   int
		contains string
	}{
		"metrics":        {"/metrics", 200, metricDecisions},
		"go runtime":     {"/metrics", 200, "go_goroutines"},
		"liveness":       {"/healthz", 200, "ok"},
		"readiness":      {"/readyz", 200, "SERVING"},
		"pprof index":    {"/debug/pprof/", 200, "goroutine"},
		"pprof cmdline":  {"/debug/pprof/cmdline", 200, ""},
		"pprof heap":     {"/debug/pprof/heap?debug=1", 200, "heap profile"},
		"unknown path":   {"/nothing", 404, ""},
		"no ext_authz":   {"/envoy.service.auth.v3.Authorization/Check", 404, ""},
		"pprof symbol":   {"/debug/pprof/symbol", 200, "num_symbols"},
		"metrics policy": {"/metrics", 200, `scopegate_policy_info{version="e2e+`},
	} {
		t.Run(name, func(t *testing.T) {
			status, body := httpGet(t, base+tc.path)
			if status != tc.status {
				t.Fatalf("GET %s: status %d, want %d: %.200s", tc.path, status, tc.status, body)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("GET %s: body lacks %q: %.300s", tc.path, tc.contains, body)
			}
		})
	}
}

// TestReadyzNotServing: readiness follows gRPC health. With an issuer that
// has no keys the server is NOT_SERVING and /readyz answers 503 (liveness
// stays 200); after Stop, the listener is closed.
func TestReadyzNotServing(t *testing.T) {
	e := startE2E(t, func(c *Config) {
		c.Keys = decision.StaticKeyResolver(decision.StaticKeys(nil))
	})
	base := startOpsT(t, e.srv)
	if st := e.srv.servingStatus(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status %v, want NOT_SERVING without keys", st)
	}
	if status, body := httpGet(t, base+"/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "NOT_SERVING") {
		t.Errorf("/readyz = %d %q, want 503 NOT_SERVING", status, body)
	}
	if status, _ := httpGet(t, base+"/healthz"); status != 200 {
		t.Errorf("/healthz = %d, want 200 while not ready", status)
	}
	g := gather(t, e.srv.Metrics().Registry())
	if v, _ := g.value(metricServing); v != 0 {
		t.Errorf("%s = %v, want 0", metricServing, v)
	}
	if v, ok := g.value(metricJWKSKeys, "issuer", testIssuer, "source", "static"); !ok || v != 0 {
		t.Errorf("%s = %v, want 0", metricJWKSKeys, v)
	}
	e.srv.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("the operator listener still answers after Stop")
	}
}

// BenchmarkExtAuthzObserved is BenchmarkExtAuthzHandler with metrics
// recorded, as the server runs it: the difference between the two is the
// cost of instrumentation on the decision path.
func BenchmarkExtAuthzObserved(b *testing.B) {
	e := startE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	x := &ExtAuthz{funnel: testFunnel(e.srv, e.srv.metrics, nil), responder: e.srv.responder}
	ctx := context.Background()
	for name, req := range map[string]*authv3.CheckRequest{
		"allow": extAuthzRequest("GET", "/api/items/1", "Bearer "+good),
		"deny":  extAuthzRequest("GET", "/api/items/1", ""),
	} {
		b.Run(name, func(b *testing.B) {
			want := name == "allow"
			if _, err := x.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
			e.srv.engine.WaitTokenCache()
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := x.Check(ctx, req)
				if (resp.GetStatus().GetCode() == 0) != want {
					b.Fatalf("unexpected verdict %v", resp.GetStatus())
				}
			}
		})
	}
}

// BenchmarkMetricsObserve is the instrumentation alone: one counter and
// one histogram observation per decision.
func BenchmarkMetricsObserve(b *testing.B) {
	m := newMetrics(nil, func() bool { return true })
	d := decision.Decision{Allow: true, Code: decision.OK}
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.observe(apiEnvoy, &d, time.Since(start))
	}
}

// TestMetricsFromDecisions sends real checks and finds the governance
// signals of their decisions in the metrics: monitored drift, a deprecated
// scope relied on, and the would-be outcome of a shadow route.
func TestMetricsFromDecisions(t *testing.T) {
	e := startE2E(t, nil)
	copyFile(t, "testdata/policy-governed.yaml", filepath.Join(e.dir, "policy.yaml"))
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	drifting := mint(t, e.signer, "alice", "app", "items:read items:write", time.Now(), time.Hour)
	deprecated := mint(t, e.signer, "bob", "app", "items:v1", time.Now(), time.Hour)
	for _, c := range []struct{ path, tok string }{
		{"/api/items/1", drifting},         // allowed, drift monitored: items:write was never granted
		{"/api/items/2", deprecated},       // allowed through items:v1, which is deprecated
		{"/api/items/special", deprecated}, // enforced by items-read; the shadow route would deny
	} {
		resp, err := e.extauthz.Check(ctx, extAuthzRequest("GET", c.path, "Bearer "+c.tok))
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("GET %s: %v %v, want allowed", c.path, resp.GetStatus(), err)
		}
	}
	// Shadow routes are evaluated after the answer is sent (funnel.go):
	// wait, boundedly, for their outcome to be counted.
	g := gather(t, e.srv.Metrics().Registry())
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if _, ok := g.value(metricShadow, "route", "items-read-strict"); ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
		g = gather(t, e.srv.Metrics().Registry())
	}
	for name, tc := range map[string]struct {
		metric string
		labels []string
		want   float64
	}{
		"drift":      {metricDrift, []string{"client", "app", "scope", "items:write", "mode", "monitor"}, 1},
		"deprecated": {metricDeprecatedUsed, []string{"scope", "items:v1"}, 2},
		"shadow":     {metricShadow, []string{"route", "items-read-strict", "result", "deny", "reason", "insufficient_scope"}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			if got, ok := g.value(tc.metric, tc.labels...); !ok || got != tc.want {
				t.Errorf("%s%v = %v (exported %v), want %v", tc.metric, tc.labels, got, ok, tc.want)
			}
		})
	}
}
