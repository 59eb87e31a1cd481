package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

// EnvProxies turns the tests on.
const EnvProxies = "SCOPEGATE_E2E_PROXIES"

// The ports the example configs name; the tests replace them.
const (
	exampleNginxAddr     = "127.0.0.1:18480"
	exampleUpstreamAddr  = "127.0.0.1:18481"
	exampleScopegateAddr = "127.0.0.1:18482"
	exampleCaddySite     = "http://:18490"
)

// The example policy's issuer and audience (examples/policy.yaml).
const (
	exampleIssuer   = "https://id.example.com/"
	exampleAudience = "orders-api"
)

// testIDHeader tags each request, so the upstream's record of it can be
// found.
const testIDHeader = "X-E2e-Id"

// env is scopegate and the upstream, shared by every proxy.
type env struct {
	root      string // module root
	scopegate string // host:port of scopegate's HTTP listener
	upstream  *upstream
	signer    *decisiontest.Signer
}

// upstream records the headers and body of every request it receives.
type upstream struct {
	addr string
	mu   sync.Mutex
	got  map[string]received
}

type received struct {
	method, uri string
	header      http.Header
	body        []byte
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.got[r.Header.Get(testIDHeader)] = received{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: body}
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "upstream reached\n")
}

func (u *upstream) lookup(id string) (received, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.got[id]
	return r, ok
}

func requireEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvProxies) != "1" {
		t.Skip("end-to-end tests with real nginx and Caddy are off: set " + EnvProxies + "=1 (the CI script .ci/e2e does, after installing them)")
	}
}

// startEnv starts scopegate (in-process, the example policy and keys) and
// the upstream, each on a free loopback port.
func startEnv(t *testing.T) *env {
	t.Helper()
	root, err := decisiontest.FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{root: root}
	if e.signer, err = decisiontest.ExampleSigner("rsa"); err != nil {
		t.Fatal(err)
	}

	srv, err := server.NewServer(server.Config{
		PolicyPath:      filepath.Join(root, "examples", "policy.yaml"),
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatalf("start scopegate: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.scopegate = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.ServeHTTPListener(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("scopegate HTTP listener: %v", err)
		}
	})

	e.upstream = &upstream{got: map[string]received{}}
	ulis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.upstream.addr = ulis.Addr().String()
	us := &http.Server{Handler: e.upstream, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = us.Serve(ulis) }()
	t.Cleanup(func() { us.Close() })
	return e
}

