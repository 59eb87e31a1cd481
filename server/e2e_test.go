package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

const (
	testIssuer   = "https://issuer.test/"
	testAudience = "items-api"
)

// e2e is a real server on a loopback listener and clients of both
// decision APIs.
type e2e struct {
	srv        *Server
	conn       *grpc.ClientConn
	dir        string // holds policy.yaml and jwks.json
	signer     *decisiontest.Signer
	other      *decisiontest.Signer // same kid, a key the issuer does not publish
	extauthz   authv3.AuthorizationClient
	authorizer scopegatev1.AuthorizerClient
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startE2E writes testdata/policy.yaml and a fresh JWKS to a temporary
// directory and serves them on 127.0.0.1:0.
func startE2E(t testing.TB, edit func(*Config)) *e2e {
	t.Helper()
	e := &e2e{dir: t.TempDir()}
	var err error
	if e.signer, err = decisiontest.NewECSigner("k1"); err != nil {
		t.Fatal(err)
	}
	if e.other, err = decisiontest.NewECSigner("k1"); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "testdata/policy.yaml", filepath.Join(e.dir, "policy.yaml"))
	if err := os.WriteFile(filepath.Join(e.dir, "jwks.json"), decisiontest.JWKS(e.signer), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{PolicyPath: filepath.Join(e.dir, "policy.yaml"), Logger: quietLogger(), ShutdownTimeout: time.Second}
	if edit != nil {
		edit(&cfg)
	}
	e.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(lis) }()
	e.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.conn.Close()
		e.srv.Stop()
		// A test that ends before the Serve goroutine runs stops the server
		// first; Serve then reports just that.
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve returned %v", err)
		}
	})
	e.extauthz = authv3.NewAuthorizationClient(e.conn)
	e.authorizer = scopegatev1.NewAuthorizerClient(e.conn)
	return e
}

// mint returns a token of the test issuer signed by s.
func mint(t testing.TB, s *decisiontest.Signer, sub, client, scope string, issued time.Time, ttl time.Duration) string {
	t.Helper()
	tok, err := s.Mint(decisiontest.StandardClaims(testIssuer, testAudience, sub, client, scope, ttl, issued), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// verdict is what a caller learns from either API, normalized so the two
// can be compared.
type verdict struct {
	allow     bool
	code      string
	http      int
	challenge string
	headers   map[string]string // upstream headers of an allow
}

type e2eCase struct {
	method, path string
	authz        string // Authorization header; "" sends none
	sparse       bool   // send an empty request
	allow        bool
	code         decision.Code
	http         int
	challenge    string // exact WWW-Authenticate, or a prefix when it ends with "…"
	headers      map[string]string
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *e2e) viaExtAuthz(t *testing.T, c e2eCase) verdict {
	t.Helper()
	req := &authv3.CheckRequest{}
	if !c.sparse {
		h := map[string]string{":method": c.method, ":path": c.path, ":authority": "api.test", "user-agent": "test"}
		if c.authz != "" {
			h["authorization"] = c.authz
		}
		req.Attributes = &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
			}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: "rid-1", Method: c.method, Path: c.path, Host: "api.test", Headers: h,
			}},
		}
	}
	resp, err := e.extauthz.Check(ctxT(t), req)
	if err != nil {
		t.Fatalf("ext_authz Check: %v", err)
	}
	v := verdict{allow: resp.GetStatus().GetCode() == int32(codes.OK)}
	if v.allow {
		ok := resp.GetOkResponse()
		if ok == nil {
			t.Fatal("ext_authz allow without ok_response")
		}
		v.code, v.http = "ok", 200
		v.headers = map[string]string{}
		for _, h := range ok.GetHeaders() {
			v.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if !slices.Equal(ok.GetHeadersToRemove(), []string{"authorization"}) {
			t.Errorf("headers_to_remove = %v, want [authorization]", ok.GetHeadersToRemove())
		}
		return v
	}
	v.code = resp.GetStatus().GetMessage()
	denied := resp.GetDeniedResponse()
	if denied == nil {
		t.Fatalf("ext_authz deny without denied_response: %v", resp)
	}
	v.http = int(denied.GetStatus().GetCode())
	for _, h := range denied.GetHeaders() {
		switch h.GetHeader().GetKey() {
		case "www-authenticate":
			v.challenge = h.GetHeader().GetValue()
		case "x-scopegate-reason":
			if h.GetHeader().GetValue() != v.code {
				t.Errorf("x-scopegate-reason %q, grpc message %q", h.GetHeader().GetValue(), v.code)
			}
		}
	}
	return v
}

