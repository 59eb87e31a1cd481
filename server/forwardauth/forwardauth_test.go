package forwardauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/envoy"
)

// checkReq builds a forward-auth check request as a proxy sends it: method
// and request-URI of the check itself, the peer, and header lines in order
// (a name may repeat).
func checkReq(method, target, remote string, kv ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func TestRequestFromHTTP(t *testing.T) {
	const peer = "127.0.0.1:40000"
	loop := netip.MustParseAddr("127.0.0.1")
	tests := map[string]struct {
		req     *http.Request
		opts    Options
		want    decision.Request
		invalid string
	}{
		"nginx auth_request": {
			// GET /check with no query; original method and URI in X-Original-*.
			req: checkReq("GET", "/check", peer,
				"X-Original-Method", "POST", "X-Original-URI", "/api/items?x=1&y=%2F",
				"Authorization", "Bearer t", "X-Forwarded-Host", "api.example",
				"X-Forwarded-For", "203.0.113.9, 127.0.0.1", "X-Request-Id", "rid"),
			want: decision.Request{Method: "POST", Path: "/api/items?x=1&y=%2F", Authorization: "Bearer t", AuthorizationCount: 1,
				SourceIP: loop, ForwardedFor: "203.0.113.9, 127.0.0.1", Host: "api.example", RequestID: "rid"},
		},
		"nginx setting both families alike": {
			req: checkReq("GET", "/check", peer,
				"X-Original-Method", "DELETE", "X-Original-URI", "/a", "X-Forwarded-Method", "DELETE", "X-Forwarded-Uri", "/a"),
			want: decision.Request{Method: "DELETE", Path: "/a", SourceIP: loop, Host: "example.com"},
		},
		"caddy forward_auth": {
			// GET /check plus the client's query; Host kept.
			req: checkReq("GET", "/check?x=1", peer,
				"X-Forwarded-Method", "PUT", "X-Forwarded-Uri", "/api/items/1?x=1", "Authorization", "Bearer t"),
			want: decision.Request{Method: "PUT", Path: "/api/items/1?x=1", Authorization: "Bearer t", AuthorizationCount: 1,
				SourceIP: loop, Host: "example.com"},
		},
		"traefik forwardAuth": {
			req: checkReq("GET", "/", "10.1.2.3:5555",
				"X-Forwarded-Method", "PATCH", "X-Forwarded-Uri", "/orders/7", "X-Forwarded-Proto", "https",
				"X-Forwarded-Host", "shop.example", "X-Forwarded-For", "198.51.100.4"),
			want: decision.Request{Method: "PATCH", Path: "/orders/7", SourceIP: netip.MustParseAddr("10.1.2.3"),
				ForwardedFor: "198.51.100.4", Host: "shop.example", Scheme: "https"},
		},
		"dpop proofs are counted, the scheme is the forwarded one": {
			req: checkReq("GET", "/", "10.1.2.3:5555",
				"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/orders/7", "X-Forwarded-Proto", "https",
				"Authorization", "DPoP t", "DPoP", "p1", "DPoP", "p2"),
			want: decision.Request{Method: "GET", Path: "/orders/7", SourceIP: netip.MustParseAddr("10.1.2.3"),
				Authorization: "DPoP t", AuthorizationCount: 1, DPoP: "p1", DPoPCount: 2, Host: "example.com", Scheme: "https"},
		},
		"a scheme list is no scheme": {
			req: checkReq("GET", "/", "10.1.2.3:5555",
				"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/orders/7", "X-Forwarded-Proto", "https,http"),
			want: decision.Request{Method: "GET", Path: "/orders/7", SourceIP: netip.MustParseAddr("10.1.2.3"), Host: "example.com"},
		},
		"envoy http mode: the request line is the original": {
			req: checkReq("DELETE", "/api/items/1?force=1", peer, "Authorization", "Bearer t"),
			want: decision.Request{Method: "DELETE", Path: "/api/items/1?force=1", Authorization: "Bearer t", AuthorizationCount: 1,
				SourceIP: loop, Host: "example.com"},
		},
		"envoy http mode with a path prefix": {
			req:  checkReq("POST", "/ext-authz/api/items/1?q", peer),
			opts: Options{PathPrefix: "/ext-authz"},
			want: decision.Request{Method: "POST", Path: "/api/items/1?q", SourceIP: loop, Host: "example.com"},
		},
		"envoy http mode: prefix and root path": {
			req:  checkReq("GET", "/ext-authz/", peer),
			opts: Options{PathPrefix: "/ext-authz"},
			want: decision.Request{Method: "GET", Path: "/", SourceIP: loop, Host: "example.com"},
		},
		"envoy http mode: bare prefix with query": {
			req:  checkReq("GET", "/ext-authz?a=b", peer),
			opts: Options{PathPrefix: "/ext-authz"},
			want: decision.Request{Method: "GET", Path: "/?a=b", SourceIP: loop, Host: "example.com"},
		},
		"path prefix missing": {
			req:     checkReq("GET", "/api/items/1", peer),
			opts:    Options{PathPrefix: "/ext-authz"},
			invalid: detailNoPathPrefix,
		},
		"path prefix is only a string prefix": {
			req:     checkReq("GET", "/ext-authzX/api", peer),
			opts:    Options{PathPrefix: "/ext-authz"},
			invalid: detailNoPathPrefix,
		},
		"forwarded uri wins over the prefix": {
			req:  checkReq("GET", "/check", peer, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/x"),
			opts: Options{PathPrefix: "/ext-authz"},
			want: decision.Request{Method: "GET", Path: "/x", SourceIP: loop, Host: "example.com"},
		},
		"two authorization headers are counted": {
			req: checkReq("GET", "/", peer, "Authorization", "Bearer a", "Authorization", "Bearer b"),
			want: decision.Request{Method: "GET", Path: "/", Authorization: "Bearer a", AuthorizationCount: 2,
				SourceIP: loop, Host: "example.com"},
		},
		"empty authorization header counts": {
			req:  checkReq("GET", "/", peer, "Authorization", ""),
			want: decision.Request{Method: "GET", Path: "/", AuthorizationCount: 1, SourceIP: loop, Host: "example.com"},
		},
		"x-forwarded-for lines are joined": {
			req:  checkReq("GET", "/", peer, "X-Forwarded-For", "198.51.100.1", "X-Forwarded-For", "10.0.0.2"),
			want: decision.Request{Method: "GET", Path: "/", ForwardedFor: "198.51.100.1, 10.0.0.2", SourceIP: loop, Host: "example.com"},
		},
		"ipv6 peer": {
			req:  checkReq("GET", "/", "[2001:db8::1]:443"),
			want: decision.Request{Method: "GET", Path: "/", SourceIP: netip.MustParseAddr("2001:db8::1"), Host: "example.com"},
		},
		"ipv4-mapped peer is unmapped": {
			req:  checkReq("GET", "/", "[::ffff:192.0.2.10]:443"),
			want: decision.Request{Method: "GET", Path: "/", SourceIP: netip.MustParseAddr("192.0.2.10"), Host: "example.com"},
		},
		"unix socket peer has no ip": {
			req:  checkReq("GET", "/", "@"),
			want: decision.Request{Method: "GET", Path: "/", Host: "example.com"},
		},
		"xfcc: the last element's cert": {
			req: checkReq("GET", "/", peer, "X-Forwarded-Client-Cert",
				`By=spiffe://a;Hash=aa;Cert="-----BEGIN%20CERTIFICATE-----%0AAAA",By=spiffe://b;Hash=bb;Subject="CN=x,O=y";Cert="-----BEGIN%20CERTIFICATE-----%0ABBB"`),
			want: decision.Request{Method: "GET", Path: "/", SourceIP: loop, Host: "example.com",
				ClientCertificate: "-----BEGIN%20CERTIFICATE-----%0ABBB"},
		},
		"rfc 9440 client-cert": {
			req:  checkReq("GET", "/", peer, "Client-Cert", " :MIIBdw==: "),
			want: decision.Request{Method: "GET", Path: "/", SourceIP: loop, Host: "example.com", ClientCertificate: ":MIIBdw==:"},
		},
		"both certificate headers": {
			req:     checkReq("GET", "/", peer, "Client-Cert", ":MIIB:", "X-Forwarded-Client-Cert", "Hash=aa"),
			invalid: detailBothCertHeaders,
		},
		"two client-cert headers": {
			req:     checkReq("GET", "/", peer, "Client-Cert", ":MIIB:", "Client-Cert", ":MIIC:"),
			invalid: detailManyCertHeaders,
		},
		"forged forwarded uri disagrees with nginx's": {
			// nginx sets X-Original-URI and passes a client's X-Forwarded-Uri through.
			req:     checkReq("GET", "/check", peer, "X-Original-Method", "GET", "X-Original-URI", "/admin/x", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/healthz"),
			invalid: detailURIConflict,
		},
		"forged method disagrees": {
			req:     checkReq("GET", "/check", peer, "X-Original-Method", "GET", "X-Forwarded-Method", "DELETE", "X-Forwarded-Uri", "/a"),
			invalid: detailMethodConflict,
		},
		"two forwarded uris": {
			req:     checkReq("GET", "/check", peer, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/a", "X-Forwarded-Uri", "/b"),
			invalid: detailManyURIs,
		},
		"two forwarded methods": {
			req:     checkReq("GET", "/check", peer, "X-Forwarded-Method", "GET", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/a"),
			invalid: detailManyMethods,
		},
		"uri without method": {
			// The check's own method (always GET in nginx and Caddy) must not stand in for the original.
			req:     checkReq("GET", "/check", peer, "X-Original-URI", "/a"),
			invalid: detailURIWithoutMethod,
		},
		"method without uri": {
			// The check's own path is the proxy's fixed auth path.
			req:     checkReq("GET", "/check", peer, "X-Forwarded-Method", "GET"),
			invalid: detailMethodWithoutURI,
		},
		"two forwarded hosts": {
			req:     checkReq("GET", "/", peer, "X-Forwarded-Host", "a", "X-Forwarded-Host", "b"),
			invalid: detailManyForwardedHost,
		},
		"empty forwarded uri stays empty": {
			req:  checkReq("GET", "/check", peer, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", ""),
			want: decision.Request{Method: "GET", SourceIP: loop, Host: "example.com"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := decision.Request{Method: "stale", Trace: &decision.Trace{}}
			invalid := RequestFromHTTP(tc.req, &tc.opts, &got)
			if invalid != tc.invalid {
				t.Fatalf("invalid = %q, want %q", invalid, tc.invalid)
			}
			if tc.invalid == "" && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("RequestFromHTTP:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRequestFromHTTPNeverReadsTheBody(t *testing.T) {
	body := &trapBody{}
	r := checkReq("POST", "/check", "127.0.0.1:1", "X-Original-Method", "POST", "X-Original-URI", "/a")
	r.Body = body
	var out decision.Request
	if invalid := RequestFromHTTP(r, nil, &out); invalid != "" || out.Path != "/a" {
		t.Fatalf("RequestFromHTTP = %q, %+v", invalid, out)
	}
	if body.read {
		t.Fatal("the body was read")
	}
}

type trapBody struct{ read bool }

func (b *trapBody) Read([]byte) (int, error) { b.read = true; return 0, nil }
func (b *trapBody) Close() error             { return nil }

func TestXFCCCertificate(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"empty":                    {"", ""},
		"one element, cert":        {`Hash=ab;Cert="C1"`, "C1"},
		"unquoted cert":            {`Cert=C1;Hash=ab`, "C1"},
		"hash only":                {`By=spiffe://x;Hash=0123`, "0123"},
		"last element wins":        {`Cert="C1",Cert="C2"`, "C2"},
		"last element lacks cert":  {`Cert="C1",Hash=h2`, "h2"},
		"quoted comma and semi":    {`Cert="C1",Subject="CN=a,O=b;c";Cert="C2"`, "C2"},
		"escaped quote in subject": {`Subject="a\",b";Cert="C3"`, "C3"},
		"case-insensitive keys":    {`cert="C4"`, "C4"},
		"spaces around pairs":      {`By=x ; Cert= "C5" `, "C5"},
		"no pairs":                 {`garbage`, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := XFCCCertificate(tc.in); got != tc.want {
				t.Errorf("XFCCCertificate(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestResponderAllow(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	read := decisiontest.Route(t, pol, "items-read")
	hr := NewResponder(envoy.NewResponder(envoy.ResponderOptions{}))
	tests := map[string]struct {
		d    decision.Decision
		want map[string]string
	}{
		"token": {
			d: decision.Decision{Allow: true, Route: read, Policy: pol,
				Token: &decision.Token{Subject: "alice", ClientID: "app", Scopes: []string{"items.read", "profile"}}},
			want: map[string]string{"X-Scopegate-Subject": "alice", "X-Scopegate-Client": "app", "X-Scopegate-Scopes": "items.read profile",
				"X-Scopegate-Reason": "ok", "Cache-Control": "no-store", "X-Envoy-Auth-Headers-To-Remove": "authorization"},
		},
		"public route: empty values, still sent": {
			d: decision.Decision{Allow: true, Route: decisiontest.Route(t, pol, "health"), Policy: pol},
			want: map[string]string{"X-Scopegate-Subject": "", "X-Scopegate-Client": "", "X-Scopegate-Scopes": "",
				"X-Scopegate-Reason": "ok", "Cache-Control": "no-store", "X-Envoy-Auth-Headers-To-Remove": "authorization"},
		},
		"no policy: default names, nothing stripped": {
			d: decision.Decision{Allow: true, Token: &decision.Token{Subject: "bob"}},
			want: map[string]string{"X-Scopegate-Subject": "bob", "X-Scopegate-Client": "", "X-Scopegate-Scopes": "",
				"X-Scopegate-Reason": "ok", "Cache-Control": "no-store"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			hr.Write(w, &tc.d)
			if w.Code != 200 {
				t.Fatalf("status %d, want 200", w.Code)
			}
			got := map[string]string{}
			for k, v := range w.Header() {
				if len(v) != 1 {
					t.Errorf("header %s has %d values", k, len(v))
				}
				got[k] = v[0]
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("headers\n got %v\nwant %v", got, tc.want)
			}
			if w.Body.Len() != 0 {
				t.Errorf("allow has a body: %q", w.Body.String())
			}
		})
	}
}

// TestResponderDenyMatchesExtAuthz checks that a forward-auth deny is
// the ext_authz deny: same status, reason, challenge and body.
func TestResponderDenyMatchesExtAuthz(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	read, write := decisiontest.Route(t, pol, "items-read"), decisiontest.Route(t, pol, "items-write")
	r := envoy.NewResponder(envoy.ResponderOptions{Realm: "api"})
	hr := NewResponder(r)
	tests := map[string]struct {
		d         decision.Decision
		status    int
		challenge string
	}{
		"token missing":       {decision.Decision{Code: decision.TokenMissing, Route: read, Policy: pol}, 401, `Bearer realm="api"`},
		"token expired":       {decision.Decision{Code: decision.TokenExpired, Route: read, Policy: pol}, 401, `Bearer realm="api", error="invalid_token", error_description="the bearer token has expired"`},
		"insufficient scope":  {decision.Decision{Code: decision.InsufficientScope, Detail: "lacks", Route: write, Policy: pol}, 403, `Bearer realm="api", error="insufficient_scope", scope="items.write admin editor", error_description="lacks"`},
		"request invalid":     {decision.Decision{Code: decision.RequestInvalid, Detail: detailURIConflict, Policy: pol}, 400, `Bearer realm="api", error="invalid_request", error_description="` + detailURIConflict + `"`},
		"path invalid":        {decision.Decision{Code: decision.PathInvalid, Detail: "bad", Policy: pol}, 400, ""},
		"no route":            {decision.Decision{Code: decision.NoRoute, Policy: pol}, 403, ""},
		"internal":            {decision.Decision{Code: decision.Internal, Detail: "no policy is loaded"}, 500, ""},
		"deny claiming ok":    {decision.Decision{Code: decision.OK, Policy: pol}, 500, ""},
		"out-of-range code":   {decision.Decision{Code: decision.Code(250), Policy: pol}, 500, ""},
		"source ip forbidden": {decision.Decision{Code: decision.SourceIPNotAllowed, Route: read, Policy: pol}, 403, ""},
		"key set unavailable": {decision.Decision{Code: decision.KeySetUnavailable, Route: read, Policy: pol}, 503, ""},
		"introspection down":  {decision.Decision{Code: decision.IntrospectionUnavailable, Route: read, Policy: pol}, 503, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for round := range 2 { // built, then cached
				w := httptest.NewRecorder()
				hr.Write(w, &tc.d)
				if w.Code != tc.status {
					t.Fatalf("round %d: status %d, want %d", round, w.Code, tc.status)
				}
				if got := w.Header().Get("Www-Authenticate"); got != tc.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
				}
				cr := r.Response(&tc.d)
				den := cr.GetDeniedResponse()
				if den == nil {
					den = cr.GetErrorResponse()
				}
				wantStatus := int(den.GetStatus().GetCode())
				if wantStatus == 0 {
					// An ext_authz error leaves the status to Envoy's
					// status_on_error; over HTTP it is the reason's own
					// 5xx (a deny claiming ok is an internal 500).
					wantStatus = max(tc.d.Code.HTTPStatus(), 500)
				}
				if wantStatus != w.Code || den.GetBody() != w.Body.String() {
					t.Errorf("ext_authz deny %d %q, forward-auth %d %q", den.GetStatus().GetCode(), den.GetBody(), w.Code, w.Body.String())
				}
				var body struct {
					Allow  bool   `json:"allow"`
					Reason string `json:"reason"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Allow || body.Reason != cr.GetStatus().GetMessage() {
					t.Errorf("body %q: %v", w.Body.String(), err)
				}
				if w.Header().Get("X-Scopegate-Reason") != body.Reason || w.Header().Get("Content-Type") != "application/json" ||
					w.Header().Get("Content-Length") != "" && w.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) {
					t.Errorf("headers %v", w.Header())
				}
				for _, h := range []string{"X-Scopegate-Subject", "X-Scopegate-Client", "X-Scopegate-Scopes"} {
					if _, ok := w.Header()[h]; ok {
						t.Errorf("a deny carries %s", h)
					}
				}
			}
		})
	}
}

// TestResponderReload checks that a deny cached under one policy is not
// served for another.
func TestResponderReload(t *testing.T) {
	p1, p2 := decisiontest.TranslatorPolicy(t), decisiontest.TranslatorPolicy(t)
	hr := NewResponder(nil)
	w := httptest.NewRecorder()
	hr.Write(w, &decision.Decision{Code: decision.NoRoute, Policy: p1})
	if hr.cache.Load().pol != p1 {
		t.Fatal("deny not cached under p1")
	}
	w = httptest.NewRecorder()
	hr.Write(w, &decision.Decision{Code: decision.TokenMissing, Route: decisiontest.Route(t, p2, "items-read"), Policy: p2})
	if c := hr.cache.Load(); c.pol != p2 || len(c.m) != 1 {
		t.Fatalf("cache after reload: policy %p (want %p), %d entries", c.pol, p2, len(c.m))
	}
	if w.Code != 401 {
		t.Fatalf("status %d", w.Code)
	}
}

// TestForwardAuthSparseRequestsAreDenied drives odd check requests through
// a real engine: each is denied with a reason, never a panic or a 2xx.
func TestForwardAuthSparseRequestsAreDenied(t *testing.T) {
	eng, err := decision.NewEngine(decisiontest.TranslatorPolicy(t), decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	hr := NewResponder(nil)
	tests := map[string]struct {
		req  *http.Request
		want int
	}{
		"no token":                {checkReq("GET", "/api/items/1", "127.0.0.1:1"), 401},
		"garbage token":           {checkReq("GET", "/api/items/1", "127.0.0.1:1", "Authorization", "Bearer x"), 401},
		"two tokens":              {checkReq("GET", "/api/items/1", "127.0.0.1:1", "Authorization", "Bearer a", "Authorization", "Bearer b"), 400},
		"unknown path":            {checkReq("GET", "/nope", "127.0.0.1:1"), 403},
		"empty forwarded uri":     {checkReq("GET", "/healthz", "127.0.0.1:1", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", ""), 400},
		"empty forwarded method":  {checkReq("GET", "/healthz", "127.0.0.1:1", "X-Forwarded-Method", "", "X-Forwarded-Uri", "/api/items/1"), 400},
		"dot segments to a route": {checkReq("GET", "/check", "127.0.0.1:1", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/healthz/../api/items/1"), 401},
		"encoded slash":           {checkReq("GET", "/check", "127.0.0.1:1", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/items/a%2F..%2F..%2Fhealthz"), 400},
		"forwarded uri is public but the check path is the own path": {
			checkReq("GET", "/healthz", "127.0.0.1:1", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/items/1"), 401},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var r decision.Request
			var d decision.Decision
			if invalid := RequestFromHTTP(tc.req, nil, &r); invalid != "" {
				d = decision.Decision{Code: decision.RequestInvalid, Detail: invalid, Policy: eng.Policy()}
			} else {
				d = eng.Decide(context.Background(), &r)
			}
			w := httptest.NewRecorder()
			hr.Write(w, &d)
			if w.Code != tc.want {
				t.Fatalf("status %d (%s: %s), want %d", w.Code, d.Code, d.Message(), tc.want)
			}
			if !strings.Contains(w.Body.String(), `"allow":false`) {
				t.Errorf("body %q", w.Body.String())
			}
		})
	}
}

// discardWriter is a ResponseWriter that reuses one header map, so a
// benchmark measures the responder, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteString(s string) (int, error) {
	return len(s), nil
}
func (w *discardWriter) WriteHeader(code int) { w.code = code }

func BenchmarkRequestFromHTTP(b *testing.B) {
	r := checkReq("GET", "/check", "127.0.0.1:40000", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/items/1",
		"Authorization", "Bearer abc.def.ghi", "X-Forwarded-For", "203.0.113.9", "X-Request-Id", "rid")
	var out decision.Request
	b.ReportAllocs()
	for b.Loop() {
		RequestFromHTTP(r, nil, &out)
	}
	if out.Path != "/api/items/1" {
		b.Fatal(out.Path)
	}
}

func BenchmarkResponderDeny(b *testing.B) {
	pol := decisiontest.TranslatorPolicy(b)
	d := decision.Decision{Code: decision.InsufficientScope, Detail: "lacks", Route: decisiontest.Route(b, pol, "items-write"), Policy: pol}
	hr := NewResponder(nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		hr.Write(w, &d)
	}
	if w.code != 403 {
		b.Fatal(w.code)
	}
}

func BenchmarkResponderAllow(b *testing.B) {
	pol := decisiontest.TranslatorPolicy(b)
	d := decision.Decision{Allow: true, Route: decisiontest.Route(b, pol, "items-read"), Policy: pol,
		Token: &decision.Token{Subject: "alice", ClientID: "app", Scopes: []string{"items.read"}}}
	hr := NewResponder(nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		hr.Write(w, &d)
	}
	if w.code != 200 {
		b.Fatal(w.code)
	}
}
