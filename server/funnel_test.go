package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scopegate/scopegate/decision"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/audit"
)

// The funnel's promise, tested from outside: for every protocol, the reply
// a caller receives, the audit record and the metrics are the same
// decision, including requests refused for a limit and requests that ran
// past the check timeout.

// captureSink keeps every audit record it is given.
type captureSink struct {
	mu      sync.Mutex
	records []map[string]any
}

func (s *captureSink) Name() string { return "capture" }
func (s *captureSink) Write(_ context.Context, entries []audit.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		var m map[string]any
		if err := json.Unmarshal(e.JSON, &m); err != nil {
			return err
		}
		s.records = append(s.records, m)
	}
	return nil
}
func (s *captureSink) Flush(context.Context) error { return nil }
func (s *captureSink) Close(context.Context) error { return nil }

// byRequestID waits for the records carrying request id id and returns
// them once none more arrives for a moment.
func (s *captureSink) byRequestID(t *testing.T, id string) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var found []map[string]any
	for time.Now().Before(deadline) {
		s.mu.Lock()
		found = found[:0]
		for _, r := range s.records {
			if r["request_id"] == id {
				found = append(found, r)
			}
		}
		s.mu.Unlock()
		if len(found) > 0 {
			// Give a duplicate the chance to show up.
			time.Sleep(50 * time.Millisecond)
			s.mu.Lock()
			n := 0
			for _, r := range s.records {
				if r["request_id"] == id {
					n++
				}
			}
			s.mu.Unlock()
			if n == len(found) {
				return found
			}
			continue
		}
		time.Sleep(10 * time.Millisecond)
	}
	return found
}

// slowOwners is an ownership store that answers only when the lookup's
// context ends: a store that hangs.
type slowOwners struct{}

func (slowOwners) Owners(ctx context.Context, _, _ string) ([]string, bool, error) {
	<-ctx.Done()
	return nil, false, ctx.Err()
}

