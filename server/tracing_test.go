package server

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/server/authzen"
	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/bolt"
	"github.com/scopegate/scopegate/store/introspect/introspecttest"
)

// The caller's trace context used by the tracing tests.
const (
	testTraceID   = "4bf92f3577b34da6a3ce929d0e0e4736"
	testParentID  = "00f067aa0ba902b7"
	sampledParent = "00-" + testTraceID + "-" + testParentID + "-01"
	droppedParent = "00-" + testTraceID + "-" + testParentID + "-00"
)

// startTraced starts the e2e server with tracing into an in-memory
// exporter.
func startTraced(t *testing.T, tr Tracing) (*e2e, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr.Exporter = exp
	e := startE2E(t, func(c *Config) { c.Tracing = tr })
	return e, exp
}

// flushed returns the spans exported so far.
func flushed(t *testing.T, e *e2e, exp *tracetest.InMemoryExporter) tracetest.SpanStubs {
	t.Helper()
	if err := e.srv.funnel.tracing.tp.ForceFlush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return exp.GetSpans()
}

// named returns the spans called name, in the order they ended.
func named(spans tracetest.SpanStubs, name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func spanAttrs(s tracetest.SpanStub) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// TestTracingSpanPerCheck sends one check through each protocol with a
// sampled traceparent and finds one span per check, a child of the
// caller's span, with the documented attributes and without the token.
func TestTracingSpanPerCheck(t *testing.T) {
	e, exp := startTraced(t, Tracing{})
	ctx := ctxT(t)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)

	xreq := extAuthzRequest("GET", "/api/items/1", "Bearer "+good)
	xreq.Attributes.Request.Http.Headers["traceparent"] = sampledParent
	if resp, err := e.extauthz.Check(ctx, xreq); err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("ext_authz: %v %v", resp.GetStatus(), err)
	}
	if _, err := e.authorizer.Check(ctx, &scopegatev1.CheckRequest{Method: "DELETE", Path: "/api/items/1", Headers: map[string]string{"traceparent": sampledParent}}); err != nil {
		t.Fatal(err)
	}
	hreq := httptest.NewRequest("GET", "/api/items/2", nil)
	hreq.Header.Set("Authorization", "Bearer "+good)
	hreq.Header.Set("Traceparent", sampledParent)
	rec := httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(rec, hreq)
	if rec.Code != http.StatusOK {
		t.Fatalf("forward-auth: %d %s", rec.Code, rec.Body)
	}
	body := `{"subject":{"type":"user","id":"alice"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/api/items/3"}}`
	areq := httptest.NewRequest("POST", authzen.EvaluationPath, strings.NewReader(body))
	areq.Header.Set("Content-Type", "application/json")
	areq.Header.Set("Authorization", "Bearer "+good)
	areq.Header.Set("Traceparent", sampledParent)
	rec = httptest.NewRecorder()
	e.srv.HTTPHandler().ServeHTTP(rec, areq)
	if rec.Code != http.StatusOK {
		t.Fatalf("authzen: %d %s", rec.Code, rec.Body)
	}

	spans := flushed(t, e, exp)
	want := map[string]map[string]string{
		"ext_authz":  {AttrDecision: "allow", AttrReason: "ok", AttrRoute: "items-read", AttrClientID: "app"},
		"authorizer": {AttrDecision: "deny", AttrReason: "token_missing"},
		"http":       {AttrDecision: "allow", AttrReason: "ok", AttrRoute: "items-read", AttrClientID: "app"},
		"authzen":    {AttrDecision: "allow", AttrReason: "ok", AttrRoute: "items-read", AttrClientID: "app"},
	}
	if len(spans) != len(want) {
		t.Fatalf("%d spans, want %d: %+v", len(spans), len(want), spans)
	}
	version := e.srv.engine.Policy().Version
	for _, s := range spans {
		a := spanAttrs(s)
		w, ok := want[a[AttrAPI]]
		if !ok {
			t.Fatalf("span with api %q: %v", a[AttrAPI], a)
		}
		delete(want, a[AttrAPI])
		if s.Name != checkSpanName || s.SpanKind.String() != "server" {
			t.Errorf("%s: span %q kind %s", a[AttrAPI], s.Name, s.SpanKind)
		}
		if got := s.SpanContext.TraceID().String(); got != testTraceID {
			t.Errorf("%s: trace id %s, want the caller's %s", a[AttrAPI], got, testTraceID)
		}
		if got := s.Parent.SpanID().String(); got != testParentID || !s.Parent.IsRemote() {
			t.Errorf("%s: parent %s (remote %v), want the caller's span %s", a[AttrAPI], got, s.Parent.IsRemote(), testParentID)
		}
		w[AttrPolicyVersion] = version
		for k, v := range w {
			if a[k] != v {
				t.Errorf("%s: %s = %q, want %q", a[AttrAPI], k, a[k], v)
			}
		}
		if _, ok := w[AttrClientID]; !ok && a[AttrClientID] != "" {
			t.Errorf("%s: client id %q without a token", a[AttrAPI], a[AttrClientID])
		}
		for k, v := range a {
			if strings.Contains(v, good) || strings.Contains(v, "Bearer") {
				t.Errorf("%s: attribute %s carries the token", a[AttrAPI], k)
			}
		}
	}
}

