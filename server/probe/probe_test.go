package probe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/policytest"
	"github.com/scopegate/scopegate/server/servertest"
)

const probePolicy = `issuers:
  - issuer: https://id.test/
    audiences: [api]
    jwks_file: jwks.json
    algorithms: [ES256]
routes:
  - name: read
    match: {methods: [GET], path: "/items/{id}"}
    require: {any_of: [items:read, items:admin]}
  - name: prod-only
    match: {methods: [GET], path: "/prod/{id}"}
    require: {all_of: [items:read]}
    when:
      environments: [prod]
      source_ip: {allow: [10.0.0.0/8]}
default: deny
`

// serve runs probePolicy on loopback (gRPC and HTTP) and returns the
// three targets and a signer the deployment trusts.
func serve(t *testing.T) (targets map[string]Target, signer *decisiontest.Signer) {
	t.Helper()
	dir := t.TempDir()
	signer, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"policy.yaml": []byte(probePolicy), "jwks.json": decisiontest.JWKS(signer)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addrs := servertest.Serve(t, filepath.Join(dir, "policy.yaml"), nil)
	targets = map[string]Target{}
	for api, opts := range map[string]Options{
		APIEnvoy:       {Address: "grpc://" + addrs.GRPC},
		APIScopegate:   {Address: addrs.GRPC, API: APIScopegate},
		APIForwardAuth: {Address: "http://" + addrs.HTTP + "/verify"},
	} {
		tg, err := Dial(opts)
		if err != nil {
			t.Fatal(err)
		}
		if tg.API() != api {
			t.Errorf("%s dials %s", opts.Address, tg.API())
		}
		targets[api] = tg
	}
	t.Cleanup(func() {
		for _, tg := range targets {
			tg.Close()
		}
	})
	return targets, signer
}