func (e *e2e) viaAuthorizer(t *testing.T, c e2eCase) verdict {
	t.Helper()
	req := &scopegatev1.CheckRequest{}
	if !c.sparse {
		req = &scopegatev1.CheckRequest{Method: c.method, Path: c.path, Host: "api.test", SourceAddress: "10.0.0.7", RequestId: "rid-1",
			Headers: map[string]string{"User-Agent": "test"}}
		if c.authz != "" {
			req.Headers["Authorization"] = c.authz
		}
	}
	resp, err := e.authorizer.Check(ctxT(t), req)
	if err != nil {
		t.Fatalf("Authorizer Check: %v", err)
	}
	if len(resp.GetReasons()) != 1 {
		t.Fatalf("reasons = %v, want exactly one", resp.GetReasons())
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(resp.GetDecisionId()) {
		t.Errorf("decision_id %q is not 16 hex digits", resp.GetDecisionId())
	}
	v := verdict{allow: resp.GetAllow(), code: resp.GetReasons()[0].GetCode(), http: int(resp.GetHttpStatus()), challenge: resp.GetWwwAuthenticate()}
	if v.allow {
		v.headers = resp.GetHeaders()
	} else if len(resp.GetHeaders()) != 0 {
		t.Errorf("deny carries upstream headers %v", resp.GetHeaders())
	}
	return v
}

func (c e2eCase) check(t *testing.T, api string, v verdict) {
	t.Helper()
	if v.allow != c.allow || v.code != c.code.String() || v.http != c.http {
		t.Errorf("%s: allow=%v code=%s http=%d, want allow=%v code=%s http=%d", api, v.allow, v.code, v.http, c.allow, c.code, c.http)
	}
	if p, ok := strings.CutSuffix(c.challenge, "…"); ok {
		if !strings.HasPrefix(v.challenge, p) {
			t.Errorf("%s: WWW-Authenticate %q, want prefix %q", api, v.challenge, p)
		}
	} else if v.challenge != c.challenge {
		t.Errorf("%s: WWW-Authenticate %q, want %q", api, v.challenge, c.challenge)
	}
	if c.allow && fmt.Sprint(v.headers) != fmt.Sprint(c.headers) {
		t.Errorf("%s: upstream headers %v, want %v", api, v.headers, c.headers)
	}
}

// TestE2ESameVerdict runs one case table through Envoy ext_authz and the
// Authorizer API of a real server over loopback gRPC: both must give the
// same verdict, reason, HTTP status and challenge.
func TestE2ESameVerdict(t *testing.T) {
	e := startE2E(t, nil)
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
		"garbage token": {method: "GET", path: "/api/items/42", authz: "Bearer abc", code: decision.TokenInvalid, http: 401,
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
		// A raw '#' is not a fragment in a request-target: no protocol may cut
		// the path there and decide the public /healthz.
		"raw hash":            {method: "GET", path: "/healthz#/../api/items/1", code: decision.PathInvalid, http: 400},
		"raw hash with token": {method: "GET", path: "/healthz#/../api/items/1", authz: "Bearer " + readOnly, code: decision.PathInvalid, http: 400},
		"escaped literal":     {method: "GET", path: "/%68ealth%7A", allow: true, code: decision.OK, http: 200, headers: empty},
		"public route":        {method: "GET", path: "/healthz", allow: true, code: decision.OK, http: 200, headers: empty},
		"public route with forged token": {method: "GET", path: "/healthz", authz: "Bearer " + forged, allow: true, code: decision.OK, http: 200,
			headers: empty},
		"sparse request": {sparse: true, code: decision.PathInvalid, http: 400},
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			x := e.viaExtAuthz(t, c)
			a := e.viaAuthorizer(t, c)
			c.check(t, "ext_authz", x)
			c.check(t, "Authorizer", a)
			if fmt.Sprint(x) != fmt.Sprint(a) {
				t.Errorf("the APIs disagree:\next_authz  %+v\nAuthorizer %+v", x, a)
			}
		})
	}
}

