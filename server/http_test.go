package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server/authzen"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// httpE2E is startE2E plus the HTTP listener on its own loopback port.
type httpE2E struct {
	*e2e
	base   string // http://127.0.0.1:port
	client *http.Client
}

func startHTTPE2E(t testing.TB, edit func(*Config)) *httpE2E {
	t.Helper()
	e := startE2E(t, edit)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.ServeHTTPListener(lis) }()
	t.Cleanup(func() {
		// Runs before startE2E's cleanup: stop first, then collect.
		e.srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("ServeHTTPListener returned %v", err)
		}
	})
	return &httpE2E{e2e: e, base: "http://" + lis.Addr().String(), client: &http.Client{Timeout: 10 * time.Second}}
}

// do sends a request whose request-target is sent exactly as given (no
// cleaning of dot segments or escapes).
func (e *httpE2E) do(t *testing.T, method, target string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.base+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Forward-auth header styles: how each proxy tells scopegate the original
// request.
const (
	styleNginx   = "nginx"   // GET /check + X-Original-Method/URI
	styleCaddy   = "caddy"   // GET /check?<query> + X-Forwarded-Method/Uri
	styleTraefik = "traefik" // GET / + X-Forwarded-Method/Uri
	styleEnvoy   = "envoy"   // the original method, prefix + original path
)

const envoyPrefix = "/ext-authz"

func (e *httpE2E) viaForwardAuth(t *testing.T, c e2eCase, style string) verdict {
	t.Helper()
	var hdr []string
	if c.authz != "" {
		hdr = append(hdr, "Authorization", c.authz)
	}
	var resp *http.Response
	switch style {
	case styleNginx:
		resp = e.do(t, "GET", "/check", nil, append(hdr, "X-Original-Method", c.method, "X-Original-URI", c.path, "X-Forwarded-For", "10.0.0.7")...)
	case styleCaddy:
		q := ""
		if i := strings.IndexByte(c.path, '?'); i >= 0 {
			q = c.path[i:]
		}
		resp = e.do(t, "GET", "/check"+q, nil, append(hdr, "X-Forwarded-Method", c.method, "X-Forwarded-Uri", c.path, "X-Forwarded-For", "10.0.0.7")...)
	case styleTraefik:
		resp = e.do(t, "GET", "/", nil, append(hdr, "X-Forwarded-Method", c.method, "X-Forwarded-Uri", c.path, "X-Forwarded-Host", "api.test")...)
	case styleEnvoy:
		resp = e.do(t, c.method, envoyPrefix+c.path, nil, hdr...)
	}
	body := readBody(t, resp)
	v := verdict{allow: resp.StatusCode == 200, code: resp.Header.Get("X-Scopegate-Reason"), http: resp.StatusCode,
		challenge: resp.Header.Get("Www-Authenticate")}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Cache-Control %q", style, resp.Header.Get("Cache-Control"))
	}
	if v.allow {
		v.headers = map[string]string{}
		for _, h := range []string{"x-scopegate-subject", "x-scopegate-client", "x-scopegate-scopes"} {
			vals := resp.Header.Values(h)
			if len(vals) != 1 {
				t.Errorf("%s: allow carries %d %s headers, want exactly 1", style, len(vals), h)
				continue
			}
			v.headers[h] = vals[0]
		}
		if got := resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"); got != "authorization" {
			t.Errorf("%s: X-Envoy-Auth-Headers-To-Remove %q, want authorization (strip_authorization)", style, got)
		}
		if len(body) != 0 {
			t.Errorf("%s: allow has a body %q", style, body)
		}
		return v
	}
	var db struct {
		Allow  bool   `json:"allow"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &db); err != nil || db.Allow || db.Reason != v.code {
		t.Errorf("%s: deny body %q (%v), reason header %q", style, body, err, v.code)
	}
	return v
}

// viaAuthZEN asks the same question as an AuthZEN evaluation: the token as
// subject.properties.token (property) or as the call's Authorization
// header.
func (e *httpE2E) viaAuthZEN(t *testing.T, c e2eCase, property bool) verdict {
	t.Helper()
	subject := map[string]any{"type": "user", "id": ""}
	var hdr []string
	if property {
		tok, _ := strings.CutPrefix(c.authz, "Bearer ")
		subject["properties"] = map[string]any{"token": tok}
	} else if c.authz != "" {
		hdr = append(hdr, "Authorization", c.authz)
	}
	body, _ := json.Marshal(map[string]any{
		"subject":  subject,
		"action":   map[string]any{"name": c.method},
		"resource": map[string]any{"type": "http_path", "id": c.path},
	})
	resp := e.do(t, "POST", authzen.EvaluationPath, body, append(hdr, "Content-Type", "application/json")...)
	b := readBody(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("AuthZEN status %d: %s", resp.StatusCode, b)
	}
	var r authzen.Response
	if err := json.Unmarshal(b, &r); err != nil || r.Context == nil {
		t.Fatalf("AuthZEN response %s: %v", b, err)
	}
	return verdict{allow: r.Decision, code: r.Context.Reason, http: r.Context.HTTPStatus, challenge: r.Context.WWWAuthenticate}
}

// TestHTTPSameVerdict runs one case table through Envoy ext_authz (gRPC),
// HTTP forward-auth in every proxy's header style, and AuthZEN: each must
// give the same verdict, reason, status and challenge.
func TestHTTPSameVerdict(t *testing.T) {
	e := startHTTPE2E(t, func(c *Config) { c.HTTPPathPrefix = envoyPrefix })
	now := time.Now()
	good := mint(t, e.signer, "alice", "app", "items:read profile", now, time.Hour)
	readOnly := mint(t, e.signer, "bob", "app", "profile", now, time.Hour)
	forged := mint(t, e.other, "alice", "app", "items:read", now, time.Hour)
	expired := mint(t, e.signer, "alice", "app", "items:read", now.Add(-3*time.Hour), time.Hour)
	empty := map[string]string{"x-scopegate-subject": "", "x-scopegate-client": "", "x-scopegate-scopes": ""}

	tests := map[string]e2eCase{
		"allow": {method: "GET", path: "/api/items/42?expand=1", authz: "Bearer " + good, allow: true, code: decision.OK, http: 200,
			headers: map[string]string{"x-scopegate-subject": "alice", "x-scopegate-client": "app", "x-scopegate-scopes": "items:read profile"}},
		"no token": {method: "GET", path: "/api/items/42", code: decision.TokenMissing, http: 401,
			challenge: `Bearer realm="scopegate"`},
		"not bearer": {method: "GET", path: "/api/items/42", authz: "Basic YTpi", code: decision.TokenMissing, http: 401,
			challenge: `Bearer realm="scopegate"`},
		"bad signature": {method: "GET", path: "/api/items/42", authz: "Bearer " + forged, code: decision.TokenInvalid, http: 401,
			challenge: `Bearer realm="scopegate", error="invalid_token", error_description="…`},
		"expired": {method: "GET", path: "/api/items/42", authz: "Bearer " + expired, code: decision.TokenExpired, http: 401,
			challenge: `Bearer realm="scopegate", error="invalid_token", error_description="…`},
		"insufficient scope": {method: "GET", path: "/api/items/42", authz: "Bearer " + readOnly, code: decision.InsufficientScope, http: 403,
			challenge: `Bearer realm="scopegate", error="insufficient_scope", scope="items:read", error_description="…`},
		"write needs write scope": {method: "DELETE", path: "/api/items/42", authz: "Bearer " + good, code: decision.InsufficientScope, http: 403,
			challenge: `Bearer realm="scopegate", error="insufficient_scope", scope="items:write", error_description="…`},
		"no route":           {method: "GET", path: "/nope", authz: "Bearer " + good, code: decision.NoRoute, http: 403},
		"method not allowed": {method: "PATCH", path: "/api/items/42", authz: "Bearer " + good, code: decision.MethodNotAllowed, http: 403},
		"path invalid":       {method: "GET", path: "/api/items/a%2Fb", authz: "Bearer " + good, code: decision.PathInvalid, http: 400},
		"path above root":    {method: "GET", path: "/api/../../etc/passwd", code: decision.PathInvalid, http: 400},
		"dot segments":       {method: "GET", path: "/healthz/../api/items/1", code: decision.TokenMissing, http: 401, challenge: `Bearer realm="scopegate"`},
		// A raw '#' is not a fragment in a request-target: no protocol may cut
		// the path there and decide the public /healthz.
		"raw hash":            {method: "GET", path: "/healthz#/../api/items/1", code: decision.PathInvalid, http: 400},
		"raw hash with token": {method: "GET", path: "/healthz#/../api/items/1", authz: "Bearer " + readOnly, code: decision.PathInvalid, http: 400},
		"escaped literal":     {method: "GET", path: "/%68ealth%7A", allow: true, code: decision.OK, http: 200, headers: empty},
		"public route":        {method: "GET", path: "/healthz", allow: true, code: decision.OK, http: 200, headers: empty},
		"public route with forged token": {method: "GET", path: "/healthz", authz: "Bearer " + forged, allow: true, code: decision.OK, http: 200,
			headers: empty},
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			x := e.viaExtAuthz(t, c)
			c.check(t, "ext_authz", x)
			for _, style := range []string{styleNginx, styleCaddy, styleTraefik, styleEnvoy} {
				v := e.viaForwardAuth(t, c, style)
				c.check(t, "forward-auth "+style, v)
				if fmt.Sprint(v) != fmt.Sprint(x) {
					t.Errorf("forward-auth %s disagrees with ext_authz:\n http %+v\n grpc %+v", style, v, x)
				}
			}
			az := e.viaAuthZEN(t, c, false)
			xNoHeaders := x
			xNoHeaders.headers = nil
			if fmt.Sprint(az) != fmt.Sprint(xNoHeaders) {
				t.Errorf("AuthZEN (Authorization header) disagrees with ext_authz:\n authzen %+v\n grpc    %+v", az, xNoHeaders)
			}
			if strings.HasPrefix(c.authz, "Bearer ") {
				if azp := e.viaAuthZEN(t, c, true); fmt.Sprint(azp) != fmt.Sprint(xNoHeaders) {
					t.Errorf("AuthZEN (token property) disagrees with ext_authz:\n authzen %+v\n grpc    %+v", azp, xNoHeaders)
				}
			}
		})
	}
}

