package replicatest_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scopegate/scopegate/decision/decisiontest"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/server/servertest/freeport"
)

const (
	envDSN     = "SCOPEGATE_TEST_POSTGRES"
	envControl = "SCOPEGATE_TEST_PG_CONTROL"
	issuer     = "https://issuer.test/"
	audience   = "items-api"
	// propagationBound is the bound on how long another replica may
	// take to enforce a revocation.
	propagationBound = time.Second
)

const policyYAML = `version: replicas
issuers:
  - issuer: https://issuer.test/
    audiences: [items-api]
    jwks_file: jwks.json
    algorithms: [ES256]
    device_claim: did
routes:
  - name: items-read
    match: {methods: [GET], path: "/api/items/{id}"}
    require: {all_of: [items:read]}
  - name: items-secure
    match: {methods: [GET], path: "/api/secure/{id}"}
    require: {all_of: [items:read]}
    when:
      step_up: {acr: [aal2, aal3]}
default: deny
`

// buildDir holds the binary; TestMain removes it.
var buildDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds cmd/scopegate once per test binary.
var binary = sync.OnceValues(func() (string, error) {
	root, err := decisiontest.FindModuleRoot("")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "scopegate-replicatest-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	bin := filepath.Join(dir, "scopegate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/scopegate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/scopegate: %v\n%s", err, out)
	}
	return bin, nil
})

// cluster is the shared setup of the replicas: a policy with its keys, and
// tokens.
type cluster struct {
	t      *testing.T
	dir    string
	signer *decisiontest.Signer
	admin  string // an admin token
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if _, err := binary(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: t.TempDir()}
	var err error
	if c.signer, err = decisiontest.NewECSigner("k1"); err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(c.dir, "policy.yaml"), []byte(policyYAML), 0o600))
	must(t, os.WriteFile(filepath.Join(c.dir, "jwks.json"), decisiontest.JWKS(c.signer), 0o600))
	c.admin = c.mint("ops", "ops-cli", "scopegate:admin")
	return c
}

func (c *cluster) mint(sub, client, scope string) string {
	c.t.Helper()
	tok, err := c.signer.Mint(decisiontest.StandardClaims(issuer, audience, sub, client, scope, time.Hour, time.Now()), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// replica is one `scopegate serve` process.
type replica struct {
	c                        *cluster
	name                     string
	store                    string
	grpcAddr, admin, metrics string
	extraArgs                []string
	log                      string
	cmd                      *exec.Cmd
	exited                   chan struct{}
	conn, adminConn          *grpc.ClientConn
	check                    authv3.AuthorizationClient
	adminClient              scopegatev1.AdminClient
}

func (c *cluster) replica(name, store string, extra ...string) *replica {
	r := &replica{c: c, name: name, store: store, extraArgs: extra,
		grpcAddr: freeport.Addr(c.t), admin: freeport.Addr(c.t), metrics: freeport.Addr(c.t),
		log: filepath.Join(c.dir, name+".log")}
	r.start()
	c.t.Cleanup(func() {
		r.stop()
		if r.conn != nil {
			r.conn.Close()
			r.adminConn.Close()
		}
	})
	return r
}

func (r *replica) start() {
	t := r.c.t
	t.Helper()
	bin, _ := binary()
	args := append([]string{"serve",
		"--policy", filepath.Join(r.c.dir, "policy.yaml"),
		"--grpc-addr", r.grpcAddr, "--http-addr", "", "--metrics-addr", r.metrics,
		"--admin-addr", r.admin, "--store", r.store,
		"--audit", "off", "--usage=false", "--watch-policy=false",
		"--revocation-resync", "2s", "--shutdown-timeout", "2s",
	}, r.extraArgs...)
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan struct{})
	go func() {
		_ = r.cmd.Wait()
		logf.Close()
		close(r.exited)
	}()
	if r.conn == nil {
		r.conn, err = grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(t, err)
		r.adminConn, err = grpc.NewClient(r.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(t, err)
		r.check = authv3.NewAuthorizationClient(r.conn)
		r.adminClient = scopegatev1.NewAdminClient(r.adminConn)
	}
	// Ready when it decides and its Admin API answers.
	probe := r.c.mint("probe", "probe", "items:read")
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-r.exited:
			t.Fatalf("%s exited at start:\n%s", r.name, r.logTail())
		default:
		}
		if allow, code, err := r.decide(probe); err == nil && allow {
			if _, err := r.adminClient.GetPolicyVersion(r.asAdmin(context.Background()), &scopegatev1.GetPolicyVersionRequest{}); err == nil {
				return
			}
		} else if err == nil {
			t.Fatalf("%s denies the probe token: %s\n%s", r.name, code, r.logTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 20s:\n%s", r.name, r.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; a process that does not stop is killed.
func (r *replica) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

func (r *replica) restart() {
	r.stop()
	r.start()
}

func (r *replica) logTail() string {
	b, _ := os.ReadFile(r.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func (r *replica) asAdmin(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.c.admin)
}

// decide asks the replica's ext_authz whether tok may GET an item.
func (r *replica) decide(tok string) (allow bool, code string, err error) {
	return r.decideAt(tok, "/api/items/1")
}

// decideAt asks for a decision on GET path.
func (r *replica) decideAt(tok, path string) (allow bool, code string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := r.check.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: "api.test",
			Headers: map[string]string{":method": "GET", ":path": path, ":authority": "api.test", "authorization": "Bearer " + tok},
		}},
	}})
	if err != nil {
		return false, "", err
	}
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		return true, "ok", nil
	}
	return false, resp.GetStatus().GetMessage(), nil
}

