package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/decision/tokenmint"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// Tokens from a real authorization server: oidc-provider (OpenID
// certified, server/e2e/oidc) issues RFC 9068 JWTs and opaque tokens by
// client credentials; scopegate knows the issuer by its URL alone
// (discovery) and introspects the opaque tokens. Every case goes through
// ext_authz and forward-auth.

// EnvOIDC turns the tests on.
const EnvOIDC = "SCOPEGATE_E2E_OIDC"

// The authorization server's test clients and resources
// (server/e2e/oidc/server.mjs).
const (
	oidcSecret      = "e2e-secret"
	jwtResource     = "https://jwt.api.test"
	opaqueResource  = "https://opaque.api.test"
	oidcSecretEnv   = "SCOPEGATE_E2E_OIDC_SECRET"
	oidcCacheTTL    = 2 * time.Second
	oidcNegativeTTL = time.Second
)

// authServer is a running oidc-provider.
type authServer struct {
	issuer string
	cmd    *exec.Cmd
	done   chan struct{}
}

func requireOIDC(t *testing.T) string {
	t.Helper()
	if os.Getenv(EnvOIDC) != "1" {
		t.Skip("end-to-end tests with a real authorization server are off: set " + EnvOIDC + "=1 (the CI script .ci/e2e does, after npm ci)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("end-to-end tests with a real authorization server need node on PATH (oidc-provider is a Node.js server): " + err.Error())
	}
	return node
}

// startAuthServer starts oidc-provider on a free loopback port and waits
// until it listens.
func startAuthServer(t *testing.T, node string) *authServer {
	t.Helper()
	root, err := decisiontest.FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "server", "e2e", "oidc")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		t.Fatalf("oidc-provider is not installed: run npm ci --prefix server/e2e/oidc (%v)", err)
	}
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "CLIENT_SECRET="+oidcSecret)
	cmd.Stderr = &testWriter{t: t, prefix: "oidc-provider: "}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	as := &authServer{issuer: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "ready ") {
				ready <- strings.TrimPrefix(line, "ready ")
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(as.done) }()
	t.Cleanup(as.stop)
	select {
	case got := <-ready:
		if got != as.issuer {
			t.Fatalf("oidc-provider serves %s, want %s", got, as.issuer)
		}
	case <-as.done:
		t.Fatal("oidc-provider exited before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("oidc-provider was not ready within 30s")
	}
	return as
}

// stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (a *authServer) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// token obtains an access token for resource by client credentials.
func (a *authServer) token(t *testing.T, client, scope, resource string) string {
	t.Helper()
	tok, _ := a.tokenWith(t, nil, client, scope, resource)
	return tok
}

// tokenWith obtains an access token by client credentials; with a
// prover, the request carries a DPoP proof of its key, and the token
// returned is bound to it. It returns the token and its token_type.
func (a *authServer) tokenWith(t *testing.T, prover *tokenmint.Prover, client, scope, resource string) (string, string) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}, "resource": {resource}}
	req, _ := http.NewRequest(http.MethodPost, a.issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, oidcSecret)
	if prover != nil {
		proof, err := prover.ProofWith(nil, tokenmint.Claims{"htm": http.MethodPost, "htu": a.issuer + "/token", "iat": time.Now().Unix(), "jti": tokenmint.RandomID()})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token for %s at %s: status %d, %v %s %s", client, resource, resp.StatusCode, err, body.Error, body.Description)
	}
	return body.AccessToken, body.TokenType
}

// revoke revokes tok at the authorization server (RFC 7009), as its client.
func (a *authServer) revoke(t *testing.T, client, tok string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.issuer+"/token/revocation", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, oidcSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: status %d", resp.StatusCode)
	}
}

// oidcGate is scopegate, in-process, trusting the authorization server.
type oidcGate struct {
	srv      *server.Server
	authz    authv3.AuthorizationClient
	httpAddr string
}