// TestTracingSampling: a check is traced as the sampler and the caller's
// trace context say, and an untraced one starts no span.
func TestTracingSampling(t *testing.T) {
	for name, tc := range map[string]struct {
		tr      Tracing
		headers map[string]string
		traced  bool
	}{
		"sampled parent":                 {Tracing{}, map[string]string{"traceparent": sampledParent}, true},
		"unsampled parent":               {Tracing{}, map[string]string{"traceparent": droppedParent}, false},
		"no parent, always on":           {Tracing{}, nil, true},
		"no parent, ratio 0":             {Tracing{Sampler: "parentbased_traceidratio", SamplerArg: "0"}, nil, false},
		"sampled parent, ratio 0":        {Tracing{Sampler: "parentbased_traceidratio", SamplerArg: "0"}, map[string]string{"traceparent": sampledParent}, true},
		"traceidratio ignores parent":    {Tracing{Sampler: "traceidratio", SamplerArg: "0"}, map[string]string{"traceparent": sampledParent}, false},
		"traceidratio, unsampled parent": {Tracing{Sampler: "traceidratio", SamplerArg: "1"}, map[string]string{"traceparent": droppedParent}, true},
		"always_off":                     {Tracing{Sampler: "always_off"}, map[string]string{"traceparent": sampledParent}, false},
		"malformed traceparent":          {Tracing{Sampler: "parentbased_always_off"}, map[string]string{"traceparent": "00-xyz-01"}, false},
		"b3 single sampled":              {Tracing{Propagators: "b3"}, map[string]string{"b3": testTraceID + "-" + testParentID + "-1"}, true},
		"b3 single unsampled":            {Tracing{Propagators: "b3"}, map[string]string{"b3": testTraceID + "-" + testParentID + "-0"}, false},
		"b3 multi sampled":               {Tracing{Propagators: "b3multi"}, map[string]string{"x-b3-traceid": testTraceID, "x-b3-spanid": testParentID, "x-b3-sampled": "1"}, true},
		"b3 multi unsampled":             {Tracing{Propagators: "b3multi"}, map[string]string{"x-b3-traceid": testTraceID, "x-b3-spanid": testParentID, "x-b3-sampled": "0"}, false},
		"b3 not configured":              {Tracing{Sampler: "parentbased_always_off"}, map[string]string{"b3": testTraceID + "-" + testParentID + "-1"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			e, exp := startTraced(t, tc.tr)
			req := extAuthzRequest("GET", "/api/items/1", "")
			for k, v := range tc.headers {
				req.Attributes.Request.Http.Headers[k] = v
			}
			if _, err := e.extauthz.Check(ctxT(t), req); err != nil {
				t.Fatal(err)
			}
			spans := flushed(t, e, exp)
			if got := len(spans) == 1; got != tc.traced || len(spans) > 1 {
				t.Fatalf("%d spans, want traced=%v", len(spans), tc.traced)
			}
			if tc.traced && tc.headers != nil {
				if got := spans[0].SpanContext.TraceID().String(); got != testTraceID {
					t.Errorf("trace id %s, want the caller's %s", got, testTraceID)
				}
			}
		})
	}
}