// TestHTTPRouting checks which requests the listener answers itself and
// which are forward-auth checks.
func TestHTTPRouting(t *testing.T) {
	e := startHTTPE2E(t, nil)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	evalBody := []byte(`{"subject":{"type":"user","id":"alice","properties":{"token":"` + good + `"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/api/items/1"}}`)
	tests := map[string]struct {
		method, target string
		body           []byte
		hdr            []string
		status         int
		reason         string // x-scopegate-reason; "" for an answer that is not a forward-auth decision
		bodyHas        string
	}{
		"healthz":       {method: "GET", target: "/healthz", status: 200, bodyHas: "ok"},
		"readyz":        {method: "GET", target: "/readyz", status: 200, bodyHas: "ok"},
		"healthz HEAD":  {method: "HEAD", target: "/healthz", status: 200},
		"metadata":      {method: "GET", target: "/.well-known/authzen-configuration", status: 200, bodyHas: `"access_evaluations_endpoint":"http://127.0.0.1:`},
		"authzen":       {method: "POST", target: "/access/v1/evaluation", body: evalBody, hdr: []string{"Content-Type", "application/json; charset=utf-8"}, status: 200, bodyHas: `"decision":true`},
		"authzen batch": {method: "POST", target: "/access/v1/evaluations", body: evalBody, hdr: []string{"Content-Type", "application/json"}, status: 200, bodyHas: `"decision":true`},
		// A forwarded URI makes any path a forward-auth check, reserved or not.
		"healthz with a forwarded uri": {method: "GET", target: "/healthz", hdr: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/items/1"}, status: 401, reason: "token_missing"},
		"authzen path with a forwarded uri": {method: "POST", target: "/access/v1/evaluation", body: evalBody,
			hdr: []string{"Content-Type", "application/json", "X-Original-Method", "GET", "X-Original-URI", "/nope"}, status: 403, reason: "no_route"},
		// AuthZEN needs POST and JSON: a POST without JSON is refused
		// with 415 and the fix; other methods are checked like any path.
		"authzen path without json":   {method: "POST", target: "/access/v1/evaluation", body: evalBody, hdr: []string{"Content-Type", "text/plain"}, status: 415},
		"authzen path with GET":       {method: "GET", target: "/access/v1/evaluations", status: 403, reason: "no_route"},
		"metadata with POST":          {method: "POST", target: "/.well-known/authzen-configuration", status: 403, reason: "no_route"},
		"other path: envoy http mode": {method: "GET", target: "/api/items/1", hdr: []string{"Authorization", "Bearer " + good}, status: 200, reason: "ok"},
		"body is never read": {method: "POST", target: "/check", body: []byte("x"), hdr: []string{"X-Original-Method", "POST", "X-Original-URI", "/api/items/1"},
			status: 401, reason: "token_missing"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := e.do(t, tc.method, tc.target, tc.body, tc.hdr...)
			b := readBody(t, resp)
			if resp.StatusCode != tc.status || resp.Header.Get("X-Scopegate-Reason") != tc.reason {
				t.Fatalf("status %d reason %q, want %d %q; body %s", resp.StatusCode, resp.Header.Get("X-Scopegate-Reason"), tc.status, tc.reason, b)
			}
			if !bytes.Contains(b, []byte(tc.bodyHas)) {
				t.Errorf("body %s lacks %s", b, tc.bodyHas)
			}
		})
	}
}