// scrape reads the /metrics exposition of e's server over HTTP.
func scrape(t *testing.T, e *httpE2E) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(e.srv.Metrics().Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// decisions returns scopegate_decisions_total{api,result,reason}.
func decisions(fams map[string]*dto.MetricFamily, api, result, reason string) float64 {
	return gathered(fams).sum(metricDecisions, "api", api, "result", result, "reason", reason)
}

func (g gathered) sum(name string, want ...string) float64 {
	v, _ := g.value(name, want...)
	return v
}

// funnelE2E is a server with both listeners, a capturing audit sink, a hung
// ownership store and the funnel test policy.
type funnelE2E struct {
	*httpE2E
	sink    *captureSink
	timeout time.Duration
	alice   string // token with items:read
}

const funnelMaxHeaders = 24

func startFunnelE2E(t *testing.T) *funnelE2E {
	t.Helper()
	f := &funnelE2E{sink: &captureSink{}, timeout: 300 * time.Millisecond}
	f.httpE2E = startHTTPE2E(t, func(c *Config) {
		copyFile(t, "testdata/policy-funnel.yaml", c.PolicyPath)
		c.Audit.Sinks = []audit.Sink{f.sink}
		c.Ownership = slowOwners{}
		c.CheckTimeout = f.timeout
		c.MaxRequestHeaders = funnelMaxHeaders
	})
	f.alice = mint(t, f.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	return f
}

// answer is what a caller learned, in the terms the tests compare.
type answer struct {
	allow  bool
	reason string
}

// protocol sends one request: method and path, the Authorization value
// ("" for none), extra headers (name, value pairs) and a request id.
type protocol struct {
	api      string // the metrics' api label
	auditAPI string // the audit record's api
	send     func(t *testing.T, f *funnelE2E, method, path, authz, id string, extra []string) answer
}

var funnelProtocols = []protocol{
	{"envoy", "ext_authz", func(t *testing.T, f *funnelE2E, method, path, authz, id string, extra []string) answer {
		h := map[string]string{"x-request-id": id}
		if authz != "" {
			h["authorization"] = authz
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[strings.ToLower(extra[i])] = extra[i+1]
		}
		resp, err := f.extauthz.Check(ctxT(t), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}}}})
		if err != nil {
			t.Fatalf("ext_authz Check: %v", err)
		}
		if resp.GetStatus().GetCode() == 0 {
			return answer{true, "ok"}
		}
		return answer{false, resp.GetStatus().GetMessage()}
	}},
	{"scopegate", "authorizer", func(t *testing.T, f *funnelE2E, method, path, authz, id string, extra []string) answer {
		h := map[string]string{}
		if authz != "" {
			h["authorization"] = authz
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		resp, err := f.authorizer.Check(ctxT(t), &scopegatev1.CheckRequest{Method: method, Path: path, Headers: h, RequestId: id})
		if err != nil {
			t.Fatalf("Authorizer Check: %v", err)
		}
		return answer{resp.GetAllow(), resp.GetReasons()[0].GetCode()}
	}},
	{"http", "http", func(t *testing.T, f *funnelE2E, method, path, authz, id string, extra []string) answer {
		hdr := []string{"X-Forwarded-Method", method, "X-Forwarded-Uri", path, "X-Request-Id", id}
		if authz != "" {
			hdr = append(hdr, "Authorization", authz)
		}
		resp := f.do(t, "GET", "/check", nil, append(hdr, extra...)...)
		body := string(readBody(t, resp))
		reason := resp.Header.Get("X-Scopegate-Reason")
		if resp.StatusCode != http.StatusOK {
			var b struct{ Reason string }
			if err := json.Unmarshal([]byte(body), &b); err != nil || b.Reason != reason {
				t.Fatalf("deny %d body %q does not carry the reason %q in-band", resp.StatusCode, body, reason)
			}
		}
		return answer{resp.StatusCode == http.StatusOK, reason}
	}},
	{"authzen", "authzen", func(t *testing.T, f *funnelE2E, method, path, authz, id string, extra []string) answer {
		body := `{"subject":{"type":"user","id":"alice"},"action":{"name":"` + method + `"},"resource":{"type":"http_path","id":"` + path + `"}}`
		hdr := []string{"Content-Type", "application/json", "X-Request-Id", id}
		if authz != "" {
			hdr = append(hdr, "Authorization", authz)
		}
		resp := f.do(t, "POST", "/access/v1/evaluation", []byte(body), append(hdr, extra...)...)
		return authzenAnswer(t, resp.StatusCode, string(readBody(t, resp)))
	}},
	{"authzen", "authzen", func(t *testing.T, f *funnelE2E, method, path, authz, id string, extra []string) answer {
		// The batch endpoint, one item.
		body := `{"subject":{"type":"user","id":"alice"},"evaluations":[{"action":{"name":"` + method + `"},"resource":{"type":"http_path","id":"` + path + `"}}]}`
		hdr := []string{"Content-Type", "application/json", "X-Request-Id", id}
		if authz != "" {
			hdr = append(hdr, "Authorization", authz)
		}
		resp := f.do(t, "POST", "/access/v1/evaluations", []byte(body), append(hdr, extra...)...)
		status, text := resp.StatusCode, string(readBody(t, resp))
		if status != http.StatusOK {
			return authzenAnswer(t, status, text)
		}
		var out struct {
			Evaluations []json.RawMessage
		}
		if err := json.Unmarshal([]byte(text), &out); err != nil || len(out.Evaluations) != 1 {
			t.Fatalf("batch answer %q", text)
		}
		return authzenAnswer(t, status, string(out.Evaluations[0]))
	}},
}

// authzenAnswer reads an evaluation answer or an AuthZEN error body.
func authzenAnswer(t *testing.T, status int, body string) answer {
	t.Helper()
	var v struct {
		Decision *bool
		Context  struct {
			Reason string
			Error  *struct{ Status int }
		}
		Status int
		Error  string
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("AuthZEN answer %d %q: %v", status, body, err)
	}
	if status != http.StatusOK {
		if v.Status != status || v.Error == "" {
			t.Fatalf("AuthZEN error %d %q is not in the error shape", status, body)
		}
		return answer{false, v.Error}
	}
	if v.Decision == nil {
		t.Fatalf("AuthZEN answer %q has no decision", body)
	}
	if v.Context.Error != nil && v.Context.Error.Status >= 500 {
		return answer{false, decision.Internal.String()}
	}
	return answer{*v.Decision, v.Context.Reason}
}

