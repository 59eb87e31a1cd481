package examples_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/servertest/freeport"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
)

// scrapeOrdersFull runs scopegate serving orders-full.yaml on loopback,
// sends it requests over ext_authz (one allowed through the deprecated
// orders:v1, one with a scope beyond the client's grants, one straddling
// segments) and returns one scrape of its /metrics, read over HTTP.
func scrapeOrdersFull(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	base, conn := runServer(t, server.Config{
		PolicyPath: "orders-full.yaml",
		// An audit log and a revocation store, as in production, so
		// their metrics are exported too.
		Audit:      server.AuditConfig{Sinks: []audit.Sink{audit.NewWriterSink("discard", io.Discard)}},
		Revocation: server.RevocationConfig{Store: store.NewMemoryRevocations(nil)},
	})
	deadline := time.Now().Add(10 * time.Second)
	client := authv3.NewAuthorizationClient(conn)
	signer, err := decisiontest.ExampleSigner("ec")
	if err != nil {
		t.Fatal(err)
	}
	check := func(clientID, scope, method, path string, wantAllow bool) {
		t.Helper()
		claims := decisiontest.StandardClaims("https://id.example.com/", "orders-api", "alice", clientID, scope, time.Hour, time.Now())
		tok, err := signer.Mint(claims, map[string]any{"typ": "at+jwt"})
		if err != nil {
			t.Fatal(err)
		}
		if allowed, body := extAuthz(t, client, method, path, tok); allowed != wantAllow {
			t.Fatalf("%s [%s] %s %s: allowed %v (%s), want %v", clientID, scope, method, path, allowed, body, wantAllow)
		}
	}
	check("legacy-app", "orders:v1", "GET", "/orders/1", true)                    // deprecated scope in use
	check("web-app", "orders:write orders:v1", "GET", "/orders/1", false)         // beyond its grants: enforce
	check("admin-console", "admin:all orders:read", "GET", "/admin/users", false) // straddles admin and orders, and orders:read is not granted
	check("admin-console", "admin:all", "DELETE", "/admin/users/frida", true)     // observed by the shadow route admin-users-mfa

	// Shadow routes are evaluated after the answer is sent: scrape until
	// their outcome is counted.
	for {
		fams := scrape(t, base)
		if len(fams["scopegate_shadow_decisions_total"].GetMetric()) > 0 {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatal("the shadow route's decision was never counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// extAuthz sends one ext_authz check of method path with the bearer
// token tok and returns whether it was allowed, and the denial's body.
func extAuthz(t *testing.T, client authv3.AuthorizationClient, method, path, tok string) (bool, string) {
	t.Helper()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: map[string]string{"authorization": "Bearer " + tok}}},
	}}
	resp, err := client.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetStatus().GetCode() == 0, resp.GetDeniedResponse().GetBody()
}

// runServer runs scopegate with cfg (its gRPC and operator listeners on
// free loopback ports, the HTTP one off) until the test ends, waits until
// it is ready, and returns the operator listener's base URL and a gRPC
// client connection to it.
func runServer(t *testing.T, cfg server.Config) (string, *grpc.ClientConn) {
	t.Helper()
	grpcAddr, metricsAddr := freeport.Addr(t), freeport.Addr(t)
	cfg.GRPCAddr, cfg.MetricsAddr, cfg.DisableHTTP = grpcAddr, metricsAddr, true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	base := "http://" + metricsAddr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not become ready on %s: %v", metricsAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The operator listener starts before the gRPC one: wait for both.
	for {
		c, err := net.DialTimeout("tcp", grpcAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gRPC listener did not start on %s: %v", grpcAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return base, conn
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// scrapedLabels is the union of real scrapes as metric name → label
// names, histograms also under their _bucket, _sum and _count series.
func scrapedLabels(scrapes ...map[string]*dto.MetricFamily) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	add := func(name string, labels map[string]bool) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for k, v := range labels {
			out[name][k] = out[name][k] || v
		}
	}
	for _, fams := range scrapes {
		for name, f := range fams {
			labels := familyLabels(f)
			add(name, labels)
			if f.GetType() == dto.MetricType_HISTOGRAM {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					add(name+suffix, labels)
				}
				add(name+"_bucket", map[string]bool{"le": true})
			}
		}
	}
	return out
}

var (
	groupingRE = regexp.MustCompile(`\b(by|on|ignoring|without)\s*\(([^)]*)\)`)
	exprMetric = regexp.MustCompile(`\bscopegate_[a-z0-9_]+\b`)
)