// TestE2EAllowDetails checks what an allow carries beyond the verdict.
func TestE2EAllowDetails(t *testing.T) {
	e := startE2E(t, nil)
	good := mint(t, e.signer, "alice", "app", "items:read profile", time.Now(), time.Hour)
	pol := e.srv.Engine().Policy()

	resp, err := e.extauthz.Check(ctxT(t), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer " + good},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	md := resp.GetDynamicMetadata().GetFields()
	var used []string
	for _, v := range md["scopes_used"].GetListValue().GetValues() {
		used = append(used, v.GetStringValue())
	}
	if md["route"].GetStringValue() != "items-read" || md["subject"].GetStringValue() != "alice" ||
		md["client_id"].GetStringValue() != "app" || md["reason"].GetStringValue() != "ok" ||
		md["policy_version"].GetStringValue() != pol.Version || !slices.Equal(used, []string{"items:read"}) {
		t.Errorf("dynamic metadata = %v", resp.GetDynamicMetadata())
	}

	ar, err := e.authorizer.Check(ctxT(t), &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good, Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	if !ar.GetAllow() || ar.GetRoute() != "items-read" || ar.GetSubject() != "alice" || ar.GetClientId() != "app" ||
		ar.GetIssuer() != testIssuer || ar.GetPolicyVersion() != pol.Version || !slices.Equal(ar.GetScopesUsed(), []string{"items:read"}) {
		t.Errorf("Authorizer allow = %v", ar)
	}
	if len(ar.GetTrace()) == 0 {
		t.Error("explain returned no trace")
	}
	for _, s := range ar.GetTrace() {
		if strings.Contains(s.GetDetail(), good) {
			t.Fatal("the trace echoes the token")
		}
	}
	ar2, err := e.authorizer.Check(ctxT(t), &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good})
	if err != nil {
		t.Fatal(err)
	}
	if ar2.GetDecisionId() == ar.GetDecisionId() {
		t.Error("two decisions share an id")
	}
	if len(ar2.GetTrace()) != 0 {
		t.Error("trace without explain")
	}
}

// TestE2EAuthorizerRequestInvalid covers what only the Authorizer API can
// get wrong: its own request fields.
func TestE2EAuthorizerRequestInvalid(t *testing.T) {
	e := startE2E(t, nil)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	tests := map[string]struct {
		req   *scopegatev1.CheckRequest
		allow bool
		code  decision.Code
	}{
		"token field":             {req: &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good}, allow: true, code: decision.OK},
		"lower-case header":       {req: &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer " + good}}, allow: true, code: decision.OK},
		"token and header":        {req: &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good, Headers: map[string]string{"AUTHORIZATION": "Bearer " + good}}, code: decision.RequestInvalid},
		"two authorization names": {req: &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer " + good, "Authorization": "Bearer " + good}}, code: decision.RequestInvalid},
		"source not an ip":        {req: &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good, SourceAddress: "10.0.0.7:443"}, code: decision.RequestInvalid},
		"ipv6 source":             {req: &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good, SourceAddress: "2001:db8::1"}, allow: true, code: decision.OK},
		"two xff spellings":       {req: &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good, Headers: map[string]string{"x-forwarded-for": "1.2.3.4", "X-Forwarded-For": "5.6.7.8"}}, code: decision.RequestInvalid},
		"no method":               {req: &scopegatev1.CheckRequest{Path: "/api/items/1", Token: good}, code: decision.RequestInvalid},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := e.authorizer.Check(ctxT(t), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetAllow() != tc.allow || resp.GetReasons()[0].GetCode() != tc.code.String() {
				t.Fatalf("allow=%v reason=%v, want allow=%v %s", resp.GetAllow(), resp.GetReasons(), tc.allow, tc.code)
			}
			if !tc.allow && (resp.GetHttpStatus() != 400 || !strings.Contains(resp.GetWwwAuthenticate(), `error="invalid_request"`)) {
				t.Errorf("http_status=%d www_authenticate=%q", resp.GetHttpStatus(), resp.GetWwwAuthenticate())
			}
			if strings.Contains(resp.String(), good) {
				t.Error("the response echoes the token")
			}
		})
	}
}