func (r *replica) mustDecide(tok string) (bool, string) {
	r.c.t.Helper()
	allow, code, err := r.decide(tok)
	if err != nil {
		r.c.t.Fatalf("%s: Check: %v\n%s", r.name, err, r.logTail())
	}
	return allow, code
}

// syncAge scrapes scopegate_revocation_sync_age_seconds.
func (r *replica) syncAge() (float64, error) {
	return r.scrape("scopegate_revocation_sync_age_seconds")
}

// scrape reads one sample (a name with its labels, as /metrics prints it).
func (r *replica) scrape(sample string) (float64, error) {
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, errors.New("no " + sample + " in /metrics")
}

// waitFor polls cond every millisecond until it holds or within passes,
// and returns how long it took.
func waitFor(within time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > within {
			return time.Since(start), false
		}
		time.Sleep(time.Millisecond)
	}
}

// pgDSN returns the test database's DSN with search_path set to a schema
// of its own, created now and dropped at cleanup, so that runs sharing the
// database do not collide.
func pgDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		t.Skip(envDSN + " not set: skipping the replica tests against PostgreSQL")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "scopegate_replicas_" + hex.EncodeToString(b[:])
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA IF EXISTS " + pgx.Identifier{schema}.Sanitize() + " CASCADE"); err != nil {
			t.Errorf("cleanup: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s: %v", envDSN, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// revoke revokes client through r's Admin API and returns the id.
func (r *replica) revokeClient(client string) string {
	r.c.t.Helper()
	resp, err := r.adminClient.Revoke(r.asAdmin(context.Background()), &scopegatev1.RevokeRequest{
		Target: &scopegatev1.RevokeRequest_ClientId{ClientId: client}, Reason: "replica test",
	})
	if err != nil {
		r.c.t.Fatalf("%s: Revoke: %v", r.name, err)
	}
	return resp.GetRevocation().GetId()
}

// Two processes share PostgreSQL: a revocation made on one is enforced by
// the other well within a second (the figure is printed), and survives a
// restart; an unrevoke propagates back the same way.
func TestReplicasSharePostgres(t *testing.T) {
	dsn := pgDSN(t)
	c := newCluster(t)
	a := c.replica("replica-a", dsn)
	b := c.replica("replica-b", dsn)

	victim := c.mint("alice", "web-app", "items:read")
	bystander := c.mint("bob", "other-app", "items:read")
	if allow, code := b.mustDecide(victim); !allow {
		t.Fatalf("before the revocation B denies: %s", code)
	}

	id := a.revokeClient("web-app")
	start := time.Now()
	if allow, code := a.mustDecide(victim); allow || code != "revoked" {
		t.Fatalf("A, which took the revocation, still decides %v %s", allow, code)
	}
	var lastCode string
	_, ok := waitFor(5*time.Second, func() bool {
		allow, code := b.mustDecide(victim)
		lastCode = code
		return !allow && code == "revoked"
	})
	took := time.Since(start)
	if !ok {
		t.Fatalf("B did not deny the revoked client's token within 5s (last answer %q)\n%s", lastCode, b.logTail())
	}
	msg := fmt.Sprintf("revocation propagated in %.1f ms", float64(took.Microseconds())/1000)
	fmt.Println(msg)
	t.Log(msg)
	if took > propagationBound {
		t.Errorf("propagation took %s; the bound is %s", took, propagationBound)
	}
	if allow, code := b.mustDecide(bystander); !allow {
		t.Errorf("B denies another client's token: %s", code)
	}

	// Restart B: the revocation is loaded from the store at start.
	b.restart()
	if allow, code := b.mustDecide(victim); allow || code != "revoked" {
		t.Errorf("after B's restart: %v %s; want revoked", allow, code)
	}
	list, err := b.adminClient.ListRevocations(b.asAdmin(context.Background()), &scopegatev1.ListRevocationsRequest{})
	if err != nil || len(list.GetRevocations()) != 1 || list.GetRevocations()[0].GetId() != id {
		t.Errorf("B lists %v, %v; want the one revocation %s", list.GetRevocations(), err, id)
	}

	// Unrevoke on B reaches A.
	if _, err := b.adminClient.Unrevoke(b.asAdmin(context.Background()), &scopegatev1.UnrevokeRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	back, ok := waitFor(5*time.Second, func() bool { allow, _ := a.mustDecide(victim); return allow })
	if !ok {
		t.Fatalf("A still denies 5s after the unrevoke on B")
	}
	t.Logf("unrevoke propagated in %s", back)
}

// One node on its embedded store file keeps its revocations across a
// restart.
func TestSingleNodeFileStoreSurvivesRestart(t *testing.T) {
	c := newCluster(t)
	n := c.replica("node", filepath.Join(c.dir, "scopegate.db"))
	victim := c.mint("alice", "web-app", "items:read")
	n.revokeClient("web-app")
	if allow, code := n.mustDecide(victim); allow || code != "revoked" {
		t.Fatalf("after revoke: %v %s", allow, code)
	}
	n.restart()
	if allow, code := n.mustDecide(victim); allow || code != "revoked" {
		t.Fatalf("after restart: %v %s; want revoked", allow, code)
	}
	if allow, code := n.mustDecide(c.mint("bob", "other-app", "items:read")); !allow {
		t.Errorf("another client after restart: %s", code)
	}
}

// pgCtl runs pg_ctlcluster on the one local cluster; start on a running
// cluster (exit 2) is success.
func pgCtl(t *testing.T, action string) error {
	t.Helper()
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(entries) != 1 {
		return fmt.Errorf("want exactly one PostgreSQL version under /etc/postgresql: %v", err)
	}
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", entries[0].Name(), "main", action).CombinedOutput()
	var ee *exec.ExitError
	if action == "start" && errors.As(err, &ee) && ee.ExitCode() == 2 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s PostgreSQL: %v: %s", action, err, out)
	}
	return nil
}

// With PostgreSQL stopped mid-test, the replicas keep deciding with the
// last list (revoked stays revoked, others allowed) and their sync age
// grows; once it is back they sync again. This drill stops the machine's
// PostgreSQL itself, so it runs only when allowed to (and alone, in CI).
func TestReplicasPostgresOutage(t *testing.T) {
	dsn := pgDSN(t)
	if os.Getenv(envControl) != "1" {
		t.Skip(envControl + "=1 not set: skipping the drill that stops PostgreSQL")
	}
	t.Cleanup(func() {
		if err := pgCtl(t, "start"); err != nil {
			t.Errorf("restart PostgreSQL: %v", err)
		}
	})
	outageDrill(t, dsn, func() error { return pgCtl(t, "stop") }, func() error { return pgCtl(t, "start") })
}

// The same drill with the database cut off by a proxy between the replicas
// and PostgreSQL: every run can afford it, since nothing else is stopped.
func TestReplicasLoseTheDatabase(t *testing.T) {
	dsn := pgDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newTCPProxy(t, u.Host)
	u.Host = p.addr
	outageDrill(t, u.String(), p.cut, p.restore)
}

func outageDrill(t *testing.T, dsn string, stop, start func() error) {
	t.Helper()
	c := newCluster(t)
	a := c.replica("replica-a", dsn)
	b := c.replica("replica-b", dsn)
	victim := c.mint("alice", "web-app", "items:read")
	bystander := c.mint("bob", "other-app", "items:read")
	a.revokeClient("web-app")
	if _, ok := waitFor(5*time.Second, func() bool { allow, _ := b.mustDecide(victim); return !allow }); !ok {
		t.Fatal("B did not get the revocation")
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	for _, r := range []*replica{a, b} {
		for _, tc := range []struct {
			tok   string
			allow bool
		}{{victim, false}, {bystander, true}} {
			if allow, code := r.mustDecide(tc.tok); allow != tc.allow {
				t.Errorf("%s during the outage: allow=%v (%s); want %v", r.name, allow, code, tc.allow)
			}
		}
	}
	// The resync interval is 2s: the age passes it once a resync fails.
	if _, ok := waitFor(15*time.Second, func() bool { age, err := b.syncAge(); return err == nil && age > 4 }); !ok {
		age, err := b.syncAge()
		t.Fatalf("B's sync age did not grow past 4s during the outage: %v %v", age, err)
	}
	t.Logf("B's sync age grew past 4s %s into the outage", time.Since(stoppedAt).Round(time.Millisecond))
	for _, r := range []*replica{a, b} {
		if allow, _ := r.mustDecide(victim); allow {
			t.Errorf("%s allows the revoked token during the outage", r.name)
		}
		if allow, code := r.mustDecide(bystander); !allow {
			t.Errorf("%s denies another client during the outage: %s", r.name, code)
		}
	}

	if err := start(); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitFor(30*time.Second, func() bool { age, err := b.syncAge(); return err == nil && age < 3 }); !ok {
		age, err := b.syncAge()
		t.Fatalf("B did not sync again within 30s of the database's return: age %v %v\n%s", age, err, b.logTail())
	}
	// Notifications flow again: an unrevoke on A reaches B.
	list, err := a.adminClient.ListRevocations(a.asAdmin(context.Background()), &scopegatev1.ListRevocationsRequest{})
	if err != nil || len(list.GetRevocations()) != 1 {
		t.Fatalf("A lists %v %v", list, err)
	}
	if _, err := a.adminClient.Unrevoke(a.asAdmin(context.Background()), &scopegatev1.UnrevokeRequest{Id: list.GetRevocations()[0].GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitFor(5*time.Second, func() bool { allow, _ := b.mustDecide(victim); return allow }); !ok {
		t.Error("B still denies 5s after the unrevoke that followed the outage")
	}
}

// tcpProxy forwards a loopback port to a server; cut drops every
// connection and refuses new ones, restore listens again on the same port.
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	lis    net.Listener
	conns  map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	p.serve(lis)
	t.Cleanup(func() { _ = p.cut() })
	return p
}

func (p *tcpProxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns[in], p.conns[out] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

func (p *tcpProxy) cut() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	return nil
}

func (p *tcpProxy) restore() error {
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.serve(lis)
	return nil
}