// TestTracingRawHeaders reads the trace context from Envoy's header_map
// (encode_raw_headers).
func TestTracingRawHeaders(t *testing.T) {
	e, exp := startTraced(t, Tracing{Sampler: "parentbased_always_off"})
	req := extAuthzRequest("GET", "/api/items/1", "")
	req.Attributes.Request.Http.Headers = nil
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "traceparent", RawValue: []byte(sampledParent)}}}
	if _, err := e.extauthz.Check(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
	spans := flushed(t, e, exp)
	if len(spans) != 1 || spans[0].SpanContext.TraceID().String() != testTraceID {
		t.Fatalf("spans %+v, want one under the caller's trace", spans)
	}
}

// TestTracingUnsampledAllocatesNothing: a check that is not sampled costs
// the funnel no allocation, with or without the caller's trace context.
func TestTracingUnsampledAllocatesNothing(t *testing.T) {
	e, _ := startTraced(t, Tracing{Sampler: "parentbased_traceidratio", SamplerArg: "0", Propagators: "tracecontext,b3multi"})
	f := e.srv.funnel
	ctx := ctxT(t)
	for name, c := range map[string]carrier{
		"no parent, ext_authz":    {m: map[string]string{"authorization": "Bearer x"}},
		"unsampled, ext_authz":    {m: map[string]string{"traceparent": droppedParent}},
		"unsampled, http":         {h: http.Header{"Traceparent": {droppedParent}}},
		"b3 unsampled, ext_authz": {m: map[string]string{"x-b3-traceid": testTraceID, "x-b3-sampled": "0"}},
	} {
		var x exchange
		allocs := testing.AllocsPerRun(100, func() {
			x = exchange{}
			if got := f.begin(ctx, &x, apiEnvoy, c); got != ctx {
				t.Fatal("an unsampled check got a new context")
			}
		})
		if allocs != 0 || x.span != nil {
			t.Errorf("%s: %v allocations, span %v; want none", name, allocs, x.span)
		}
	}
}

// TestTracingConfigErrors: a setting the server cannot use is refused,
// naming the variable and the fix.
func TestTracingConfigErrors(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	for _, tc := range []struct {
		tr   Tracing
		want string
	}{
		{Tracing{Exporter: exp, SamplerArg: "1%", Sampler: "traceidratio"}, "OTEL_TRACES_SAMPLER_ARG"},
		{Tracing{Exporter: exp, Sampler: "jaeger_remote"}, "OTEL_TRACES_SAMPLER"},
		{Tracing{Exporter: exp, Propagators: "xray"}, "OTEL_PROPAGATORS"},
		{Tracing{Exporter: exp, ResourceAttributes: "novalue"}, "OTEL_RESOURCE_ATTRIBUTES"},
	} {
		cfg := Config{PolicyPath: "p.yaml", Tracing: tc.tr}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.tr, err, tc.want)
		}
	}
	cfg := Config{PolicyPath: "p.yaml", Tracing: Tracing{Exporter: exp, Sampler: "parentbased_traceidratio", SamplerArg: "0.01",
		ResourceAttributes: "deployment.environment=prod,team=a%2Cb", Propagators: "tracecontext,baggage,b3"}}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}
	attrs, _ := parseResourceAttributes("team=a%2Cb")
	if len(attrs) != 1 || attrs[0] != attribute.String("team", "a,b") {
		t.Errorf("resource attributes %v, want team=a,b", attrs)
	}
}

