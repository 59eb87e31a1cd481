package e2e

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server"
)

// The path differential behind real nginx: nginx (examples/nginx) asks
// scopegate about $request_uri and proxies the request as sent to a Go
// upstream whose ServeMux holds the same routes as the policy. Private
// literal routes sit beside public {param} routes that would catch another
// spelling of them. For every generated path sent without a token, the
// upstream must never serve a private route: either scopegate (or nginx)
// refuses the path, or scopegate decided it on the route the upstream
// serves.

// pathDiffRoutes: name, template (policy and ServeMux pattern), private.
var pathDiffRoutes = []struct {
	name, tpl, pattern string
	private            bool
}{
	{"root", "/", "/{$}", false},
	{"healthz", "/healthz", "/healthz", false},
	{"admin", "/admin/{rest...}", "/admin/{rest...}", true},
	{"users-me", "/users/@me", "/users/@me", true},
	{"users", "/users/{id}", "/users/{id}", false},
	{"docs-secret", "/docs/internal:secrets", "/docs/internal:secrets", true},
	{"docs", "/docs/{page}", "/docs/{page}", false},
	{"menu-secret", "/menu/caf\u00e9-secret", "/menu/caf\u00e9-secret", true},
	{"menu", "/menu/{item}", "/menu/{item}", false},
	{"files", "/files/{path...}", "/files/{path...}", false},
}

var pathDiffExemplars = []string{
	"/", "/healthz", "/admin/x", "/users/@me", "/users/7", "/docs/internal:secrets", "/docs/readme",
	"/menu/caf\u00e9-secret", "/menu/tea", "/files/a/b.txt",
}

// routeRecorder is the upstream: a ServeMux of the routes that records,
// by test id, which route served each request.
type routeRecorder struct {
	mu     sync.Mutex
	served map[string]string
	mux    *http.ServeMux
}

func newRouteRecorder() *routeRecorder {
	u := &routeRecorder{served: map[string]string{}, mux: http.NewServeMux()}
	for _, r := range pathDiffRoutes {
		name := r.name
		u.mux.HandleFunc("GET "+r.pattern, func(w http.ResponseWriter, req *http.Request) {
			u.mu.Lock()
			u.served[req.Header.Get(testIDHeader)] = name
			u.mu.Unlock()
			_, _ = io.WriteString(w, "served "+name+"\n")
		})
	}
	return u
}

func (u *routeRecorder) route(id string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.served[id]
}

func pathDiffPolicy(root string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "issuers:\n  - issuer: %s\n    audiences: [%s]\n    jwks_file: %s\n    algorithms: [RS256]\n\nroutes:\n",
		exampleIssuer, exampleAudience, filepath.Join(root, "examples", "keys", "jwks.json"))
	for _, r := range pathDiffRoutes {
		fmt.Fprintf(&b, "  - name: %s\n    match: {methods: [GET], path: %q}\n", r.name, r.tpl)
		if r.private {
			b.WriteString("    require: {all_of: [secret:read]}\n")
		} else {
			b.WriteString("    public: true\n")
		}
	}
	return b.String()
}

