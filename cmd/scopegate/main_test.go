package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// runCLI runs one command line in-process with stdin as standard input.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	code = c.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func examplePolicy(t *testing.T) string {
	t.Helper()
	p, err := decisiontest.ExamplePath("examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mint runs `scopegate token` with args and returns the token.
func mint(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := runCLI(t, "", append([]string{"token"}, args...)...)
	if code != exitOK {
		t.Fatalf("token %v: exit %d: %s", args, code, errs)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("token %v printed %q, not a compact JWS", args, out)
	}
	return tok
}

// jwsPart decodes the header (0) or payload (1) of a compact JWS.
func jwsPart(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

var spaces = regexp.MustCompile(` +`)

func TestCheck(t *testing.T) {
	pol := examplePolicy(t)
	read := mint(t, "--scope", "orders:read")
	cases := map[string]struct {
		args     []string
		stdin    string
		wantCode int
		wantOut  []string
		notOut   []string
	}{
		"allow rsa": {
			args:     []string{"--path", "/orders/42", "--token", read},
			wantCode: exitOK,
			wantOut:  []string{"ALLOW route=read-order scopes=orders:read subject=alice client=web-app\n"},
			notOut:   []string{read},
		},
		"allow ec": {
			args:     []string{"--path", "/orders", "--method", "POST", "--token", mint(t, "--key", "examples/keys/dev-ec.key.pem", "--scope", "orders:write", "--sub", "bob")},
			wantCode: exitOK,
			wantOut:  []string{"ALLOW route=create-order scopes=orders:write subject=bob"},
		},
		"allow ed25519 with Bearer prefix": {
			args:     []string{"--path", "/admin/users/7", "--method", "DELETE", "--token", "Bearer " + mint(t, "--key", "examples/keys/dev-ed25519.key.pem", "--scope", "admin:all")},
			wantCode: exitOK,
			wantOut:  []string{"ALLOW route=admin scopes=admin:all"},
		},
		"deny insufficient scope with explain": {
			args:     []string{"--method", "POST", "--path", "/orders", "--token", read, "--explain"},
			wantCode: exitDeny,
			wantOut: []string{
				"DENY insufficient_scope: ", "(route=create-order)\n",
				"1. path pass", "2. route pass", "3. token pass", "4. scopes fail",
			},
			notOut: []string{read},
		},
		"token from stdin": {
			args:     []string{"--path", "/orders/1", "--token", "-"},
			stdin:    read + "\n",
			wantCode: exitOK,
			wantOut:  []string{"ALLOW route=read-order"},
		},
		"no token": {
			args:     []string{"--path", "/orders/1"},
			wantCode: exitDeny,
			wantOut:  []string{"DENY token_missing: "},
		},
		"expired token": {
			args:     []string{"--path", "/orders/1", "--token", mint(t, "--scope", "orders:read", "--ttl", "-2h")},
			wantCode: exitDeny,
			wantOut:  []string{"DENY token_expired"},
		},
		"wrong audience": {
			args:     []string{"--path", "/orders/1", "--token", mint(t, "--scope", "orders:read", "--aud", "billing-api")},
			wantCode: exitDeny,
			wantOut:  []string{"DENY audience_mismatch"},
		},
		"public route needs no token": {
			args:     []string{"--path", "/healthz", "--explain"},
			wantCode: exitOK,
			wantOut:  []string{"ALLOW route=health public=true\n", "3. token skip the route is public"},
		},
		"no route": {
			args:     []string{"--path", "/nowhere", "--token", read},
			wantCode: exitDeny,
			wantOut:  []string{"DENY no_route: "},
			notOut:   []string{"(route="},
		},
		"method not allowed": {
			args:     []string{"--method", "PUT", "--path", "/orders/1", "--token", read},
			wantCode: exitDeny,
			wantOut:  []string{"DENY method_not_allowed"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.stdin, append([]string{"check", "--policy", pol}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errs)
			}
			// Trace columns are aligned with spaces; compare with runs of
			// spaces collapsed.
			flat := spaces.ReplaceAllString(out, " ")
			for _, w := range tc.wantOut {
				if !strings.Contains(flat, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(out+errs, w) {
					t.Errorf("output contains %q:\n%s%s", w, out, errs)
				}
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	tok := mint(t, "--scope", "orders:read")
	code, out, errs := runCLI(t, "", "check", "--policy", examplePolicy(t), "--method", "POST", "--path", "/orders", "--token", tok, "--json", "--explain")
	if code != exitDeny {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got decisionJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if got.Allow || got.Code != "insufficient_scope" || got.HTTPStatus != 403 || got.Route != "create-order" ||
		got.Subject != "alice" || got.ClientID != "web-app" || got.Issuer != "https://id.example.com/" || got.PolicyVersion == "" {
		t.Errorf("decision = %+v", got)
	}
	if !strings.Contains(got.WWWAuthenticate, `error="insufficient_scope"`) || !strings.Contains(got.WWWAuthenticate, `scope="orders:write"`) {
		t.Errorf("www_authenticate = %q", got.WWWAuthenticate)
	}
	if len(got.Trace) < 4 || got.Trace[len(got.Trace)-1].Check != "scopes" || got.Trace[len(got.Trace)-1].Result != "fail" {
		t.Errorf("trace = %+v", got.Trace)
	}
	// A deny shows the governance of the scopes the route requires.
	if len(got.Governance) != 1 || got.Governance[0].Scope != "orders:write" || !got.Governance[0].Missing ||
		got.Governance[0].Catalog == nil || got.Governance[0].Segment == nil || len(got.Governance[0].Grants) == 0 {
		t.Errorf("governance = %+v", got.Governance)
	}
	if strings.Contains(out, tok) {
		t.Error("the JSON echoes the token")
	}
}

func TestCheckBadPolicy(t *testing.T) {
	cases := map[string]struct {
		policy    string
		wantLines []string
	}{
		"every problem is listed": {
			policy: "testdata/bad-policy.yaml",
			wantLines: []string{
				"the policy has 3 error(s):",
				"bad-policy.yaml:8: routes[0].match.path",
				"bad-policy.yaml:11: routes[1].name",
				"bad-policy.yaml:14: default",
			},
		},
		"missing file": {
			policy:    "testdata/no-such-policy.yaml",
			wantLines: []string{"no-such-policy.yaml", "cannot read"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(t, "", "check", "--policy", tc.policy, "--path", "/orders/1")
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, out, errs)
			}
			for _, w := range tc.wantLines {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	cases := map[string]struct {
		args     []string
		stdin    string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		"no arguments":               {nil, "", exitUsage, "", "Commands:"},
		"unknown command":            {[]string{"frobnicate"}, "", exitUsage, "", `unknown command "frobnicate"`},
		"help":                       {[]string{"help"}, "", exitOK, "Commands:", ""},
		"help of a command":          {[]string{"help", "check"}, "", exitOK, "-policy string", ""},
		"help of an unknown command": {[]string{"help", "nope"}, "", exitUsage, "", `unknown command "nope"`},
		"--help of a command":        {[]string{"token", "--help"}, "", exitOK, "-scope string", ""},
		"-h of serve":                {[]string{"serve", "-h"}, "", exitOK, "-grpc-addr string", ""},
		"version":                    {[]string{"version"}, "", exitOK, "scopegate ", ""},
		"--version":                  {[]string{"--version"}, "", exitOK, "scopegate ", ""},
		"unknown flag":               {[]string{"check", "--polcy", "x"}, "", exitUsage, "", "unknown flag: --polcy; did you mean --policy?"},
		"unknown flag, longer":       {[]string{"serve", "--grpc-address", "x"}, "", exitUsage, "", "unknown flag: --grpc-address; did you mean --grpc-addr?"},
		"unknown flag, single dash":  {[]string{"serve", "-grpc-address", "x"}, "", exitUsage, "", "did you mean --grpc-addr?"},
		"unknown flag, no neighbour": {[]string{"token", "--frobnicate"}, "", exitUsage, "", "unknown flag: --frobnicate\n"},
		"old single-dash flag":       {[]string{"token", "-scope", "a", "-sub=bob"}, "", exitOK, ".", ""},
		"typo in a command":          {[]string{"chek"}, "", exitUsage, "", "Did you mean this?\n\tcheck"},
		"typo in a subcommand":       {[]string{"report", "usag"}, "", exitUsage, "", `unknown command "usag" for "scopegate report"; did you mean usage?`},
		"group without subcommand":   {[]string{"revocations"}, "", exitUsage, "", "name a subcommand"},
		"completion bash":            {[]string{"completion", "bash"}, "", exitOK, "bash completion", ""},
		"completion zsh":             {[]string{"completion", "zsh"}, "", exitOK, "#compdef scopegate", ""},
		"completion fish":            {[]string{"completion", "fish"}, "", exitOK, "complete -c scopegate", ""},
		"help shows exit codes":      {[]string{"--help"}, "", exitOK, "3  deny", ""},
		"positional argument":        {[]string{"check", "--policy", "p.yaml", "--path", "/x", "extra"}, "", exitUsage, "", `unexpected argument "extra"`},
		"check without policy":       {[]string{"check", "--path", "/x"}, "", exitUsage, "", "--policy is required"},
		"check without path":         {[]string{"check", "--policy", "p.yaml"}, "", exitUsage, "", "--path is required"},
		"check bad source ip":        {[]string{"check", "--policy", "p.yaml", "--path", "/x", "--source-ip", "10.0.0.1:80"}, "", exitUsage, "", "is not an IP address"},
		"check empty stdin token":    {[]string{"check", "--policy", "p.yaml", "--path", "/x", "--token", "-"}, "  \n", exitUsage, "", "standard input is empty"},
		"token alg does not fit":     {[]string{"token", "--alg", "ES256"}, "", exitUsage, "", `"ES256" does not fit an RSA key`},
		"token missing key":          {[]string{"token", "--key", "testdata/none.pem"}, "", exitUsage, "", "--key testdata/none.pem: no such file"},
		"token bad claim":            {[]string{"token", "--claim", "novalue"}, "", exitUsage, "", "is not key=value"},
		"bad duration":               {[]string{"token", "--ttl", "forever"}, "", exitUsage, "", `--ttl "forever": want a duration (units s, m, h), e.g. 1h0m0s`},
		"bad integer":                {[]string{"serve", "--token-cache-bytes", "lots"}, "", exitUsage, "", `--token-cache-bytes "lots": want an integer, e.g. 67108864`},
		"serve without policy":       {[]string{"serve"}, "", exitUsage, "", "--policy is required"},
		"serve bad log level":        {[]string{"serve", "--policy", "p.yaml", "--log-level", "loud"}, "", exitUsage, "", "--log-level"},
		"client bad api":             {[]string{"client", "--api", "soap"}, "", exitUsage, "", `--api "soap"`},
		"client explain over envoy":  {[]string{"client", "--explain"}, "", exitUsage, "", "--explain needs --api scopegate"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.stdin, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errs)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, out)
			}
			if !strings.Contains(errs, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errs)
			}
		})
	}
}

func TestTokenClaimsAndHeaders(t *testing.T) {
	cases := map[string]struct {
		args       []string
		wantHeader map[string]any // nil value: must be absent
		wantClaims map[string]any
	}{
		"defaults": {
			args:       nil,
			wantHeader: map[string]any{"alg": "RS256", "kid": "dev-rsa-1", "typ": "at+jwt"},
			wantClaims: map[string]any{"iss": "https://id.example.com/", "aud": "orders-api", "sub": "alice", "client_id": "web-app", "scope": nil},
		},
		"ec key picks its kid and alg": {
			args:       []string{"--key", "examples/keys/dev-ec.key.pem", "--scope", "a b"},
			wantHeader: map[string]any{"alg": "ES256", "kid": "dev-ec-1"},
			wantClaims: map[string]any{"scope": "a b"},
		},
		"ed25519 key": {
			args:       []string{"--key", "examples/keys/dev-ed25519.key.pem"},
			wantHeader: map[string]any{"alg": "EdDSA", "kid": "dev-ed-1"},
		},
		"explicit kid and alg": {
			args:       []string{"--kid", "k9", "--alg", "PS256"},
			wantHeader: map[string]any{"alg": "PS256", "kid": "k9"},
		},
		"claims parsed as JSON or string": {
			args: []string{"--claim", `roles=["admin","ops"]`, "--claim", "n=5", "--claim", "s=hello world",
				"--claim", "b=true", "--claim", "nbf=null", "--claim", `q="quoted"`, "--sub", ""},
			wantClaims: map[string]any{"n": json.Number("5"), "s": "hello world", "b": true, "nbf": nil, "q": "quoted", "sub": nil},
		},
		"no typ, no kid": {
			args:       []string{"--typ", "", "--header", "kid=", "--header", "x-env=dev"},
			wantHeader: map[string]any{"typ": nil, "kid": nil, "x-env": "dev", "alg": "RS256"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tok := mint(t, tc.args...)
			h, p := jwsPart(t, tok, 0), jwsPart(t, tok, 1)
			check := func(part string, got, want map[string]any) {
				for k, w := range want {
					g, present := got[k]
					if w == nil {
						if present {
							t.Errorf("%s has %s=%v, want none", part, k, g)
						}
						continue
					}
					if !present || g != w {
						t.Errorf("%s %s = %v (%T), want %v (%T)", part, k, g, g, w, w)
					}
				}
			}
			check("header", h, tc.wantHeader)
			check("payload", p, tc.wantClaims)
		})
	}
	// Arrays survive as arrays.
	p := jwsPart(t, mint(t, "--claim", `roles=["admin","ops"]`), 1)
	if r, ok := p["roles"].([]any); !ok || len(r) != 2 || r[0] != "admin" {
		t.Errorf("roles = %#v", p["roles"])
	}
}

// fakeServer answers both APIs with canned responses and records the last
// request, so the client's requests and printing are tested without the
// real server.
type fakeServer struct {
	authv3.UnimplementedAuthorizationServer
	scopegatev1.UnimplementedAuthorizerServer

	mu        sync.Mutex
	envoyReq  *authv3.CheckRequest
	sgReq     *scopegatev1.CheckRequest
	envoyResp *authv3.CheckResponse
	sgResp    *scopegatev1.CheckResponse
}

func (f *fakeServer) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.envoyReq = r
	return f.envoyResp, nil
}

type fakeAuthorizer struct{ *fakeServer }

func (f fakeAuthorizer) Check(_ context.Context, r *scopegatev1.CheckRequest) (*scopegatev1.CheckResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sgReq = r
	return f.sgResp, nil
}

func startFake(t *testing.T, f *fakeServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, f)
	scopegatev1.RegisterAuthorizerServer(s, fakeAuthorizer{f})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func hdr(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
}

func TestClient(t *testing.T) {
	f := &fakeServer{}
	addr := startFake(t, f)
	cases := map[string]struct {
		args      []string
		envoyResp *authv3.CheckResponse
		sgResp    *scopegatev1.CheckResponse
		wantCode  int
		wantOut   []string
		checkOut  func(t *testing.T, out string)
		checkReq  func(t *testing.T)
	}{
		"envoy deny": {
			args: []string{"--token", "tok123", "--path", "/orders?x=1", "--method", "POST", "--header", "X-Forwarded-For=203.0.113.9",
				"--header", "x-forwarded-for=10.0.0.1", "--source-ip", "198.51.100.4", "--environment", "prod", "--attr", "team=orders"},
			envoyResp: &authv3.CheckResponse{
				Status: &status.Status{Code: int32(codes.PermissionDenied), Message: "the token lacks the scopes"},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
					Headers: []*corev3.HeaderValueOption{hdr("x-scopegate-reason", "insufficient_scope"), hdr("www-authenticate", `Bearer error="insufficient_scope"`)},
					Body:    `{"error":"insufficient_scope"}`,
				}},
			},
			wantCode: exitDeny,
			wantOut: []string{"DENY insufficient_scope: the token lacks the scopes", "grpc-status: PermissionDenied", "http-status: 403",
				`www-authenticate: Bearer error="insufficient_scope"`, `body: {"error":"insufficient_scope"}`},
			checkReq: func(t *testing.T) {
				h := f.envoyReq.GetAttributes().GetRequest().GetHttp()
				want := map[string]string{":method": "POST", ":path": "/orders?x=1", ":authority": "localhost",
					"authorization": "Bearer tok123", "x-forwarded-for": "203.0.113.9,10.0.0.1"}
				for k, v := range want {
					if h.GetHeaders()[k] != v {
						t.Errorf("header %s = %q, want %q", k, h.GetHeaders()[k], v)
					}
				}
				if h.GetMethod() != "POST" || h.GetPath() != "/orders?x=1" || h.GetId() == "" || h.GetId() != h.GetHeaders()["x-request-id"] {
					t.Errorf("http = %v", h)
				}
				a := f.envoyReq.GetAttributes()
				if a.GetSource().GetAddress().GetSocketAddress().GetAddress() != "198.51.100.4" {
					t.Errorf("source = %v", a.GetSource())
				}
				if a.GetContextExtensions()["environment"] != "prod" || a.GetContextExtensions()["team"] != "orders" {
					t.Errorf("context_extensions = %v", a.GetContextExtensions())
				}
			},
		},
		"envoy allow": {
			args: []string{"--token", "tok"},
			envoyResp: &authv3.CheckResponse{
				Status: &status.Status{Code: int32(codes.OK)},
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
					Headers:         []*corev3.HeaderValueOption{hdr("x-scopegate-subject", "alice")},
					HeadersToRemove: []string{"authorization"},
				}},
			},
			wantCode: exitOK,
			wantOut:  []string{"ALLOW\n", "http-status: 200", "upstream header x-scopegate-subject: alice", "upstream remove authorization"},
		},
		"envoy error response": {
			envoyResp: &authv3.CheckResponse{
				Status:       &status.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}},
			},
			wantCode: exitError,
			wantOut:  []string{"ERROR"},
		},
		"scopegate deny with trace": {
			args: []string{"--api", "scopegate", "--token", "tok9", "--explain", "--header", "X-Trace=1", "--source-ip", "2001:db8::1"},
			sgResp: &scopegatev1.CheckResponse{
				Allow: false, Route: "read-order", HttpStatus: 401,
				Reasons:         []*scopegatev1.Reason{{Code: "token_expired", Message: "the bearer token has expired"}},
				WwwAuthenticate: `Bearer error="invalid_token"`,
				Trace:           []*scopegatev1.TraceStep{{Check: "token", Result: "fail", Detail: "expired"}},
			},
			wantCode: exitDeny,
			wantOut:  []string{"DENY token_expired: the bearer token has expired (route=read-order)", "http-status: 401", "1.  token  fail  expired"},
			checkReq: func(t *testing.T) {
				r := f.sgReq
				if r.GetToken() != "tok9" || r.GetMethod() != "GET" || r.GetPath() != "/orders/1" || !r.GetExplain() ||
					r.GetHeaders()["x-trace"] != "1" || r.GetSourceAddress() != "2001:db8::1" || r.GetRequestId() == "" {
					t.Errorf("request = %v", r)
				}
			},
		},
		"scopegate allow as JSON": {
			args:     []string{"--api", "scopegate", "--json"},
			sgResp:   &scopegatev1.CheckResponse{Allow: true, Route: "health", HttpStatus: 200},
			wantCode: exitOK,
			checkOut: func(t *testing.T, out string) {
				var got map[string]any
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("stdout is not JSON: %v\n%s", err, out)
				}
				if got["allow"] != true || got["route"] != "health" || got["http_status"] != float64(200) {
					t.Errorf("response = %v", got)
				}
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f.mu.Lock()
			f.envoyResp, f.sgResp = tc.envoyResp, tc.sgResp
			f.mu.Unlock()
			code, out, errs := runCLI(t, "", append([]string{"client", "--addr", addr}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errs)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.checkOut != nil {
				tc.checkOut(t, out)
			}
			if tc.checkReq != nil {
				f.mu.Lock()
				defer f.mu.Unlock()
				tc.checkReq(t)
			}
		})
	}
}

func TestClientUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	code, _, errs := runCLI(t, "", "client", "--addr", addr, "--timeout", "2s")
	if code != exitError || !strings.Contains(errs, "check call to "+addr) {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

// TestServe runs the real server in-process on a free loopback port, sends
// one check per API with the client command, and stops it by cancelling the
// context, as SIGTERM does.
func TestServe(t *testing.T) {
	addr := freeport.Addr(t)

	logText, done, cancel := serveInProcess(t, nil, "--policy", examplePolicy(t), "--grpc-addr", addr, "--http-addr", "127.0.0.1:0", "--metrics-addr", "", "--log-level", "warn")

	tok := mint(t, "--scope", "orders:read")
	cases := map[string]struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		"envoy allow":     {[]string{"--path", "/orders/1"}, exitOK, "upstream header x-scopegate-subject: alice"},
		"envoy deny":      {[]string{"--path", "/orders", "--method", "POST"}, exitDeny, "DENY insufficient_scope: the token lacks"},
		"scopegate allow": {[]string{"--api", "scopegate", "--path", "/orders"}, exitOK, "ALLOW (route=list-orders)"},
		"scopegate deny":  {[]string{"--api", "scopegate", "--path", "/admin/x"}, exitDeny, "DENY insufficient_scope"},
	}
	// Wait for the listener: the first call may race the server's start.
	waitServing(t, addr, done, logText)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCLI(t, "", append([]string{"client", "--addr", addr, "--token", tok}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Fatalf("exit %d (want %d), stdout lacks %q?\n%s%s", code, tc.wantCode, tc.wantOut, out, errs)
			}
		})
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited with %d: %s", code, logText())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after its context was cancelled")
	}
}