// BenchmarkTracingBegin is what tracing adds to a check that is not
// sampled: the funnel's begin, off and on, with and without the caller's
// unsampled trace context (the rest of the check is unchanged).
func BenchmarkTracingBegin(b *testing.B) {
	on, err := newTracing(Tracing{Exporter: tracetest.NewNoopExporter(), Sampler: "parentbased_traceidratio", SamplerArg: "0.01"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { on.shutdown(context.Background()) })
	headers := map[string]string{"authorization": "Bearer x", ":path": "/api/items/1", "user-agent": "curl", "x-request-id": "r1", "x-forwarded-proto": "https"}
	withParent := maps.Clone(headers)
	withParent["traceparent"] = droppedParent
	for _, bc := range []struct {
		name string
		tr   *tracing
		c    carrier
	}{
		{"off", nil, carrier{m: headers}},
		{"on-1pct-no-parent", on, carrier{m: headers}},
		{"on-unsampled-parent", on, carrier{m: withParent}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := &funnel{tracing: bc.tr}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				var x exchange
				f.begin(ctx, &x, apiEnvoy, bc.c)
				if x.span != nil {
					endSpan(&x)
				}
			}
		})
	}
}

// TestTracingOwnershipChildSpan: an ownership lookup that reaches the
// store is a child span of the check's; one answered by the cache is not.
func TestTracingOwnershipChildSpan(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PutOwners(context.Background(), "items", "7", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	e := startE2E(t, func(c *Config) { c.Ownership = db.Ownership(); c.Tracing = Tracing{Exporter: exp} })
	copyFile(t, "testdata/policy-owner.yaml", filepath.Join(e.dir, "policy.yaml"))
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	alice := mint(t, e.signer, "alice", "app", "items:write", time.Now(), time.Hour)
	for range 2 {
		req := extAuthzRequest("PUT", "/api/items/7", "Bearer "+alice)
		req.Attributes.Request.Http.Headers["traceparent"] = sampledParent
		if resp, err := e.extauthz.Check(ctxT(t), req); err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("owner: %v %v", resp.GetStatus(), err)
		}
		e.srv.ownersCache.Wait()
	}
	spans := flushed(t, e, exp)
	checks, lookups := named(spans, checkSpanName), named(spans, spanOwnership)
	if len(checks) != 2 || len(lookups) != 1 {
		t.Fatalf("%d check spans and %d lookup spans, want 2 and 1 (the second lookup is cached)", len(checks), len(lookups))
	}
	l := lookups[0]
	if l.Parent.SpanID() != checks[0].SpanContext.SpanID() || l.SpanContext.TraceID().String() != testTraceID {
		t.Errorf("lookup span's parent %s in trace %s, want the first check's span %s in %s", l.Parent.SpanID(), l.SpanContext.TraceID(), checks[0].SpanContext.SpanID(), testTraceID)
	}
	if a := spanAttrs(l); a[AttrLookup] != "items" || len(a) != 1 {
		t.Errorf("lookup span attributes %v, want only %s=items", a, AttrLookup)
	}
}