func startOIDCGate(t *testing.T, issuer string) *oidcGate {
	t.Helper()
	t.Setenv(oidcSecretEnv, oidcSecret)
	policy := fmt.Sprintf(`version: e2e-oidc
issuers:
  - issuer: %s
    discovery: true
    audiences: [%s, %s]
    algorithms: [RS256]
    require_at_jwt: true
    introspection:
      client_id: scopegate
      client_secret_env: %s
      cache_ttl: %s
      negative_cache_ttl: %s
      timeout: 1s
routes:
  - name: orders-read
    match: {methods: [GET], path: "/orders/{id}"}
    require: {all_of: [orders:read]}
  - name: orders-write
    match: {methods: [POST], path: /orders}
    require: {all_of: [orders:write]}
default: deny
`, issuer, jwtResource, opaqueResource, oidcSecretEnv, oidcCacheTTL, oidcNegativeTTL)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(server.Config{
		PolicyPath: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ShutdownTimeout: time.Second, KeyStartupTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("start scopegate: %v", err)
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(glis) }()
	go func() { served <- srv.ServeHTTPListener(hlis) }()
	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
		<-served
	})
	return &oidcGate{srv: srv, authz: authv3.NewAuthorizationClient(conn), httpAddr: hlis.Addr().String()}
}

// verdict is a decision as both protocols answered it.
type verdict struct {
	extAuthz    string // reason; "ok" for an allow; "error_response:<reason>" for an error
	forwardAuth string // status and reason, e.g. "403 insufficient_scope"
}

func (g *oidcGate) decide(t *testing.T, method, path, tok string) verdict {
	t.Helper()
	var v verdict
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := g.authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "api.test", Scheme: "https",
			Headers: map[string]string{"authorization": "Bearer " + tok}},
	}}})
	switch {
	case err != nil:
		v.extAuthz = "rpc error: " + err.Error()
	case resp.GetStatus().GetCode() == 0:
		v.extAuthz = "ok"
	case resp.GetErrorResponse() != nil:
		v.extAuthz = "error_response:" + resp.GetStatus().GetMessage()
	default:
		v.extAuthz = resp.GetStatus().GetMessage()
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.httpAddr+"/check", nil)
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-URI", path)
	req.Header.Set("Authorization", "Bearer "+tok)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		v.forwardAuth = "error: " + err.Error()
		return v
	}
	hr.Body.Close()
	reason := hr.Header.Get("X-Scopegate-Reason")
	if hr.StatusCode == http.StatusOK {
		reason = "ok"
	}
	v.forwardAuth = strconv.Itoa(hr.StatusCode) + " " + reason
	return v
}

func (v verdict) want(t *testing.T, what, extAuthz, forwardAuth string) {
	t.Helper()
	if v.extAuthz != extAuthz || v.forwardAuth != forwardAuth {
		t.Errorf("%s: ext_authz %q, forward-auth %q; want %q, %q", what, v.extAuthz, v.forwardAuth, extAuthz, forwardAuth)
	}
}

func TestOIDCProviderTokens(t *testing.T) {
	node := requireOIDC(t)
	as := startAuthServer(t, node)
	g := startOIDCGate(t, as.issuer)

	jwtRead, jwtWrite := as.token(t, "reader", "orders:read", jwtResource), as.token(t, "writer", "orders:write", jwtResource)
	opqRead, opqWrite := as.token(t, "reader", "orders:read", opaqueResource), as.token(t, "writer", "orders:write", opaqueResource)
	if strings.Count(jwtRead, ".") != 2 || strings.Contains(opqRead, ".") {
		t.Fatalf("the authorization server issued %q for the JWT resource and %q for the opaque one", jwtRead, opqRead)
	}
	for _, tc := range []struct {
		name, method, path, tok, extAuthz, forwardAuth string
	}{
		{"JWT with the scope", "GET", "/orders/1", jwtRead, "ok", "200 ok"},
		{"JWT without the scope", "POST", "/orders", jwtRead, "insufficient_scope", "403 insufficient_scope"},
		{"JWT for writing", "POST", "/orders", jwtWrite, "ok", "200 ok"},
		{"opaque with the scope", "GET", "/orders/1", opqRead, "ok", "200 ok"},
		{"opaque without the scope", "POST", "/orders", opqRead, "insufficient_scope", "403 insufficient_scope"},
		{"opaque for writing", "POST", "/orders", opqWrite, "ok", "200 ok"},
		{"opaque never issued", "GET", "/orders/1", "Zm9yZ2VkLW9wYXF1ZS10b2tlbi12YWx1ZS0wMTIzNDU2", "token_invalid", "401 token_invalid"},
	} {
		g.decide(t, tc.method, tc.path, tc.tok).want(t, tc.name, tc.extAuthz, tc.forwardAuth)
	}

	// Revoked at the authorization server (RFC 7009): the active answer
	// is reused for at most cache_ttl, then the token is refused.
	as.revoke(t, "reader", opqRead)
	time.Sleep(oidcCacheTTL + 500*time.Millisecond)
	g.decide(t, "GET", "/orders/1", opqRead).want(t, "opaque revoked at the AS", "token_invalid", "401 token_invalid")

	// The authorization server stops: an opaque token not seen before
	// cannot be introspected and is refused introspection_unavailable (an
	// ext_authz error, so Envoy answers its status_on_error); JWTs are
	// still verified with the keys already fetched.
	fresh := as.token(t, "reader", "orders:read", opaqueResource)
	as.stop()
	g.decide(t, "GET", "/orders/1", fresh).want(t, "opaque with the AS down", "error_response:introspection_unavailable", "503 introspection_unavailable")
	g.decide(t, "GET", "/orders/1", jwtRead).want(t, "JWT with the AS down", "ok", "200 ok")
}