// serveInProcess runs `scopegate serve args...` in this process until
// the test ends (or stop is called), with env as its environment (nil:
// none). logText returns what it logged so far; done yields its exit code.
func serveInProcess(t *testing.T, env map[string]string, args ...string) (logText func() string, done <-chan int, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var serveErr bytes.Buffer
	logs := &syncWriter{w: &serveErr}
	logText = func() string {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return serveErr.String()
	}
	exited := make(chan int, 1)
	go func() {
		c := &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: logs,
			lookupEnv: func(name string) (string, bool) { v, ok := env[name]; return v, ok }}
		exited <- c.run(ctx, append([]string{"serve"}, args...))
	}()
	t.Cleanup(cancel)
	return logText, exited, cancel
}

// waitServing waits until the gRPC listener at addr answers a check, or
// fails the test when serve exits first (done) or does not answer.
func waitServing(t *testing.T, addr string, done <-chan int, logText func() string) {
	t.Helper()
	for range 200 {
		if code, _, _ := runCLI(t, "", "client", "--addr", addr, "--path", "/healthz", "--timeout", "1s"); code == exitOK {
			return
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d: %s", code, logText())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("the server did not answer: %s", logText())
}

// syncWriter serializes writes from the server's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestTokenOutsideRepository: the development keys are built in, so
// `scopegate token` works from a directory that is not the repository.
func TestTokenOutsideRepository(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{
		{"--scope", "orders:read"},
		{"--key", "examples/keys/dev-ec.key.pem"},
		{"--key", "examples/keys/dev-ed25519.key.pem"},
	} {
		tok := mint(t, args...)
		if h := jwsPart(t, tok, 0); h["kid"] == "" {
			t.Errorf("%v: no kid in %v", args, h)
		}
	}
	code, _, errs := runCLI(t, "", "token", "--key", "examples/keys/missing.pem")
	if code == exitOK || !strings.Contains(errs, "--key examples/keys/missing.pem: no such file") {
		t.Errorf("missing key: exit %d: %s", code, errs)
	}
}

// TestOutputFormats: -o json is --json, -o yaml carries the same fields,
// and an unknown format is a usage error naming the choices.
func TestOutputFormats(t *testing.T) {
	pol := examplePolicy(t)
	tok := mint(t, "--scope", "orders:read")
	base := []string{"check", "--policy", pol, "--path", "/orders/1", "--token", tok}
	_, legacy, _ := runCLI(t, "", append(base, "--json")...)
	code, js, errs := runCLI(t, "", append(base, "-o", "json")...)
	if code != exitOK || js != legacy || !strings.Contains(js, `"allow": true`) {
		t.Fatalf("-o json: exit %d, %q (--json: %q) %s", code, js, legacy, errs)
	}
	code, ym, errs := runCLI(t, "", append(base, "--output", "yaml")...)
	if code != exitOK || !strings.Contains(ym, "allow: true\n") || !strings.Contains(ym, "route: read-order\n") || strings.Contains(ym, "{") {
		t.Fatalf("-o yaml: exit %d:\n%s%s", code, ym, errs)
	}
	code, tab, _ := runCLI(t, "", append(base, "-o", "table")...)
	if code != exitOK || !strings.HasPrefix(tab, "ALLOW") {
		t.Errorf("-o table: exit %d: %s", code, tab)
	}
	code, _, errs = runCLI(t, "", append(base, "-o", "xml")...)
	if code != exitUsage || !strings.Contains(errs, `--output "xml": want one of json, yaml, table`) {
		t.Errorf("-o xml: exit %d: %s", code, errs)
	}
	for _, cmd := range []string{"lint", "test", "diff", "check", "explain", "client", "revoke", "revocations list", "report usage", "unrevoke", "bench", "context list", "version"} {
		code, out, _ := runCLI(t, "", append(strings.Fields(cmd), "--help")...)
		if code != exitOK || !strings.Contains(out, "-o, --output json|yaml|table") {
			t.Errorf("%s --help lacks -o:\n%s", cmd, out)
		}
	}
}