// TestTracingIntrospectionChildSpan: an opaque token sent to the issuer's
// introspection endpoint is a child span of the check's, without the
// token; a cached answer makes none.
func TestTracingIntrospectionChildSpan(t *testing.T) {
	t.Setenv(introspectSecretEnv, introspecttest.ClientSecret)
	as := introspecttest.New(decisiontest.JWKS(faultSigner(t, "k1")))
	t.Cleanup(as.Close)
	exp := tracetest.NewInMemoryExporter()
	f, err := startFaultServer(t, introspectionPolicy(as.Issuer()), func(c *Config) { c.Tracing = Tracing{Exporter: exp} })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := as.Mint(map[string]any{"scope": "orders:read", "client_id": "app", "sub": "alice", "aud": atkAudience,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": decisiontest.RandomID()})
	for range 2 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/check", nil)
		r.Header.Set("X-Original-Method", "GET")
		r.Header.Set("X-Original-URI", "/orders/1")
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Traceparent", sampledParent)
		f.srv.HTTPHandler().ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("forward-auth: %d %s", w.Code, w.Header().Get("X-Scopegate-Reason"))
		}
		f.srv.engine.WaitTokenCache()
	}
	if err := f.srv.funnel.tracing.tp.ForceFlush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	for _, s := range spans {
		for k, v := range spanAttrs(s) {
			if strings.Contains(v, tok) {
				t.Errorf("span %s: attribute %s carries the token", s.Name, k)
			}
		}
	}
	checks, calls := named(spans, checkSpanName), named(spans, spanIntrospection)
	if len(checks) != 2 || len(calls) != 1 {
		t.Fatalf("%d check spans and %d introspection spans, want 2 and 1 (the second answer is cached)", len(checks), len(calls))
	}
	if calls[0].Parent.SpanID() != checks[0].SpanContext.SpanID() {
		t.Errorf("introspection span's parent %s, want the first check's span %s", calls[0].Parent.SpanID(), checks[0].SpanContext.SpanID())
	}
}

// TestTracingRatioOnTraceID: a sampler that is not parent-based decides
// on the caller's trace id as the SDK's TraceIDRatioBased does, so every
// hop of a trace decides alike.
func TestTracingRatioOnTraceID(t *testing.T) {
	spec, err := parseSampler("traceidratio", "0.5")
	if err != nil {
		t.Fatal(err)
	}
	tr := &tracing{bound: uint64(spec.ratio * (1 << 63))}
	for low, want := range map[string]bool{"0000000000000001": true, "7fffffffffffffff": true, "8000000000000000": false, "ffffffffffffffff": false, "not-hex": false} {
		if got := tr.sample(parent{present: true, sampled: true, low: low}); got != want {
			t.Errorf("trace id low half %s: sampled %v, want %v", low, got, want)
		}
	}
}

// TestTracingAuditRecordLinksSpan: the audit record of a traced check
// names the check's own span (trace id and span id), so a record leads to
// its trace; an untraced check's record names none.
func TestTracingAuditRecordLinksSpan(t *testing.T) {
	sink := &auditSink{}
	exp := tracetest.NewInMemoryExporter()
	e := startE2E(t, func(c *Config) {
		c.Tracing = Tracing{Exporter: exp}
		c.Audit = AuditConfig{Sinks: []audit.Sink{sink}}
	})
	ctx := ctxT(t)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	for id, parent := range map[string]string{"traced": sampledParent, "untraced": droppedParent} {
		xreq := extAuthzRequest("GET", "/api/items/1", "Bearer "+good)
		xreq.Attributes.Request.Http.Headers["traceparent"] = parent
		xreq.Attributes.Request.Http.Headers["x-request-id"] = id
		if resp, err := e.extauthz.Check(ctx, xreq); err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("%s: %v %v", id, resp.GetStatus(), err)
		}
	}
	spans := named(flushed(t, e, exp), checkSpanName)
	if len(spans) != 1 {
		t.Fatalf("%d check spans, want 1 (the traced check's)", len(spans))
	}
	e.srv.Stop() // flushes the audit buffer
	byID := map[string]map[string]any{}
	for _, r := range sink.records(t) {
		id, _ := r["request_id"].(string)
		byID[id] = r
	}
	traced, untraced := byID["traced"], byID["untraced"]
	if traced == nil || untraced == nil {
		t.Fatalf("records: %v", byID)
	}
	if traced["trace_id"] != testTraceID || traced["span_id"] != spans[0].SpanContext.SpanID().String() {
		t.Errorf("traced record names trace %v span %v, want %s %s", traced["trace_id"], traced["span_id"], testTraceID, spans[0].SpanContext.SpanID())
	}
	if _, ok := untraced["trace_id"]; ok {
		t.Errorf("untraced record names a trace: %v", untraced)
	}
	if _, ok := untraced["span_id"]; ok {
		t.Errorf("untraced record names a span: %v", untraced)
	}
}