func (e *env) token(t *testing.T, sub, scope string, ttl time.Duration) string {
	t.Helper()
	tok, err := e.signer.Mint(decisiontest.StandardClaims(exampleIssuer, exampleAudience, sub, "app", scope, ttl, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// render copies an example config, replacing each old string (which must
// occur) with its new one.
func render(t *testing.T, src, dst string, repl ...string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("%s no longer names %s: update the test's substitutions", src, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	if err := os.WriteFile(dst, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// proxy is a running proxy process.
type proxy struct {
	name string
	addr string // host:port clients use
	cmd  *exec.Cmd
	logs func() string
}

// startProcess starts cmd in its own process group, stops it (signal,
// then kill) at cleanup, and waits until addr accepts connections.
func startProcess(t *testing.T, name, addr string, cmd *exec.Cmd, stop os.Signal, logs func() string) *proxy {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			// Our own process group: the proxy and its workers.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, logs())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return &proxy{name: name, addr: addr, cmd: cmd, logs: logs}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before listening (%v):\n%s", name, err, logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s:\n%s", name, addr, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lookBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			if c := filepath.Join(dir, name); isExecutable(c) {
				return c
			}
		}
		t.Fatalf("%s=1 but %s is not installed: install it (apt-get install %s) or unset %s", EnvProxies, name, name, EnvProxies)
	}
	return p
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// proxyDir returns a fresh directory a proxy's unprivileged workers can
// read (nginx run as root hands requests to workers running as nobody).
func proxyDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "scopegate-e2e-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startNginx(t *testing.T, e *env) *proxy {
	t.Helper()
	bin := lookBinary(t, "nginx")
	dir := proxyDir(t, "nginx")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeport.Addr(t)
	render(t, filepath.Join(e.root, "examples", "nginx", "nginx.conf"), filepath.Join(dir, "nginx.conf"),
		exampleNginxAddr, addr, exampleUpstreamAddr, e.upstream.addr, exampleScopegateAddr, e.scopegate)
	var out bytes.Buffer
	test := exec.Command(bin, "-t", "-p", dir+"/", "-e", "error.log", "-c", "nginx.conf")
	test.Stdout, test.Stderr = &out, &out
	if err := test.Run(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out.String())
	}
	cmd := exec.Command(bin, "-p", dir+"/", "-e", "error.log", "-c", "nginx.conf")
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return stderr.String() + string(b)
	}
	return startProcess(t, "nginx", addr, cmd, syscall.SIGQUIT, logs)
}

func startCaddy(t *testing.T, e *env) *proxy {
	t.Helper()
	bin := lookBinary(t, "caddy")
	dir := proxyDir(t, "caddy")
	addr := freeport.Addr(t)
	_, port, _ := net.SplitHostPort(addr)
	render(t, filepath.Join(e.root, "examples", "caddy", "Caddyfile"), filepath.Join(dir, "Caddyfile"),
		exampleCaddySite, "http://:"+port, exampleUpstreamAddr, e.upstream.addr, exampleScopegateAddr, e.scopegate)
	cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "xdg", "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "xdg", "config"),
		"HOME="+dir)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	return startProcess(t, "caddy", addr, cmd, syscall.SIGTERM, logs.String)
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proxyCase is one request through a proxy and what the client and the
// upstream must see.
type proxyCase struct {
	method, target string // the target is sent as is (no cleaning)
	token          string
	header         []string // extra request header pairs
	rawHeader      []string // extra pairs, names sent exactly as written
	body           string

	status    int
	reason    string // x-scopegate-reason the client sees
	challenge string // WWW-Authenticate: exact, or a prefix when it ends with "…"
	// reached: the upstream got the request, with these x-scopegate-*
	// values ("" = absent or empty).
	reached  bool
	upstream map[string]string
	// proxyOwn: the named proxy refuses the request itself, before asking
	// scopegate, with this status (still a deny).
	proxyOwn map[string]int
}

func (c proxyCase) run(t *testing.T, e *env, p *proxy, id string) {
	t.Helper()
	var body io.Reader = http.NoBody
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, "http://"+p.addr+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = c.target
	req.Header.Set(testIDHeader, id)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(c.header); i += 2 {
		req.Header.Add(c.header[i], c.header[i+1])
	}
	for i := 0; i+1 < len(c.rawHeader); i += 2 {
		// Sent with exactly this spelling (no canonicalization).
		req.Header[c.rawHeader[i]] = append(req.Header[c.rawHeader[i]], c.rawHeader[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", c.method, c.target, p.name, err)
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(resp.Body)

	got, reached := e.upstream.lookup(id)
	if st, ok := c.proxyOwn[p.name]; ok {
		if resp.StatusCode != st || reached {
			t.Errorf("status %d (upstream reached: %v), want %s's own %d", resp.StatusCode, reached, p.name, st)
		}
		return
	}
	if resp.StatusCode != c.status {
		t.Errorf("status %d, want %d; body %q", resp.StatusCode, c.status, respBody)
	}
	if reached != c.reached {
		t.Fatalf("upstream reached = %v, want %v", reached, c.reached)
	}
	if reached {
		for name := range got.header {
			if real, ok := lookAlike(name); ok {
				t.Errorf("the upstream got %s (%q), a look-alike of %s that CGI, WSGI and PHP read as it", name, got.header[name], real)
			}
		}
		for name, want := range c.upstream {
			vals := got.header.Values(name)
			v := strings.Join(vals, ",")
			if v != want || len(vals) > 1 {
				t.Errorf("upstream %s = %q, want %q", name, vals, want)
			}
			if strings.Contains(v, "{") {
				t.Errorf("upstream %s carries a placeholder %q", name, v)
			}
		}
		if string(got.body) != c.body {
			t.Errorf("upstream body %q, want %q", got.body, c.body)
		}
		if !bytes.Contains(respBody, []byte("upstream reached")) {
			t.Errorf("client body %q is not the upstream's", respBody)
		}
		return
	}
	if r := resp.Header.Get("X-Scopegate-Reason"); r != c.reason {
		t.Errorf("x-scopegate-reason %q, want %q", r, c.reason)
	}
	if !bytes.Contains(respBody, []byte(`"reason":"`+c.reason+`"`)) {
		t.Errorf("deny body %q does not name reason %s", respBody, c.reason)
	}
	www := resp.Header.Values("Www-Authenticate")
	if len(www) > 1 {
		t.Errorf("%d WWW-Authenticate headers: %q", len(www), www)
	}
	gotWWW := strings.Join(www, ",")
	if p, ok := strings.CutSuffix(c.challenge, "…"); ok {
		if !strings.HasPrefix(gotWWW, p) {
			t.Errorf("WWW-Authenticate %q, want prefix %q", gotWWW, p)
		}
	} else if gotWWW != c.challenge {
		t.Errorf("WWW-Authenticate %q, want %q", gotWWW, c.challenge)
	}
}

// identityHeaders are the headers scopegate sets for the upstream.
var identityHeaders = []string{"X-Scopegate-Subject", "X-Scopegate-Client", "X-Scopegate-Scopes"}

// lookAlike reports whether name is another spelling of an identity
// header that a CGI-style upstream maps to the same variable (case
// ignored, '_' for '-'), and which one.
func lookAlike(name string) (string, bool) {
	for _, h := range identityHeaders {
		if name != h && strings.EqualFold(strings.ReplaceAll(name, "_", "-"), h) {
			return h, true
		}
	}
	return "", false
}

// lookAlikes are client-sent spellings of the identity headers, each with
// an underscore, in several cases.
var lookAlikes = []string{
	"X_Scopegate_Subject", "mallory", "x_scopegate_subject", "mallory", "X-Scopegate_Subject", "mallory", "X_SCOPEGATE-SUBJECT", "mallory",
	"X_Scopegate_Client", "evil-app", "X-Scopegate_Client", "evil-app", "x_scopegate-client", "evil-app",
	"X_Scopegate_Scopes", "admin:all", "X_Scopegate-Scopes", "admin:all", "X-SCOPEGATE_SCOPES", "admin:all",
}

// TestProxies runs one case table through nginx and Caddy, each with
// scopegate as its auth service.
func TestProxies(t *testing.T) {
	requireEnabled(t)
	e := startEnv(t)
	read := e.token(t, "alice", "orders:read", time.Hour)
	write := e.token(t, "alice", "orders:read orders:write", time.Hour)
	expired := e.token(t, "alice", "orders:read", -time.Minute)
	none := map[string]string{"X-Scopegate-Subject": "", "X-Scopegate-Client": "", "X-Scopegate-Scopes": ""}

	cases := map[string]proxyCase{
		"allowed request reaches the upstream; forged identity is overwritten": {
			method: "GET", target: "/orders/1?x=1", token: read,
			header: []string{"X-Scopegate-Subject", "mallory", "X-Scopegate-Scopes", "admin:all"},
			status: 200, reached: true,
			upstream: map[string]string{"X-Scopegate-Subject": "alice", "X-Scopegate-Client": "app", "X-Scopegate-Scopes": "orders:read"},
		},
		"allowed POST keeps its body": {
			method: "POST", target: "/orders", token: write, header: []string{"Content-Type", "application/json"}, body: `{"item":"book"}`,
			status: 200, reached: true,
			upstream: map[string]string{"X-Scopegate-Subject": "alice", "X-Scopegate-Scopes": "orders:read orders:write"},
		},
		"no token": {
			method: "GET", target: "/orders/1", status: 401, reason: "token_missing", challenge: `Bearer realm="scopegate"`,
		},
		"expired token": {
			method: "GET", target: "/orders/1", token: expired, status: 401, reason: "token_expired",
			challenge: `Bearer realm="scopegate", error="invalid_token", error_description="…`,
		},
		"insufficient scope": {
			method: "POST", target: "/orders", token: read, body: `{}`, status: 403, reason: "insufficient_scope",
			challenge: `Bearer realm="scopegate", error="insufficient_scope", scope="orders:write", error_description="…`,
		},
		"method not allowed": {
			method: "DELETE", target: "/orders/1", token: write, status: 403, reason: "method_not_allowed",
		},
		"no route": {
			method: "GET", target: "/internal/metrics", token: write, status: 403, reason: "no_route",
		},
		"dot segments climb into admin": {
			method: "GET", target: "/orders/../admin/x", token: read, status: 403, reason: "insufficient_scope",
			challenge: `Bearer realm="scopegate", error="insufficient_scope", scope="admin:all", error_description="…`,
		},
		"encoded dot segments are refused": {
			// Servers disagree: nginx resolves %2e%2e, Go's ServeMux keeps it
			// as a name.
			method: "GET", target: "/orders/%2e%2e/admin/x", token: read, status: 400, reason: "path_invalid",
		},

		"encoded slash": {
			method: "GET", target: "/orders/1%2F..%2F..%2Fadmin%2Fx", token: read, status: 400, reason: "path_invalid",
		},
		"two authorization headers": {
			method: "GET", target: "/orders/1", header: []string{"Authorization", "Bearer " + read, "Authorization", "Bearer " + write},
			status: 400, reason: "request_invalid", challenge: `Bearer realm="scopegate", error="invalid_request", error_description="…`,
			// nginx refuses a duplicate Authorization header itself.
			proxyOwn: map[string]int{"nginx": 400},
		},
		"forged forwarded headers do not move the check": {
			method: "GET", target: "/admin/x",
			header: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/healthz", "X-Original-Method", "GET", "X-Original-URI", "/healthz"},
			status: 401, reason: "token_missing", challenge: `Bearer realm="scopegate"`,
		},
		"public route without a token": {
			method: "GET", target: "/healthz", status: 200, reached: true, upstream: none,
		},
		"look-alike identity headers never reach the upstream": {
			method: "GET", target: "/orders/1", token: read, rawHeader: lookAlikes,
			status: 200, reached: true,
			upstream: map[string]string{"X-Scopegate-Subject": "alice", "X-Scopegate-Client": "app", "X-Scopegate-Scopes": "orders:read"},
		},
		"look-alike identity headers on a public route": {
			method: "GET", target: "/healthz", rawHeader: lookAlikes, status: 200, reached: true, upstream: none,
		},
		"public route: forged identity is dropped": {
			method: "GET", target: "/healthz", header: []string{"X-Scopegate-Subject", "admin", "X-Scopegate-Client", "root"},
			status: 200, reached: true, upstream: none,
		},
	}

	for _, name := range []string{"nginx", "caddy"} {
		t.Run(name, func(t *testing.T) {
			var p *proxy
			switch name {
			case "nginx":
				p = startNginx(t, e)
			case "caddy":
				p = startCaddy(t, e)
			}
			n := 0
			for cname, c := range cases {
				n++
				t.Run(cname, func(t *testing.T) {
					c.run(t, e, p, fmt.Sprintf("%s-%d", name, n))
				})
			}
		})
	}
}

// TestProxiesScopegateDown checks that a proxy fails closed when scopegate
// does not answer: the client gets a 5xx and the upstream is not reached.
func TestProxiesScopegateDown(t *testing.T) {
	requireEnabled(t)
	e := startEnv(t)
	e.scopegate = freeport.Addr(t) // nothing listens there
	for _, name := range []string{"nginx", "caddy"} {
		t.Run(name, func(t *testing.T) {
			var p *proxy
			if name == "nginx" {
				p = startNginx(t, e)
			} else {
				p = startCaddy(t, e)
			}
			resp, err := http.Get("http://" + p.addr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 500 {
				t.Errorf("status %d with scopegate down, want a 5xx", resp.StatusCode)
			}
			e.upstream.mu.Lock()
			n := len(e.upstream.got)
			e.upstream.mu.Unlock()
			if n != 0 {
				t.Errorf("the upstream got %d requests", n)
			}
		})
	}
}