// rawGet sends target byte for byte (no client-side cleaning) and returns
// the status, or 0 when the proxy closed the connection without one.
func rawGet(t *testing.T, addr, target, id, token string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: api.test\r\n" + testIDHeader + ": " + id + "\r\nConnection: close\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// spellings returns other spellings of p: escapes of each byte (either hex
// case), dot segments, doubled slashes, a raw '#', escaped separators.
func spellings(r *rand.Rand, p string, n int) []string {
	out := []string{p}
	for range n {
		q := p
		for k := 1 + r.IntN(3); k > 0; k-- {
			i := 1 + r.IntN(max(len(q)-1, 1))
			if i > len(q) {
				i = len(q)
			}
			switch r.IntN(8) {
			case 0, 1, 2:
				if i < len(q) && q[i] != '%' {
					hex := "0123456789ABCDEF"
					if r.IntN(2) == 0 {
						hex = "0123456789abcdef"
					}
					q = q[:i] + "%" + string(hex[q[i]>>4]) + string(hex[q[i]&15]) + q[i+1:]
				}
			case 3:
				q = q[:i] + []string{"/./", "/x/../", "//", "/%2e%2e/", "/.%2e/"}[r.IntN(5)] + q[i:]
			case 4:
				q = q[:i] + []string{"#", "#/../admin/x", "#/../users/@me"}[r.IntN(3)] + q[i:]
			case 5:
				q = q[:i] + []string{"%2F", "%5C", "%25", "%23", "%3F", "%2540", "%C0%AE", ";", "\\"}[r.IntN(9)] + q[i:]
			case 6:
				q += []string{"/", "?x=/../admin", "?#"}[r.IntN(3)]
			default:
				q = "/x/.." + q
			}
		}
		out = append(out, q)
	}
	return out
}

func TestNginxPathDifferential(t *testing.T) {
	requireEnabled(t)
	root, err := decisiontest.FindModuleRoot("")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := decisiontest.ExampleSigner("rsa")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(pathDiffPolicy(root)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(server.Config{
		PolicyPath: policy, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatalf("start scopegate: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeHTTPListener(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})

	up := newRouteRecorder()
	ulis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	us := &http.Server{Handler: up.mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = us.Serve(ulis) }()
	t.Cleanup(func() { us.Close() })

	e := &env{root: root, scopegate: lis.Addr().String(), upstream: &upstream{addr: ulis.Addr().String()}}
	ngx := startNginx(t, e)

	tok, err := signer.Mint(decisiontest.StandardClaims(exampleIssuer, exampleAudience, "alice", "app", "secret:read", time.Hour, time.Now()), nil)
	if err != nil {
		t.Fatal(err)
	}
	private := map[string]bool{}
	for _, r := range pathDiffRoutes {
		private[r.name] = r.private
	}

	// The harness works: each exemplar is served its route, the private
	// ones with a token only.
	n := 0
	for i, p := range pathDiffExemplars {
		want := pathDiffRoutes[i].name
		if pathDiffRoutes[i].private {
			n++
			id := fmt.Sprint("x-", n)
			if st := rawGet(t, ngx.addr, p, id, ""); st == 200 || up.route(id) != "" {
				t.Fatalf("%s without a token: status %d, served %q", p, st, up.route(id))
			}
		}
		n++
		id := fmt.Sprint("x-", n)
		if st := rawGet(t, ngx.addr, p, id, tok); st != 200 || up.route(id) != want {
			t.Fatalf("%s: status %d, served %q; want %q", p, st, up.route(id), want)
		}
	}

	// The spellings, then generated ones: without a token no
	// private route may be served.
	r := rand.New(rand.NewPCG(11, 7))
	targets := []string{"/healthz#/../admin/x", "/users/%40me", "/docs/internal%3Asecrets", "/menu/caf%C3%A9-secret",
		"/admin/%2e%2e/healthz", "/users/%2e%2e/admin/x", "/healthz/..%2Fadmin/x"}
	for _, p := range pathDiffExemplars {
		targets = append(targets, spellings(r, p, 40)...)
	}
	reachedPublic := 0
	for _, target := range targets {
		n++
		id := fmt.Sprint("g-", n)
		st := rawGet(t, ngx.addr, target, id, "")
		got := up.route(id)
		if private[got] {
			t.Errorf("%q without a token: the upstream served private route %q (status %d)", target, got, st)
		}
		if got != "" {
			reachedPublic++
		}
	}
	if reachedPublic < len(targets)/10 {
		t.Errorf("only %d of %d generated paths reached the upstream: the harness is broken", reachedPublic, len(targets))
	}
	t.Logf("%d paths through nginx; %d reached a public route", len(targets), reachedPublic)
}