// decideDPoP asks both protocols about tok presented as authz (for
// example "DPoP <token>") with the DPoP header proofs[0] to ext_authz and
// proofs[1] to forward-auth (a proof is good for one request), for a
// request to https://api.test<path>. It also returns forward-auth's
// WWW-Authenticate.
func (g *oidcGate) decideDPoP(t *testing.T, method, path, authz string, proofs [2]string) (verdict, string) {
	t.Helper()
	var v verdict
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := map[string]string{"authorization": authz}
	if proofs[0] != "" {
		h["dpop"] = proofs[0]
	}
	resp, err := g.authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "api.test", Scheme: "https", Headers: h},
	}}})
	switch {
	case err != nil:
		v.extAuthz = "rpc error: " + err.Error()
	case resp.GetStatus().GetCode() == 0:
		v.extAuthz = "ok"
	default:
		v.extAuthz = resp.GetStatus().GetMessage()
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.httpAddr+"/_auth", nil)
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "api.test")
	req.Header.Set("X-Forwarded-Uri", path)
	req.Header.Set("Authorization", authz)
	if proofs[1] != "" {
		req.Header.Set("DPoP", proofs[1])
	}
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		v.forwardAuth = "error: " + err.Error()
		return v, ""
	}
	hr.Body.Close()
	reason := hr.Header.Get("X-Scopegate-Reason")
	if hr.StatusCode == http.StatusOK {
		reason = "ok"
	}
	v.forwardAuth = strconv.Itoa(hr.StatusCode) + " " + reason
	return v, hr.Header.Get("WWW-Authenticate")
}