// TestHTTPPathPrefix checks Envoy's HTTP mode with a path prefix: every
// path under the prefix is a check, reserved names included.
func TestHTTPPathPrefix(t *testing.T) {
	e := startHTTPE2E(t, func(c *Config) { c.HTTPPathPrefix = envoyPrefix })
	tests := map[string]struct {
		method, target string
		status         int
		reason         string
	}{
		"public route under the prefix":    {"GET", envoyPrefix + "/healthz", 200, "ok"},
		"readyz under the prefix":          {"GET", envoyPrefix + "/readyz", 403, "no_route"},
		"protected route under the prefix": {"GET", envoyPrefix + "/api/items/1", 401, "token_missing"},
		"outside the prefix":               {"GET", "/api/items/1", 400, "request_invalid"},
		"own health outside the prefix":    {"GET", "/healthz", 200, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := e.do(t, tc.method, tc.target, nil)
			b := readBody(t, resp)
			if resp.StatusCode != tc.status || resp.Header.Get("X-Scopegate-Reason") != tc.reason {
				t.Fatalf("status %d reason %q, want %d %q; body %s", resp.StatusCode, resp.Header.Get("X-Scopegate-Reason"), tc.status, tc.reason, b)
			}
		})
	}
}

// TestHTTPSourceIP checks that the TCP peer and X-Forwarded-For reach the
// decision core's trusted_proxies walk: the proxy (loopback) is trusted,
// so the client is the address it appended.
func TestHTTPSourceIP(t *testing.T) {
	e := startHTTPE2E(t, func(c *Config) {
		pol := `version: ip
issuers:
  - issuer: https://issuer.test/
    audiences: [items-api]
    jwks_file: jwks.json
    algorithms: [ES256]
networks:
  office: [203.0.113.0/24]
trusted_proxies:
  cidrs: [127.0.0.0/8]
routes:
  - name: items-read
    match: {methods: [GET], path: "/api/items/{id}"}
    require: {all_of: [items:read]}
    when: {source_ip: {allow: [office]}}
default: deny
`
		if err := os.WriteFile(c.PolicyPath, []byte(pol), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	tests := map[string]struct {
		xff    []string
		status int
	}{
		"client in the office":          {[]string{"203.0.113.5"}, 200},
		"client outside":                {[]string{"198.51.100.5"}, 403},
		"forged left entry is not used": {[]string{"203.0.113.5, 198.51.100.5"}, 403},
		"two header lines":              {[]string{"198.51.100.5", "203.0.113.5"}, 200},
		"no x-forwarded-for":            {nil, 403},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hdr := []string{"Authorization", "Bearer " + good, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/items/1"}
			for _, v := range tc.xff {
				hdr = append(hdr, "X-Forwarded-For", v)
			}
			resp := e.do(t, "GET", "/check", nil, hdr...)
			b := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
		})
	}
}

func TestRunServesHTTP(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/policy.yaml", filepath.Join(dir, "policy.yaml"))
	s, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), decisiontest.JWKS(s), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := freeport.Addr(t), freeport.Addr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{PolicyPath: filepath.Join(dir, "policy.yaml"), GRPCAddr: grpcAddr, HTTPAddr: httpAddr, Logger: quietLogger(), ShutdownTimeout: time.Second})
	}()
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + httpAddr + "/api/items/1"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Run did not serve HTTP: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("X-Scopegate-Reason") != "token_missing" {
		t.Errorf("check = %d %q", resp.StatusCode, resp.Header.Get("X-Scopegate-Reason"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
		t.Error("the HTTP listener still answers after Run returned")
	}

	// A busy HTTP address is an error naming it.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = Run(context.Background(), Config{PolicyPath: filepath.Join(dir, "policy.yaml"), GRPCAddr: freeport.Addr(t), HTTPAddr: busy.Addr().String(), Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "HTTP listener") {
		t.Errorf("Run on a busy HTTP address = %v", err)
	}
}

func TestHTTPConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  Config
		want string
	}{
		"defaults":              {cfg: Config{PolicyPath: "p"}},
		"http addr and prefix":  {cfg: Config{PolicyPath: "p", HTTPAddr: "0.0.0.0:9192", HTTPPathPrefix: "/ext-authz"}},
		"disabled":              {cfg: Config{PolicyPath: "p", DisableHTTP: true}},
		"bad http addr":         {cfg: Config{PolicyPath: "p", HTTPAddr: "9192"}, want: "HTTPAddr"},
		"bad http port":         {cfg: Config{PolicyPath: "p", HTTPAddr: "127.0.0.1:x"}, want: "HTTPAddr"},
		"prefix without slash":  {cfg: Config{PolicyPath: "p", HTTPPathPrefix: "ext"}, want: "HTTPPathPrefix"},
		"prefix ending in /":    {cfg: Config{PolicyPath: "p", HTTPPathPrefix: "/ext/"}, want: "HTTPPathPrefix"},
		"prefix with a query":   {cfg: Config{PolicyPath: "p", HTTPPathPrefix: "/ext?a"}, want: "HTTPPathPrefix"},
		"prefix with an escape": {cfg: Config{PolicyPath: "p", HTTPPathPrefix: "/e%78t"}, want: "HTTPPathPrefix"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if d := (Config{PolicyPath: "p"}).withDefaults(); d.HTTPAddr != DefaultHTTPAddr {
		t.Errorf("default HTTPAddr %q", d.HTTPAddr)
	}
}

// discardWriter is a ResponseWriter that reuses one header map, so the
// benchmarks measure scopegate's share of a check, not net/http's.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header               { return w.h }
func (w *discardWriter) Write(b []byte) (int, error)       { return len(b), nil }
func (w *discardWriter) WriteString(s string) (int, error) { return len(s), nil }
func (w *discardWriter) WriteHeader(code int)              { w.code = code }

// BenchmarkForwardAuth is the server's own share of a forward-auth check,
// without the network: route the request, translate it, decide (cached
// token) and write the answer.
func BenchmarkForwardAuth(b *testing.B) {
	e := startE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	h := e.srv.HTTPHandler()
	newReq := func(authz string) *http.Request {
		r, err := http.NewRequest("GET", "http://127.0.0.1/check", nil)
		if err != nil {
			b.Fatal(err)
		}
		r.RequestURI, r.RemoteAddr = "/check", "127.0.0.1:40000"
		r.Header.Set("X-Forwarded-Method", "GET")
		r.Header.Set("X-Forwarded-Uri", "/api/items/1")
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		return r
	}
	for _, bc := range []struct {
		name string
		req  *http.Request
		want int
	}{
		{"allow", newReq("Bearer " + good), 200},
		{"deny", newReq(""), 401},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			h.ServeHTTP(w, bc.req)
			e.srv.engine.WaitTokenCache()
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, bc.req)
			}
			if w.code != bc.want {
				b.Fatalf("status %d, want %d", w.code, bc.want)
			}
		})
	}
}

