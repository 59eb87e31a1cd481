package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/usage"
)

// auditSink keeps a copy of every record.
type auditSink struct {
	mu    sync.Mutex
	lines [][]byte
}

func (s *auditSink) Name() string { return "test" }
func (s *auditSink) Write(_ context.Context, es []audit.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		s.lines = append(s.lines, bytes.Clone(e.JSON))
	}
	return nil
}
func (s *auditSink) Flush(context.Context) error { return nil }
func (s *auditSink) Close(context.Context) error { return nil }

func (s *auditSink) records(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range s.lines {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("record is not JSON: %v: %s", err, l)
		}
		out = append(out, m)
	}
	return out
}

// TestAuditEveryAPI: each decision API writes one record naming it, the
// Authorizer's reply and its record share the decision id, Stop flushes,
// no record holds the token, and usage is aggregated.
func TestAuditEveryAPI(t *testing.T) {
	sink := &auditSink{}
	e := startE2E(t, func(c *Config) {
		c.Audit = AuditConfig{Sinks: []audit.Sink{sink}, Usage: true}
	})
	good := mint(t, e.signer, "alice", "app", "items:read items:write", time.Now(), time.Hour)
	ctx := ctxT(t)
	xreq := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/api/items/1?q=secretvalue", Headers: map[string]string{"authorization": "Bearer " + good, "x-request-id": "rid-1"},
	}}}}
	if resp, err := e.extauthz.Check(ctx, xreq); err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("ext_authz allow: %v %v", resp.GetStatus(), err)
	}
	areq := &scopegatev1.CheckRequest{Method: "DELETE", Path: "/api/items/1", RequestId: "rid-2"}
	aresp, err := e.authorizer.Check(ctx, areq)
	if err != nil || aresp.Allow {
		t.Fatalf("authorizer deny: %v %v", aresp, err)
	}
	hreq := httptest.NewRequest("GET", "/api/items/2", nil)
	hreq.Header.Set("Authorization", "Bearer "+good)
	hreq.Header.Set("X-Request-Id", "rid-3")
	rec := httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(rec, hreq)
	if rec.Code != http.StatusOK {
		t.Fatalf("forward-auth allow: %d %s", rec.Code, rec.Body)
	}

	agg := e.srv.UsageAggregator()
	if agg == nil || e.srv.AuditLog() == nil {
		t.Fatal("audit or usage not started")
	}
	e.srv.Stop() // flushes the audit buffer

	byID := map[string]map[string]any{}
	for _, r := range sink.records(t) {
		id, _ := r["request_id"].(string)
		byID[id] = r
	}
	cases := map[string]struct {
		api, decision, reason, path string
	}{
		"rid-1": {"ext_authz", "allow", "ok", "/api/items/1"},
		"rid-2": {"authorizer", "deny", "token_missing", "/api/items/1"},
		"rid-3": {"http", "allow", "ok", "/api/items/2"},
	}
	for id, want := range cases {
		r := byID[id]
		if r == nil {
			t.Errorf("no record for %s", id)
			continue
		}
		reasons, _ := r["reasons"].([]any)
		if r["api"] != want.api || r["decision"] != want.decision || len(reasons) != 1 || reasons[0] != want.reason || r["path"] != want.path {
			t.Errorf("%s: record %v, want %+v", id, r, want)
		}
	}
	if r := byID["rid-2"]; r != nil && r["decision_id"] != aresp.DecisionId {
		t.Errorf("authorizer record decision_id %v, reply %q", r["decision_id"], aresp.DecisionId)
	}
	for _, l := range sink.lines {
		if strings.Contains(string(l), good) || strings.Contains(string(l), "secretvalue") {
			t.Errorf("record leaks the token or a query value: %s", l)
		}
	}

	rep, err := agg.Report(context.Background(), usage.Query{ClientID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 1 {
		t.Fatalf("usage report %+v", rep)
	}
	got := map[string]usage.ScopeUsage{}
	for _, s := range rep[0].Scopes {
		got[s.Scope] = s
	}
	if s := got["items:read"]; s.Count != 2 || !s.Granted {
		t.Errorf("items:read usage %+v, want 2 uses", s)
	}
	if s := got["items:write"]; s.Used || !s.Granted {
		t.Errorf("items:write usage %+v, want granted, never used", s)
	}
}

func TestAuditConfigValidate(t *testing.T) {
	cases := map[string]struct {
		c   AuditConfig
		err string
	}{
		"zero":             {},
		"bad sample":       {c: AuditConfig{AllowSample: 2}, err: "AllowSample"},
		"store without on": {c: AuditConfig{UsageStore: nopUsageStore{}}, err: "Usage is off"},
		"bad interval":     {c: AuditConfig{Usage: true, UsageFlushInterval: -time.Second}, err: "FlushInterval"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := Config{PolicyPath: "p.yaml", Audit: c.c}
			err := cfg.Validate()
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("error %v, want one containing %q", err, c.err)
			}
		})
	}
}

type nopUsageStore struct{}

func (nopUsageStore) AddUsage(context.Context, []usage.Tally) error { return nil }
func (nopUsageStore) LoadUsage(context.Context, string) ([]usage.Tally, error) {
	return nil, nil
}
func (nopUsageStore) LoadDaily(context.Context, string, time.Time) ([]usage.Daily, error) {
	return nil, nil
}

// discardAuditSink accepts every record and keeps none.
type discardAuditSink struct{}

func (discardAuditSink) Name() string                               { return "discard" }
func (discardAuditSink) Write(context.Context, []audit.Entry) error { return nil }
func (discardAuditSink) Flush(context.Context) error                { return nil }
func (discardAuditSink) Close(context.Context) error                { return nil }

// BenchmarkExtAuthzHandlerAudit is BenchmarkExtAuthzHandler's allow with
// the audit log off, on (every allow written, to a sink that discards),
// and on with usage aggregation: the decision path's share of auditing.
func BenchmarkExtAuthzHandlerAudit(b *testing.B) {
	e := startE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer " + good},
	}}}}
	ctx := context.Background()
	for _, mode := range []string{"off", "on", "on+usage"} {
		b.Run(mode, func(b *testing.B) {
			x := &ExtAuthz{funnel: testFunnel(e.srv, nil, nil), responder: e.srv.responder}
			if mode != "off" {
				opts := audit.Options{Sinks: []audit.Sink{discardAuditSink{}}}
				if mode == "on+usage" {
					agg, err := usage.New(usage.Options{Policy: e.srv.engine.Policy})
					if err != nil {
						b.Fatal(err)
					}
					opts.Observer = agg
				}
				l, err := audit.New(opts)
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close(ctx)
				x.funnel.audit = l
			}
			if _, err := x.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
			e.srv.engine.WaitTokenCache()
			b.ReportAllocs()
			for b.Loop() {
				resp, _ := x.Check(ctx, req)
				if resp.GetStatus().GetCode() != 0 {
					b.Fatalf("unexpected verdict %v", resp.GetStatus())
				}
			}
			if x.funnel.audit != nil {
				b.ReportMetric(float64(x.funnel.audit.Stats().Dropped)/float64(b.N), "dropped/op")
			}
		})
	}
}