// TestOIDCProviderDPoP has the real authorization server bind tokens to
// a DPoP key (RFC 9449: a proof on the token request), a JWT with cnf.jkt
// and an opaque token whose introspection answer carries it, and sends
// them through ext_authz and forward-auth: with a fresh proof of that key
// allowed as the policy says; as Bearer, with another key's proof, with a
// proof already used, or without one, refused with the DPoP challenge;
// and revoked through scopegate like any token.
func TestOIDCProviderDPoP(t *testing.T) {
	node := requireOIDC(t)
	as := startAuthServer(t, node)
	g := startOIDCGate(t, as.issuer)

	prover, err := tokenmint.NewProver(tokenmint.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tokenmint.NewProver(tokenmint.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://api.test/orders/1"
	proofs := func(p *tokenmint.Prover, method, htu, tok string) [2]string {
		t.Helper()
		var out [2]string
		for i := range out {
			var err error
			if out[i], err = p.Proof(method, htu, tok, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	for _, kind := range []struct{ name, resource string }{{"JWT", jwtResource}, {"opaque", opaqueResource}} {
		tok, typ := as.tokenWith(t, prover, "reader", "orders:read", kind.resource)
		if !strings.EqualFold(typ, "DPoP") {
			t.Fatalf("%s: the authorization server answered token_type %q for a DPoP token request", kind.name, typ)
		}
		if kind.resource == jwtResource {
			claims := decodeJWTClaims(t, tok)
			cnf, _ := claims["cnf"].(map[string]any)
			if cnf["jkt"] != prover.JKT {
				t.Fatalf("the JWT's cnf is %v, want jkt %s", claims["cnf"], prover.JKT)
			}
		}
		good := proofs(prover, "GET", url, tok)
		v, _ := g.decideDPoP(t, "GET", "/orders/1", "DPoP "+tok, good)
		v.want(t, kind.name+" DPoP-bound with its proof", "ok", "200 ok")
		v, www := g.decideDPoP(t, "GET", "/orders/1", "DPoP "+tok, good)
		v.want(t, kind.name+" the same proofs again", "dpop_proof_replayed", "401 dpop_proof_replayed")
		if !strings.HasPrefix(www, "DPoP ") || !strings.Contains(www, `error="invalid_dpop_proof"`) {
			t.Errorf("%s replayed proof: WWW-Authenticate %q, want the DPoP invalid_dpop_proof challenge", kind.name, www)
		}
		v, _ = g.decideDPoP(t, "POST", "/orders", "DPoP "+tok, proofs(prover, "POST", "https://api.test/orders", tok))
		v.want(t, kind.name+" DPoP-bound without the scope", "insufficient_scope", "403 insufficient_scope")
		v, _ = g.decideDPoP(t, "GET", "/orders/1", "Bearer "+tok, [2]string{})
		v.want(t, kind.name+" DPoP-bound presented as Bearer", "dpop_downgrade", "401 dpop_downgrade")
		v, _ = g.decideDPoP(t, "GET", "/orders/1", "DPoP "+tok, [2]string{})
		v.want(t, kind.name+" DPoP-bound without a proof", "dpop_proof_missing", "401 dpop_proof_missing")
		v, _ = g.decideDPoP(t, "GET", "/orders/1", "DPoP "+tok, proofs(other, "GET", url, tok))
		v.want(t, kind.name+" a proof of another key", "dpop_key_mismatch", "401 dpop_key_mismatch")
		v, _ = g.decideDPoP(t, "GET", "/orders/1", "DPoP "+tok, proofs(prover, "GET", "https://api.test/orders/2", tok))
		v.want(t, kind.name+" a proof for another URL", "dpop_uri_mismatch", "401 dpop_uri_mismatch")
	}

	// Revoked through scopegate: the JWT by its jti, the opaque token by
	// its client, both with fresh good proofs.
	jwtTok, _ := as.tokenWith(t, prover, "reader", "orders:read", jwtResource)
	opqTok, _ := as.tokenWith(t, prover, "writer", "orders:write", opaqueResource)
	jti, _ := decodeJWTClaims(t, jwtTok)["jti"].(string)
	if jti == "" {
		t.Fatal("the JWT has no jti")
	}
	writeURL := "https://api.test/orders"
	v, _ := g.decideDPoP(t, "POST", "/orders", "DPoP "+opqTok, proofs(prover, "POST", writeURL, opqTok))
	v.want(t, "opaque DPoP-bound for writing", "ok", "200 ok")
	g.srv.Engine().SetRevocations(decision.NewRevocationSet([]decision.Revocation{
		{ID: "e2e-1", Kind: decision.RevokeToken, Issuer: as.issuer, JTI: jti, Reason: "e2e", CreatedAt: time.Now(), CreatedBy: "e2e"},
		{ID: "e2e-2", Kind: decision.RevokeClient, Issuer: as.issuer, ClientID: "writer", Reason: "e2e", CreatedAt: time.Now(), CreatedBy: "e2e"},
	}))
	g.srv.Engine().MarkRevocationsSynced(time.Now())
	v, _ = g.decideDPoP(t, "GET", "/orders/1", "DPoP "+jwtTok, proofs(prover, "GET", url, jwtTok))
	v.want(t, "JWT DPoP-bound, revoked by jti", "revoked", "401 revoked")
	v, _ = g.decideDPoP(t, "POST", "/orders", "DPoP "+opqTok, proofs(prover, "POST", writeURL, opqTok))
	v.want(t, "opaque DPoP-bound, its client revoked", "revoked", "401 revoked")
}

// decodeJWTClaims returns a JWT's payload, unverified.
func decodeJWTClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// testWriter logs a child's output through t.
type testWriter struct {
	t      *testing.T
	prefix string
}

func (w *testWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		if strings.Contains(line, "WARNING") {
			continue // the runtime and in-memory adapter notices of a test server
		}
		w.t.Log(w.prefix + line)
	}
	return len(p), nil
}