// BenchmarkForwardAuthHTTP is one forward-auth check over loopback HTTP/1.1
// with keep-alive: the floor nginx or Caddy sees.
func BenchmarkForwardAuthHTTP(b *testing.B) {
	e := startHTTPE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	req, err := http.NewRequest("GET", e.base+"/check", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/api/items/1")
	req.Header.Set("Authorization", "Bearer "+good)
	benchHTTPAllows(b, e.client, req)
}

// benchHTTPAllows sends req in a loop, each answer read and checked to be
// a 200.
func benchHTTPAllows(b *testing.B, client *http.Client, req *http.Request) {
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkForwardAuthFloor is one forward-auth allow over loopback
// HTTP/1.1, client included, against the harness's floor (a no-op handler
// answering 200) and against a no-op handler that writes the same answer
// headers as scopegate's allow: the difference between the two floors is
// what the forward-auth contract's headers cost, the rest is scopegate's.
func BenchmarkForwardAuthFloor(b *testing.B) {
	e := startHTTPE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	newReq := func(base string) *http.Request {
		req, err := http.NewRequest("GET", base+"/_auth", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header = http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/items/1"},
			"X-Forwarded-Host": {"api.example.com"}, "X-Forwarded-Proto": {"https"}, "Authorization": {"Bearer " + good}}
		return req
	}
	resp, err := e.client.Do(newReq(e.base))
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("scopegate: %v %v", resp, err)
	}
	resp.Body.Close()
	allow := resp.Header.Clone()
	for _, h := range []string{"Date", "Content-Length"} {
		allow.Del(h) // net/http writes these for every handler
	}
	noop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	defer noop.Close()
	same := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range allow {
			w.Header()[k] = v
		}
		w.WriteHeader(200)
	}))
	defer same.Close()
	for _, bc := range []struct{ name, base string }{{"scopegate", e.base}, {"noop", noop.URL}, {"noop-same-headers", same.URL}} {
		b.Run(bc.name, func(b *testing.B) {
			req := newReq(bc.base)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			benchHTTPAllows(b, client, req)
		})
	}
}