func TestE2EHealthAndReflection(t *testing.T) {
	e := startE2E(t, nil)
	hc := healthpb.NewHealthClient(e.conn)
	for _, svc := range []string{"", ExtAuthzService, AuthorizerService} {
		resp, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, want SERVING", svc, resp.GetStatus())
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{ExtAuthzService, AuthorizerService, "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	_ = stream.CloseSend()
}

// TestE2EShutdownNotServing watches health while the server stops: the
// watcher must see NOT_SERVING, and Stop must return within its bound even
// though the watch stream is still open.
func TestE2EShutdownNotServing(t *testing.T) {
	e := startE2E(t, func(c *Config) { c.ShutdownTimeout = 300 * time.Millisecond })
	w, err := healthpb.NewHealthClient(e.conn).Watch(ctxT(t), &healthpb.HealthCheckRequest{Service: ExtAuthzService})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch update %v, %v; want SERVING", first, err)
	}
	stopped := make(chan struct{})
	start := time.Now()
	go func() { e.srv.Stop(); close(stopped) }()
	next, err := w.Recv()
	if err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("watch update during shutdown %v, %v; want NOT_SERVING", next, err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %v, bound is 300ms", d)
	}
}

func TestE2EReload(t *testing.T) {
	e := startE2E(t, nil)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	read := e2eCase{method: "GET", path: "/api/items/1", authz: "Bearer " + good}
	v1 := e.srv.Engine().Policy().Version

	// A broken file: Reload fails, names the problems, keeps the old policy.
	copyFile(t, "testdata/policy-broken.yaml", filepath.Join(e.dir, "policy.yaml"))
	err := e.srv.Reload()
	var le *decision.LoadError
	if !errors.As(err, &le) || len(le.Problems) == 0 {
		t.Fatalf("Reload of a broken policy = %v, want a *decision.LoadError", err)
	}
	if got := e.srv.Engine().Policy().Version; got != v1 {
		t.Fatalf("policy version after failed reload = %q, want %q", got, v1)
	}
	if v := e.viaExtAuthz(t, read); !v.allow {
		t.Fatalf("after a failed reload the old policy no longer allows: %+v", v)
	}

	// A good file: Reload succeeds and the new policy decides.
	copyFile(t, "testdata/policy-v2.yaml", filepath.Join(e.dir, "policy.yaml"))
	if err := e.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := e.srv.Engine().Policy().Version; got == v1 || !strings.HasPrefix(got, "e2e-v2+") {
		t.Fatalf("policy version after reload = %q", got)
	}
	// items-read is gone; only items-write (not GET) matches the path.
	if v := e.viaExtAuthz(t, read); v.allow || v.code != decision.MethodNotAllowed.String() {
		t.Errorf("after reload: %+v, want method_not_allowed", v)
	}
	if v := e.viaAuthorizer(t, read); v.allow || v.code != decision.MethodNotAllowed.String() {
		t.Errorf("after reload (Authorizer): %+v, want method_not_allowed", v)
	}
}

// TestE2ERecovery registers a handler that panics: the call fails with
// codes.Internal and the server keeps serving.
func TestE2ERecovery(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/policy.yaml", filepath.Join(dir, "policy.yaml"))
	s, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), decisiontest.JWKS(s), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{PolicyPath: filepath.Join(dir, "policy.yaml"), Logger: quietLogger(), ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv.grpc.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Panic",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Boom", Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/test.Panic/Boom"}, func(context.Context, any) (any, error) {
				panic("boom")
			})
		}}},
	}, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(ctxT(t), "/test.Panic/Boom", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panicking call = %v, want codes.Internal", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("server not serving after a panic: %v", err)
	}
}