// TestFunnelEveryProtocolAgrees sends the same cases through every
// protocol and checks, for each, that the reply, the one audit record and
// the metric increment name the same verdict and reason.
func TestFunnelEveryProtocolAgrees(t *testing.T) {
	f := startFunnelE2E(t)
	many := make([]string, 0, 2*funnelMaxHeaders)
	for i := range funnelMaxHeaders {
		many = append(many, "X-Extra-"+strconv.Itoa(i), "v")
	}
	big := []string{"X-Pad", strings.Repeat("p", DefaultMaxRequestHeaderBytes)}
	cases := []struct {
		name         string
		method, path string
		authz        string
		extra        []string
		want         answer
		slow         bool // answered at the check timeout
	}{
		{name: "allow", method: "GET", path: "/api/items/1", authz: "Bearer " + f.alice, want: answer{true, "ok"}},
		{name: "no token", method: "GET", path: "/api/items/1", want: answer{false, "token_missing"}},
		{name: "no route", method: "GET", path: "/nowhere", authz: "Bearer " + f.alice, want: answer{false, "no_route"}},
		{name: "too many headers", method: "GET", path: "/api/items/1", authz: "Bearer " + f.alice, extra: many, want: answer{false, "request_invalid"}},
		{name: "headers too large", method: "GET", path: "/api/items/1", authz: "Bearer " + f.alice, extra: big, want: answer{false, "request_invalid"}},
		{name: "past the check timeout", method: "PUT", path: "/api/slow/", authz: "Bearer " + f.alice, want: answer{false, "internal"}, slow: true},
	}
	for pi, p := range funnelProtocols {
		for ci, tc := range cases {
			t.Run(p.api+strconv.Itoa(pi)+"/"+tc.name, func(t *testing.T) {
				id := "funnel-" + strconv.Itoa(pi) + "-" + strconv.Itoa(ci)
				result := "deny"
				if tc.want.allow {
					result = "allow"
				}
				before := decisions(scrape(t, f.httpE2E), p.api, result, tc.want.reason)
				path := tc.path
				if tc.slow {
					// A key of its own: an earlier lookup of the same key
					// still in flight would be joined, and end sooner.
					path += strconv.Itoa(pi)
				}
				start := time.Now()
				got := p.send(t, f, tc.method, path, tc.authz, id, tc.extra)
				took := time.Since(start)
				if got != tc.want {
					t.Fatalf("reply %+v, want %+v", got, tc.want)
				}
				if tc.slow && (took < f.timeout || took > f.timeout+2*time.Second) {
					t.Errorf("answered after %v, want about the check timeout %v", took, f.timeout)
				}
				recs := f.sink.byRequestID(t, id)
				if len(recs) != 1 {
					t.Fatalf("%d audit records for the request, want exactly 1: %v", len(recs), recs)
				}
				rec := recs[0]
				var reason string
				if reasons, ok := rec["reasons"].([]any); ok && len(reasons) == 1 {
					reason, _ = reasons[0].(string)
				}
				if rec["api"] != p.auditAPI || rec["decision"] != result || reason != tc.want.reason {
					t.Errorf("audit record api=%v decision=%v reason=%v, want %s %s %s (%v)", rec["api"], rec["decision"], reason, p.auditAPI, result, tc.want.reason, rec)
				}
				after := decisions(scrape(t, f.httpE2E), p.api, result, tc.want.reason)
				if after-before != 1 {
					t.Errorf("%s{api=%s,result=%s,reason=%s} moved by %v, want 1", metricDecisions, p.api, result, tc.want.reason, after-before)
				}
			})
		}
	}
	fams := scrape(t, f.httpE2E)
	for _, api := range []string{"envoy", "scopegate", "http", "authzen"} {
		if n := gathered(fams).sum(metricDecisionDuration, "api", api); n == 0 {
			t.Errorf("%s{api=%s} has no samples", metricDecisionDuration, api)
		}
	}
}

// TestFunnelShadowNeverDelays: a shadow route whose ownership lookup hangs
// neither changes nor delays the enforced allow, through every protocol;
// its would-be outcome reaches the audit record and the shadow metric
// afterwards.
func TestFunnelShadowNeverDelays(t *testing.T) {
	f := startFunnelE2E(t)
	for pi, p := range funnelProtocols {
		t.Run(p.api+strconv.Itoa(pi), func(t *testing.T) {
			id := "shadow-" + strconv.Itoa(pi)
			start := time.Now()
			got := p.send(t, f, "GET", "/api/audit/7", "Bearer "+f.alice, id, nil)
			if took := time.Since(start); took > f.timeout/2 {
				t.Errorf("the enforced answer took %v; the shadow lookup must not delay it", took)
			}
			if got != (answer{true, "ok"}) {
				t.Fatalf("reply %+v, want the enforced allow", got)
			}
			recs := f.sink.byRequestID(t, id)
			if len(recs) != 1 {
				t.Fatalf("%d audit records, want 1", len(recs))
			}
			sh, _ := recs[0]["shadow"].(map[string]any)
			if recs[0]["decision"] != "allow" || sh == nil || sh["route"] != "audit-owner" || !strings.Contains(strings.ToLower(string(mustJSON(t, sh))), "ownership_unavailable") {
				t.Errorf("audit record %v, want the allow with the shadow route's ownership_unavailable", recs[0])
			}
		})
	}
	if v := gathered(scrape(t, f.httpE2E)).sum(metricShadow, "route", "audit-owner", "result", "deny", "reason", "ownership_unavailable"); v != float64(len(funnelProtocols)) {
		t.Errorf("%s{route=audit-owner,deny,ownership_unavailable} = %v, want %d", metricShadow, v, len(funnelProtocols))
	}
}