// TestHTTPReadyz checks that /readyz follows the gRPC health status, while
// /healthz only says the process answers.
func TestHTTPReadyz(t *testing.T) {
	e := startE2E(t, nil)
	h := e.srv.HTTPHandler()
	get := func(path string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code
	}
	if got := get(ReadyzPath); got != 200 {
		t.Fatalf("readyz = %d while serving", got)
	}
	e.srv.health.Shutdown() // what Stop does first
	if got := get(ReadyzPath); got != 503 {
		t.Errorf("readyz = %d after shutdown began, want 503", got)
	}
	if got := get(HealthzPath); got != 200 {
		t.Errorf("healthz = %d, want 200", got)
	}
}

// TestHTTPReservedPathsAreLiteral checks that only the literal reserved
// paths are answered by the listener: an encoded spelling is a check.
func TestHTTPReservedPathsAreLiteral(t *testing.T) {
	e := startHTTPE2E(t, nil)
	for _, target := range []string{"/heal%74hz", "/healthz/", "//healthz", "/.well-known/authzen%2Dconfiguration"} {
		t.Run(target, func(t *testing.T) {
			resp := e.do(t, "GET", target, nil)
			readBody(t, resp)
			if resp.Header.Get("X-Scopegate-Reason") == "" {
				t.Errorf("%s was answered by the listener (%d), not checked", target, resp.StatusCode)
			}
		})
	}
}
