package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// secretDSN is a PostgreSQL DSN carrying pw twice (user information and
// the password parameter): the test database when SCOPEGATE_TEST_POSTGRES
// names one (it accepts any password under trust authentication), else a
// port nothing listens on, so that every store call fails and its error
// texts are exercised.
func secretDSN(t *testing.T, pw string) string {
	t.Helper()
	base := os.Getenv("SCOPEGATE_TEST_POSTGRES")
	if base == "" {
		base = "postgres://scopegate@" + freeport.Addr(t) + "/scopegate?sslmode=disable&connect_timeout=1"
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	q := u.Query()
	q.Set("password", pw)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestNoSecretOnAnyListener starts scopegate serve with a store DSN that
// carries a password and every listener on (pprof included), sends the
// admin token to every endpoint of every listener (valid, and altered so
// that it is refused), and checks that neither the password nor the token
// appears in any response (bodies, headers, gRPC messages and metadata),
// in the logs or in the audit records.
func TestNoSecretOnAnyListener(t *testing.T) {
	const password = "Pg-Pa55w0rd-0f-The-St0re"
	dsn := secretDSN(t, password)
	adminTok := mint(t, "--scope", "scopegate:admin orders:read", "--sub", "ops", "--client", "ops-cli")
	// An altered token is refused; its text must not be echoed either.
	badTok := adminTok[:len(adminTok)-4] + "AAAA"
	grpcAddr, httpAddr, opsAddr, adminAddr := freeport.Addr(t), freeport.Addr(t), freeport.Addr(t), freeport.Addr(t)
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	args := []string{"serve", "--policy", examplePolicy(t), "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--metrics-addr", opsAddr, "--pprof", "--admin-addr", adminAddr, "--store", dsn,
		"--store-migrate-timeout", "2s", "--shutdown-timeout", "1s", "--log-level", "debug", "--log-format", "text", "--audit", "stdout,file:" + auditFile}
	saved := os.Args
	os.Args = append([]string{"scopegate"}, args...)
	t.Cleanup(func() { os.Args = saved })

	ctx, cancel := context.WithCancel(context.Background())
	var serveOut, serveErr bytes.Buffer
	outW, errW := &syncWriter{w: &serveOut}, &syncWriter{w: &serveErr}
	done := make(chan int, 1)
	go func() {
		c := &cli{stdin: strings.NewReader(""), stdout: outW, stderr: errW}
		done <- c.run(ctx, args)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	}
	t.Cleanup(stop)

	var seen []string // every response, labelled
	record := func(what string, parts ...any) {
		seen = append(seen, what+": "+fmt.Sprint(parts...))
	}
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(method, u string, body string, hdr ...string) (int, error) {
		req, err := http.NewRequest(method, u, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		record(method+" "+u, resp.StatusCode, resp.Header, string(b))
		return resp.StatusCode, nil
	}

	// Wait for every listener.
	deadline := time.Now().Add(20 * time.Second)
	for _, u := range []string{"http://" + opsAddr + "/healthz", "http://" + httpAddr + "/healthz"} {
		for {
			if _, err := get("GET", u, ""); err == nil {
				break
			}
			select {
			case code := <-done:
				t.Fatalf("serve exited with %d: %s", code, serveErr.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not answer: %s", u, serveErr.String())
			}
		}
	}
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	rpc := func(what string, resp any, err error, md ...metadata.MD) {
		st := status.Convert(err)
		record(what, st.Code(), " ", st.Message(), " ", resp, " ", md)
	}
	callCtx := func(tok string) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		if tok != "" {
			c = metadata.AppendToOutgoingContext(c, "authorization", "Bearer "+tok)
		}
		return c
	}

	for _, tok := range []string{adminTok, badTok} {
		// Operator listener.
		ops := "http://" + opsAddr
		for _, p := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol",
			"/debug/pprof/goroutine?debug=2", "/debug/pprof/heap?debug=1", "/debug/pprof/allocs?debug=1", "/debug/pprof/threadcreate?debug=1",
			"/debug/pprof/block?debug=1", "/debug/pprof/mutex?debug=1", "/debug/pprof/nothing", "/nothing"} {
			_, _ = get("GET", ops+p, "", "Authorization", "Bearer "+tok)
		}
		_, _ = get("POST", ops+"/debug/pprof/symbol", "0x1", "Authorization", "Bearer "+tok)

		// HTTP listener: forward-auth in each style, AuthZEN, probes.
		h := "http://" + httpAddr
		auth := []string{"Authorization", "Bearer " + tok}
		_, _ = get("GET", h+"/check", "", append(auth, "X-Original-Method", "GET", "X-Original-URI", "/orders/1")...)
		_, _ = get("GET", h+"/check", "", append(auth, "X-Original-Method", "DELETE", "X-Original-URI", "/admin/x")...)
		_, _ = get("GET", h+"/", "", append(auth, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/orders")...)
		_, _ = get("GET", h+"/check", "", append(auth, "X-Original-Method", "GET")...)
		_, _ = get("GET", h+"/check", "", "Authorization", "Bearer "+tok+","+tok, "X-Original-Method", "GET", "X-Original-URI", "/orders/1")
		_, _ = get("GET", h+"/check", "", append(auth, "X-Original-Method", "GET", "X-Original-URI", "/healthz")...)
		_, _ = get("GET", h+"/healthz", "", auth...)
		_, _ = get("GET", h+"/readyz", "", auth...)
		_, _ = get("GET", h+"/.well-known/authzen-configuration", "", auth...)
		ev := `{"subject":{"type":"user","id":"ops","properties":{"token":"` + tok + `"}},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/orders/1"}}`
		_, _ = get("POST", h+"/access/v1/evaluation", ev, "Content-Type", "application/json")
		_, _ = get("POST", h+"/access/v1/evaluation", ev[:len(ev)-3], "Content-Type", "application/json")
		_, _ = get("POST", h+"/access/v1/evaluation", strings.Replace(ev, `"id":"ops"`, `"id":"ops","ID":"`+tok+`"`, 1), "Content-Type", "application/json")
		_, _ = get("POST", h+"/access/v1/evaluation", `{"subject":{"type":"user","id":"mallory"},"action":{"name":"GET"},"resource":{"type":"http_path","id":"/orders/1"}}`,
			append(auth, "Content-Type", "application/json")...)
		_, _ = get("POST", h+"/access/v1/evaluations", `{"subject":{"type":"user","id":"ops","properties":{"token":"`+tok+`"}},"resource":{"type":"http_path","id":"/orders/1"},"evaluations":[{"action":{"name":"GET"}},{"action":{"name":"`+tok[:20]+`"}}]}`,
			"Content-Type", "application/json")
		_, _ = get("POST", h+"/access/v1/evaluation", ev, "Content-Type", "text/plain")

		// gRPC decision listener.
		conn := dial(grpcAddr)
		ext := authv3.NewAuthorizationClient(conn)
		for _, path := range []string{"/orders/1", "/admin/x", "/nothing"} {
			var hdr, trl metadata.MD
			r, err := ext.Check(callCtx(""), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: path, Headers: map[string]string{"authorization": "Bearer " + tok}}}}}, grpc.Header(&hdr), grpc.Trailer(&trl))
			rpc("ext_authz "+path, r, err, hdr, trl)
		}
		r, err := ext.Check(callCtx(""), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders/1", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte("Bearer " + tok)}, {Key: "authorization", RawValue: []byte("Bearer " + tok)}}}}}}})
		rpc("ext_authz raw twice", r, err)
		az := scopegatev1.NewAuthorizerClient(conn)
		for _, req := range []*scopegatev1.CheckRequest{
			{Method: "GET", Path: "/orders/1", Token: tok, Explain: true},
			{Method: "GET", Path: "/admin/x", Headers: map[string]string{"Authorization": "Bearer " + tok}, Explain: true},
			{Method: "GET", Path: "/orders/1", Token: tok, Headers: map[string]string{"Authorization": "Bearer " + tok}},
			{Method: "GET", Path: "/orders/1", Token: tok, SourceAddress: tok[:30]},
		} {
			r, err := az.Check(callCtx(""), req)
			rpc("authorizer", r, err)
		}
		hr, err := healthpb.NewHealthClient(conn).Check(callCtx(tok), &healthpb.HealthCheckRequest{})
		rpc("health", hr, err)
		reflect := func(conn *grpc.ClientConn, tok string) {
			stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(callCtx(tok))
			if err == nil {
				err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			}
			var resp *reflectionpb.ServerReflectionResponse
			if err == nil {
				resp, err = stream.Recv()
			}
			rpc("reflection", resp, err)
		}
		reflect(conn, tok)

		// Admin listener.
		aconn := dial(adminAddr)
		adm := scopegatev1.NewAdminClient(aconn)
		for _, who := range []string{tok, ""} {
			pv, err := adm.GetPolicyVersion(callCtx(who), &scopegatev1.GetPolicyVersionRequest{})
			rpc("admin GetPolicyVersion", pv, err)
			rv, err := adm.Revoke(callCtx(who), &scopegatev1.RevokeRequest{Target: &scopegatev1.RevokeRequest_Subject{Subject: "mallory"}, Reason: "secrets test"})
			rpc("admin Revoke", rv, err)
			lr, err := adm.ListRevocations(callCtx(who), &scopegatev1.ListRevocationsRequest{})
			rpc("admin ListRevocations", lr, err)
			if rv != nil {
				ur, err := adm.Unrevoke(callCtx(who), &scopegatev1.UnrevokeRequest{Id: rv.GetRevocation().GetId()})
				rpc("admin Unrevoke", ur, err)
			}
			ur, err := adm.Unrevoke(callCtx(who), &scopegatev1.UnrevokeRequest{Id: "no-such-id"})
			rpc("admin Unrevoke unknown", ur, err)
			us, err := adm.UsageReport(callCtx(who), &scopegatev1.UsageReportRequest{})
			rpc("admin UsageReport", us, err)
			rl, err := adm.ReloadPolicy(callCtx(who), &scopegatev1.ReloadPolicyRequest{})
			rpc("admin ReloadPolicy", rl, err)
			reflect(aconn, who)
		}
		_, err = adm.GetPolicyVersion(metadata.AppendToOutgoingContext(callCtx(""), "authorization", "Basic "+tok), &scopegatev1.GetPolicyVersionRequest{})
		rpc("admin basic", nil, err)
	}
	// The metrics again, after all of the above was counted.
	_, _ = get("GET", "http://"+opsAddr+"/metrics", "")
	stop()
	audit, _ := os.ReadFile(auditFile)
	record("audit file", string(audit))
	record("stdout", serveOut.String())
	record("stderr", serveErr.String())

	all := strings.Join(seen, "\n")
	// The test must have reached what it checks: the redacted command
	// line, an allow, the admin API answering and the logs.
	for _, want := range []string{":xxxxx@", "x-scopegate-subject", "policy_version", "admin call", "decision"} {
		if !strings.Contains(strings.ToLower(all), want) {
			t.Errorf("the responses and logs never mention %q: the test did not reach what it checks", want)
		}
	}
	escaped := url.QueryEscape(password)
	sig := adminTok[strings.LastIndexByte(adminTok, '.')+1:]
	payload := strings.Split(adminTok, ".")[1]
	for what, secret := range map[string]string{"store password": password, "store password (escaped)": escaped,
		"admin token": adminTok, "admin token signature": sig, "admin token payload": payload, "altered token": badTok, "altered token signature": badTok[strings.LastIndexByte(badTok, '.')+1:]} {
		for _, s := range seen {
			if strings.Contains(s, secret) {
				t.Errorf("the %s appears in %.300s", what, s)
			}
		}
	}
	if t.Failed() {
		t.Logf("%d responses checked", len(seen))
		if os.Getenv("SCOPEGATE_TEST_DUMP") != "" {
			t.Log(all)
		}
	}
}