func bearer(t *testing.T, s *decisiontest.Signer, scope string) string {
	t.Helper()
	tok, err := s.Mint(decisiontest.StandardClaims("https://id.test/", "api", "alice", "app", scope, time.Hour, time.Now()), map[string]any{"typ": "at+jwt"})
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// TestTransportsReadTheAnswer: each transport carries the request and
// reads back every field its wire returns, for an allow and for a deny.
func TestTransportsReadTheAnswer(t *testing.T) {
	targets, signer := serve(t)
	allow := decision.Request{Method: "GET", Path: "/items/1", Authorization: bearer(t, signer, "items:read other"), AuthorizationCount: 1}
	deny := decision.Request{Method: "GET", Path: "/items/1", Authorization: bearer(t, signer, "other"), AuthorizationCount: 1}
	for api, want := range map[string]struct{ allow, deny policytest.Verdict }{
		APIEnvoy: {
			allow: policytest.Verdict{Allow: true, Reason: "ok", Status: 200, Route: "read", HasRoute: true, ScopesUsed: []string{"items:read"}, HasScopesUsed: true},
			deny:  policytest.Verdict{Reason: "insufficient_scope", Status: 403, Route: "read", HasRoute: true, HasMessage: true},
		},
		APIScopegate: {
			allow: policytest.Verdict{Allow: true, Reason: "ok", Status: 200, Route: "read", HasRoute: true, ScopesUsed: []string{"items:read"}, HasScopesUsed: true, HasMessage: true},
			deny:  policytest.Verdict{Reason: "insufficient_scope", Status: 403, Route: "read", HasRoute: true, HasScopesUsed: true, HasMessage: true},
		},
		APIForwardAuth: {
			allow: policytest.Verdict{Allow: true, Reason: "ok", Status: 200},
			deny:  policytest.Verdict{Reason: "insufficient_scope", Status: 403, Route: "read", HasRoute: true, HasMessage: true},
		},
	} {
		t.Run(api, func(t *testing.T) {
			for name, tc := range map[string]struct {
				req  decision.Request
				want policytest.Verdict
			}{"allow": {allow, want.allow}, "deny": {deny, want.deny}} {
				got, err := targets[api].Check(context.Background(), &tc.req)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if tc.want.HasMessage && !strings.Contains(got.Message, "scope") && !tc.want.Allow {
					t.Errorf("%s: message %q does not explain the deny", name, got.Message)
				}
				got.Message = ""
				if got.Allow != tc.want.Allow || got.Reason != tc.want.Reason || got.Status != tc.want.Status ||
					got.Route != tc.want.Route || got.HasRoute != tc.want.HasRoute ||
					!slices.Equal(got.ScopesUsed, tc.want.ScopesUsed) || got.HasScopesUsed != tc.want.HasScopesUsed || got.HasMessage != tc.want.HasMessage {
					t.Errorf("%s: got %+v\nwant %+v", name, got, tc.want)
				}
			}
		})
	}
}

// TestTransportsCarryContext: the environment and the client address
// reach the deployment over gRPC (both APIs); forward-auth refuses to
// carry them rather than send a request that means something else.
func TestTransportsCarryContext(t *testing.T) {
	targets, signer := serve(t)
	authz := bearer(t, signer, "items:read")
	prod := decision.Request{Method: "GET", Path: "/prod/1", Authorization: authz, AuthorizationCount: 1, Environment: "prod", SourceIP: netip.MustParseAddr("10.1.2.3")}
	staging, outside := prod, prod
	staging.Environment = "staging"
	outside.SourceIP = netip.MustParseAddr("192.0.2.1")
	for _, api := range []string{APIEnvoy, APIScopegate} {
		for _, tc := range []struct {
			name   string
			req    decision.Request
			reason string
		}{
			{"prod from inside", prod, "ok"},
			{"staging", staging, "environment_not_allowed"},
			{"from outside", outside, "source_ip_not_allowed"},
		} {
			if why := targets[api].Carries(&tc.req); why != "" {
				t.Fatalf("%s refuses %s: %s", api, tc.name, why)
			}
			got, err := targets[api].Check(context.Background(), &tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got.Reason != tc.reason {
				t.Errorf("%s, %s: reason %q, want %q", api, tc.name, got.Reason, tc.reason)
			}
		}
	}
	fa := targets[APIForwardAuth]
	for name, req := range map[string]decision.Request{
		"source_ip":          {SourceIP: netip.MustParseAddr("10.1.2.3")},
		"environment":        {Environment: "prod"},
		"attributes":         {Attributes: map[string]string{"tenant": "a"}},
		"client_certificate": {ClientCertificate: "-----BEGIN CERTIFICATE-----"},
		"X-Forwarded-For":    {ForwardedFor: "10.1.2.3"},
	} {
		if why := fa.Carries(&req); !strings.Contains(why, name) {
			t.Errorf("forward-auth carries %s: %q", name, why)
		}
	}
	if why := fa.Carries(&decision.Request{Method: "GET", Path: "/x", Host: "api.test", RequestID: "r1"}); why != "" {
		t.Errorf("forward-auth refuses a plain request: %s", why)
	}
	clash := decision.Request{Environment: "prod", Attributes: map[string]string{"environment": "dev"}}
	if why := targets[APIEnvoy].Carries(&clash); why == "" {
		t.Error("ext_authz carries an environment attribute that contradicts the environment")
	}
}

// TestDialRefuses: addresses and API choices that cannot work are
// refused with the fix.
func TestDialRefuses(t *testing.T) {
	for addr, want := range map[string]string{
		"":                    "--target is empty",
		"grpc://h:1/path":     "without a path",
		"h":                   "want host:port",
		"tcp://h:1":           `unknown scheme "tcp"`,
		"http://":             "is not a URL",
		"http://h:1/auth?x=1": "no query",
		"grpc://h:1 x":        `port "1 x"`,
		"h:0":                 `port "0"`,
	} {
		if _, err := Dial(Options{Address: addr}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Dial(%q) = %v, want %q", addr, err, want)
		}
	}
	if _, err := Dial(Options{Address: "h:1", API: "graphql"}); err == nil || !strings.Contains(err.Error(), "want envoy") {
		t.Errorf("unknown API: %v", err)
	}
	if _, err := Dial(Options{Address: "https://h/", API: APIScopegate}); err == nil || !strings.Contains(err.Error(), "forward-auth") {
		t.Errorf("http with a gRPC API: %v", err)
	}
}

// TestRedacted: a password in a forward-auth URL never reaches output or
// metric labels.
func TestRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"https://probe:s3cret@auth.example.com/check": "https://probe:xxxxx@auth.example.com/check",
		"grpc://scopegate:9191":                       "grpc://scopegate:9191",
		"scopegate:9191":                              "scopegate:9191",
	} {
		if got := Redacted(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("Redacted(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestForwardAuthSends: a forward-auth check carries the case's request
// in the headers the gateways send, X-Forwarded-Host even when empty (else
// scopegate would take this check's own Host, the deployment's address).
func TestForwardAuthSends(t *testing.T) {
	var got http.Header
	var method, path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, method, path = r.Header.Clone(), r.Method, r.URL.Path
		w.Header().Set("X-Scopegate-Reason", "ok")
	}))
	defer srv.Close()
	tg, err := Dial(Options{Address: srv.URL + "/verify"})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	v, err := tg.Check(context.Background(), &decision.Request{Method: "DELETE", Path: "/items/1?x=%2F", Authorization: "Bearer t", AuthorizationCount: 1, RequestID: "r1"})
	if err != nil || !v.Allow || v.Reason != "ok" || v.Status != 200 {
		t.Fatalf("verdict %+v, %v", v, err)
	}
	if method != http.MethodGet || path != "/verify" {
		t.Errorf("check request %s %s, want GET /verify", method, path)
	}
	for name, want := range map[string]string{
		"X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/items/1?x=%2F", "Authorization": "Bearer t", "X-Request-Id": "r1",
	} {
		if got.Get(name) != want {
			t.Errorf("%s = %q, want %q", name, got.Get(name), want)
		}
	}
	if v, ok := got["X-Forwarded-Host"]; !ok || len(v) != 1 || v[0] != "" {
		t.Errorf("X-Forwarded-Host = %q (sent %v), want one empty value", v, ok)
	}
}
