package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Real decisions feed the drift metric with the kind of drift apart: a
// scope beyond the grants is kind extra_scope with its scope, a straddle is
// kind segment_straddle with its segments and no scope (the scopes are
// granted; "add the grant" would be the wrong remedy). Scopes the policy
// does not declare share one label value, so tokens cannot grow series.
// The sunset of deprecated scopes is exported from the policy in force,
// with no scope observed, and follows a reload.
func TestMetricsGovernanceFromDecisions(t *testing.T) {
	e := startE2E(t, nil)
	policy := filepath.Join(e.dir, "policy.yaml")
	copyFile(t, "testdata/policy-governed-segments.yaml", policy)
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	g := gather(t, e.srv.Metrics().Registry())
	sunset := time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)
	if got, ok := g.value(metricScopeSunset, "scope", "items:v1", "status", "deprecated"); !ok || got != float64(sunset.Unix()) {
		t.Fatalf("%s{scope=items:v1} = %v (exported %v), want %d before any request", metricScopeSunset, got, ok, sunset.Unix())
	}
	if n := len(g[metricScopeSunset].GetMetric()); n != 1 {
		t.Errorf("%s has %d series, want 1 (only items:v1 has a sunset)", metricScopeSunset, n)
	}

	ctx := ctxT(t)
	toks := []string{
		"items:read billing:read",            // straddle only: both granted
		"items:read items:write",             // extra scope only
		"items:read invented:1 invented:2",   // two scopes outside the catalog
		"items:read invented:3 billing:read", // both kinds
	}
	for _, scope := range toks {
		tok := mint(t, e.signer, "alice", "app", scope, time.Now(), time.Hour)
		resp, err := e.extauthz.Check(ctx, extAuthzRequest("GET", "/api/items/1", "Bearer "+tok))
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("[%s]: %v %v, want allowed (monitor)", scope, resp.GetStatus(), err)
		}
	}
	g = gather(t, e.srv.Metrics().Registry())
	for name, tc := range map[string]struct {
		labels []string
		want   float64
	}{
		"straddle":        {[]string{"client", "app", "kind", "segment_straddle", "segments", "items+billing", "scope", "", "mode", "monitor"}, 2},
		"extra":           {[]string{"client", "app", "kind", "extra_scope", "scope", "items:write", "segments", "", "mode", "monitor"}, 1},
		"unknown scopes":  {[]string{"client", "app", "kind", "extra_scope", "scope", UnknownScopeLabel}, 3},
		"granted, listed": {[]string{"kind", "extra_scope", "scope", "billing:read"}, -1},
		"granted items":   {[]string{"kind", "extra_scope", "scope", "items:read"}, -1},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := g.value(metricDrift, tc.labels...)
			if tc.want < 0 {
				if ok {
					t.Errorf("%s%v = %v: a granted scope counted as beyond the grants", metricDrift, tc.labels, got)
				}
				return
			}
			if !ok || got != tc.want {
				t.Errorf("%s%v = %v (exported %v), want %v", metricDrift, tc.labels, got, ok, tc.want)
			}
		})
	}
	for _, m := range g[metricDrift].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "scope" && strings.HasPrefix(l.GetValue(), "invented") {
				t.Errorf("token-supplied scope %q became a label value", l.GetValue())
			}
		}
	}

	// A reload that moves the sunset moves the series.
	text, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policy, []byte(strings.Replace(string(text), "sunset: 2027-06-30", "sunset: 2027-09-30", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	g = gather(t, e.srv.Metrics().Registry())
	moved := time.Date(2027, 9, 30, 0, 0, 0, 0, time.UTC)
	if got, ok := g.value(metricScopeSunset, "scope", "items:v1"); !ok || got != float64(moved.Unix()) {
		t.Errorf("after reload %s{scope=items:v1} = %v (exported %v), want %d", metricScopeSunset, got, ok, moved.Unix())
	}
}

// An unregistered client's id comes from the token only: its drift is
// counted under one client label value.
func TestMetricsDriftUnregisteredClient(t *testing.T) {
	e := startE2E(t, nil)
	copyFile(t, "testdata/policy-governed-segments.yaml", filepath.Join(e.dir, "policy.yaml"))
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, client := range []string{"x1", "x2"} {
		tok := mint(t, e.signer, "alice", client, "items:read", time.Now(), time.Hour)
		if _, err := e.extauthz.Check(ctx, extAuthzRequest("GET", "/api/items/1", "Bearer "+tok)); err != nil {
			t.Fatal(err)
		}
	}
	g := gather(t, e.srv.Metrics().Registry())
	if got, ok := g.value(metricDrift, "client", UnknownClientLabel, "scope", "items:read"); !ok || got != 2 {
		t.Errorf("%s{client=%s} = %v (exported %v), want 2", metricDrift, UnknownClientLabel, got, ok)
	}
	if _, ok := g.value(metricDrift, "client", "x1"); ok {
		t.Error("an unregistered client id became a label value")
	}
}