func TestNewServerBrokenPolicy(t *testing.T) {
	_, err := NewServer(Config{PolicyPath: "testdata/policy-broken.yaml", Logger: quietLogger()})
	var le *decision.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("NewServer = %v, want a *decision.LoadError", err)
	}
	if !strings.Contains(err.Error(), "policy-broken.yaml") {
		t.Errorf("error does not name the file: %v", err)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/policy.yaml", filepath.Join(dir, "policy.yaml"))
	s, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), decisiontest.JWKS(s), 0o600); err != nil {
		t.Fatal(err)
	}
	// Find a free port, then let Run bind it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{PolicyPath: filepath.Join(dir, "policy.yaml"), GRPCAddr: addr, HTTPAddr: "127.0.0.1:0", Logger: quietLogger(), ShutdownTimeout: time.Second})
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var resp *healthpb.HealthCheckResponse
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err == nil {
			break
		}
	}
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Run did not serve: %v %v", resp, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	if err := Run(context.Background(), Config{PolicyPath: "testdata/policy-broken.yaml", Logger: quietLogger()}); err == nil {
		t.Error("Run with a broken policy returned nil")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		"minimal":            {cfg: Config{PolicyPath: "p.yaml"}},
		"all set":            {cfg: Config{PolicyPath: "p.yaml", GRPCAddr: "[::1]:0", TokenCacheSize: 10, MaxTokenBytes: 100, MaxRecvMsgSize: 1 << 16, MaxConcurrentStreams: 5, ShutdownTimeout: time.Second}},
		"no policy":          {cfg: Config{}, want: "PolicyPath"},
		"bad addr":           {cfg: Config{PolicyPath: "p", GRPCAddr: "9191"}, want: "GRPCAddr"},
		"bad port":           {cfg: Config{PolicyPath: "p", GRPCAddr: "127.0.0.1:http"}, want: "port"},
		"negative cache":     {cfg: Config{PolicyPath: "p", TokenCacheSize: -1}, want: "TokenCacheSize"},
		"negative token":     {cfg: Config{PolicyPath: "p", MaxTokenBytes: -1}, want: "MaxTokenBytes"},
		"tiny message limit": {cfg: Config{PolicyPath: "p", MaxRecvMsgSize: 100}, want: "MaxRecvMsgSize"},
		"negative shutdown":  {cfg: Config{PolicyPath: "p", ShutdownTimeout: -time.Second}, want: "ShutdownTimeout"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	d := Config{PolicyPath: "p"}.withDefaults()
	if d.GRPCAddr != DefaultGRPCAddr || d.MaxRecvMsgSize != DefaultMaxRecvMsgSize || d.MaxConcurrentStreams != DefaultMaxConcurrentStreams ||
		d.TokenCacheSize != DefaultTokenCacheSize || d.MaxTokenBytes != DefaultMaxTokenBytes || d.ShutdownTimeout != DefaultShutdownTimeout || d.Logger == nil {
		t.Errorf("withDefaults = %+v", d)
	}
}

// BenchmarkE2ECheck is one ext_authz Check over loopback gRPC with a cached
// token: the end-to-end floor a proxy sees (client and server share the
// machine's cores).
func BenchmarkE2ECheck(b *testing.B) {
	e := startE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer " + good, ":method": "GET", ":path": "/api/items/1"},
	}}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := e.extauthz.Check(ctx, req)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatalf("%v %v", resp.GetStatus(), err)
		}
	}
}

// BenchmarkExtAuthzHandler is the server's own share of a Check, without
// the network: translate, decide (cached token), build the response.
func BenchmarkExtAuthzHandler(b *testing.B) {
	e := startE2E(b, nil)
	good := mint(b, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	x := &ExtAuthz{funnel: testFunnel(e.srv, nil, nil), responder: e.srv.responder}
	allow := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer " + good},
	}}}}
	deny := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/api/items/1",
	}}}}
	ctx := context.Background()
	for name, req := range map[string]*authv3.CheckRequest{"allow": allow, "deny": deny} {
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

// TestE2EReloadUnderLoad reloads between two policies while clients call
// both APIs: every answer must come from one policy or the other, and no
// call may fail (run with -race).
func TestE2EReloadUnderLoad(t *testing.T) {
	e := startE2E(t, nil)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	xreq := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/api/items/1", Headers: map[string]string{"authorization": "Bearer " + good},
	}}}}
	areq := &scopegatev1.CheckRequest{Method: "GET", Path: "/api/items/1", Token: good}
	ctx := ctxT(t)
	policy := filepath.Join(e.dir, "policy.yaml")

	stop := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Direct calls: t.Fatal must not run off the test goroutine.
				var allow bool
				var code string
				if g%2 == 0 {
					resp, err := e.extauthz.Check(ctx, xreq)
					if err != nil {
						errs <- err
						return
					}
					allow, code = resp.GetStatus().GetCode() == 0, resp.GetStatus().GetMessage()
					if allow {
						code = "ok"
					}
				} else {
					resp, err := e.authorizer.Check(ctx, areq)
					if err != nil {
						errs <- err
						return
					}
					allow, code = resp.GetAllow(), resp.GetReasons()[0].GetCode()
				}
				if !(allow && code == "ok") && !(!allow && code == decision.MethodNotAllowed.String()) {
					errs <- fmt.Errorf("verdict allow=%v code=%s fits neither policy", allow, code)
					return
				}
			}
		})
	}
	for i := range 6 {
		src := "testdata/policy.yaml"
		if i%2 == 0 {
			src = "testdata/policy-v2.yaml"
		}
		copyFile(t, src, policy)
		if err := e.srv.Reload(); err != nil {
			t.Errorf("Reload %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