// TestFunnelHTTPHeaderLimitsInBand: forward-auth headers over the limits
// are answered by the funnel in-band (400, JSON body, reason header), not
// by net/http's out-of-band 431; only past the ceiling (twice the limit)
// does net/http refuse a request unread.
func TestFunnelHTTPHeaderLimitsInBand(t *testing.T) {
	const limit = 4096
	e := startHTTPE2E(t, func(c *Config) { c.MaxRequestHeaderBytes = limit })
	check := func(pad int) *http.Response {
		return e.do(t, "GET", "/check", nil, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/items/1", "X-Pad", strings.Repeat("p", pad))
	}
	at := check(limit - 200)
	readBody(t, at)
	if at.Header.Get("X-Scopegate-Reason") != "token_missing" {
		t.Errorf("headers within the limit: reason %q, want the decision's token_missing", at.Header.Get("X-Scopegate-Reason"))
	}
	for _, pad := range []int{limit + 1, limit + limit/2, 2 * limit} {
		over := check(pad)
		body := string(readBody(t, over))
		if over.StatusCode != http.StatusBadRequest || over.Header.Get("X-Scopegate-Reason") != "request_invalid" || !strings.Contains(body, "max-request-header-bytes") {
			t.Errorf("pad %d: %d %q %q, want an in-band 400 request_invalid naming the limit", pad, over.StatusCode, over.Header.Get("X-Scopegate-Reason"), body)
		}
	}
	beyond := check(httpHeaderCeiling(limit) + 8<<10)
	readBody(t, beyond)
	if beyond.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers past the ceiling answered %d, want net/http's 431", beyond.StatusCode)
	}
}

// TestFunnelAuthZENBatchDeadline: the check timeout bounds a whole batch;
// items left when it passes are answered as internal errors, each counted
// and audited as such.
func TestFunnelAuthZENBatchDeadline(t *testing.T) {
	f := startFunnelE2E(t)
	items := `{"action":{"name":"PUT"},"resource":{"type":"http_path","id":"/api/slow/1"}},` +
		`{"action":{"name":"PUT"},"resource":{"type":"http_path","id":"/api/slow/2"}},` +
		`{"action":{"name":"GET"},"resource":{"type":"http_path","id":"/api/items/1"}}`
	body := `{"subject":{"type":"user","id":"alice"},"evaluations":[` + items + `]}`
	before := decisions(scrape(t, f.httpE2E), "authzen", "deny", "internal")
	start := time.Now()
	resp := f.do(t, "POST", "/access/v1/evaluations", []byte(body), "Content-Type", "application/json", "Authorization", "Bearer "+f.alice, "X-Request-Id", "batch-1")
	text := string(readBody(t, resp))
	if took := time.Since(start); took > f.timeout+time.Second {
		t.Errorf("the batch took %v, want it bounded by the check timeout %v", took, f.timeout)
	}
	var out struct{ Evaluations []json.RawMessage }
	if err := json.Unmarshal([]byte(text), &out); err != nil || len(out.Evaluations) != 3 {
		t.Fatalf("batch answer %d %q", resp.StatusCode, text)
	}
	for i, ev := range out.Evaluations {
		if got := authzenAnswer(t, 200, string(ev)); got != (answer{false, "internal"}) {
			t.Errorf("item %d = %+v, want internal", i, got)
		}
	}
	if recs := f.sink.byRequestID(t, "batch-1"); len(recs) != 3 {
		t.Errorf("%d audit records, want one per item (3)", len(recs))
	}
	if got := decisions(scrape(t, f.httpE2E), "authzen", "deny", "internal") - before; got != 3 {
		t.Errorf("internal AuthZEN decisions moved by %v, want 3", got)
	}
}