// seriesLabels returns the label sets of a family's series (for a
// histogram, of its _bucket series too).
func familyLabels(f *dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			out[l.GetName()] = true
		}
	}
	return out
}

// series returns the series of name whose labels include want (pairs),
// label maps with their values.
func series(fams map[string]*dto.MetricFamily, name string, want ...string) []map[string]string {
	var out []map[string]string
	f := fams[name]
	if f == nil {
		return nil
	}
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
			labels["__value__"] = fmt.Sprint(m.GetCounter().GetValue())
		case m.Gauge != nil:
			labels["__value__"] = fmt.Sprint(m.GetGauge().GetValue())
		}
		out = append(out, labels)
	}
	return out
}

// checkRuleScraped checks that every metric rule r names is in the
// scrape fams with every label r matches, groups or joins on.
func checkRuleScraped(t *testing.T, r alertRule, fams map[string]*dto.MetricFamily) {
	t.Helper()
	// Labels Prometheus adds to every scraped series.
	added := map[string]bool{"instance": true, "job": true, "le": true}
	names := exprMetric.FindAllString(r.Expr, -1)
	var labelSets []map[string]bool
	for _, n := range names {
		base := n
		if strings.HasSuffix(n, "_bucket") {
			base = strings.TrimSuffix(n, "_bucket")
		}
		f := fams[base]
		if f == nil {
			if strings.HasSuffix(base, "_total") || base == n {
				t.Errorf("%s is not in the scrape", n)
			}
			continue
		}
		labelSets = append(labelSets, familyLabels(f))
		for _, m := range selectorRE.FindAllStringSubmatch(r.Expr, -1) {
			if m[1] != n {
				continue
			}
			for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
				if !familyLabels(f)[lm[1]] {
					t.Errorf("%s has no label %q in the scrape", n, lm[1])
				}
			}
		}
	}
	for _, g := range groupingRE.FindAllStringSubmatch(r.Expr, -1) {
		for _, l := range strings.Split(g[2], ",") {
			l = strings.TrimSpace(l)
			if l == "" || added[l] {
				continue
			}
			for i, ls := range labelSets {
				if !ls[l] {
					t.Errorf("%s (%s) groups on %q, which %s does not carry", r.Alert, g[1], l, names[i])
				}
			}
		}
	}
}

// TestAlertRulesAgainstARealScrape: against the /metrics of a running
// scopegate, every metric an alert names is scraped with every label the
// alert matches, groups or joins on; the deprecated-scope join finds the
// scope in use (evaluated 10 days before its sunset), and each drift alert
// has a series of its own kind.
func TestAlertRulesAgainstARealScrape(t *testing.T) {
	fams := scrapeOrdersFull(t)
	for _, r := range alertRules(t) {
		t.Run(r.Alert, func(t *testing.T) { checkRuleScraped(t, r, fams) })
	}

	// The deprecated-scope join: scopes used (counter > 0) and on (scope)
	// sunset - now < 30 days, now being 10 days before the sunset.
	used := map[string]bool{}
	for _, s := range series(fams, "scopegate_deprecated_scope_used_total") {
		if s["__value__"] != "0" {
			used[s["scope"]] = true
		}
	}
	sunset := time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)
	now := sunset.Add(-10 * 24 * time.Hour)
	var joined []string
	for _, s := range series(fams, "scopegate_scope_sunset_timestamp_seconds") {
		var ts float64
		fmt.Sscan(s["__value__"], &ts)
		if used[s["scope"]] && ts-float64(now.Unix()) < 30*86400 {
			joined = append(joined, s["scope"])
		}
	}
	if len(joined) != 1 || joined[0] != "orders:v1" {
		t.Errorf("ScopegateDeprecatedScopeInUse would return %q, want [orders:v1] (used %v)", joined, used)
	}
	if got := series(fams, "scopegate_drift_total", "kind", "extra_scope", "client", "web-app", "scope", "orders:v1", "mode", "enforce"); len(got) != 1 {
		t.Errorf("no extra_scope drift series for web-app orders:v1: %v", series(fams, "scopegate_drift_total"))
	}
	if got := series(fams, "scopegate_drift_total", "kind", "segment_straddle", "client", "admin-console", "segments", "orders+admin"); len(got) != 1 {
		t.Errorf("no segment_straddle drift series for admin-console: %v", series(fams, "scopegate_drift_total"))
	}
	for _, s := range series(fams, "scopegate_drift_total", "kind", "segment_straddle") {
		if s["scope"] != "" {
			t.Errorf("a straddle series names scope %q: the remedy is not a grant", s["scope"])
		}
	}
}
