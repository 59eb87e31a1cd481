package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// fakeAdmin answers UsageReport with a fixed report, checking the token
// and remembering the request.
type fakeAdmin struct {
	scopegatev1.UnimplementedAdminServer
	mu    sync.Mutex
	last  *scopegatev1.UsageReportRequest
	token string
}

func (f *fakeAdmin) UsageReport(ctx context.Context, req *scopegatev1.UsageReportRequest) (*scopegatev1.UsageReportResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+f.token {
		return nil, status.Error(codes.Unauthenticated, "bad admin token")
	}
	f.mu.Lock()
	f.last = req
	f.mu.Unlock()
	used := timestamppb.New(time.Now().Add(-72 * time.Hour))
	return &scopegatev1.UsageReportResponse{Clients: []*scopegatev1.ClientUsage{
		{ClientId: "a-tidy", Scopes: []*scopegatev1.ScopeUsage{{Scope: "orders:read", Granted: true, Used: true, LastUsed: used, Count: 12}}},
		{ClientId: "z-greedy", Scopes: []*scopegatev1.ScopeUsage{
			{Scope: "admin:all", Granted: true},
			{Scope: "orders:read", Granted: true, Used: true, LastUsed: used, Count: 3},
		}},
	}}, nil
}

func startFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAdmin{token: "s3cret"}
	srv := grpc.NewServer()
	scopegatev1.RegisterAdminServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func runReport(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	code := c.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestReportUsage(t *testing.T) {
	f, addr := startFakeAdmin(t)
	env := map[string]string{adminTokenEnv: "s3cret"}
	cases := map[string]struct {
		env       map[string]string
		stdin     string
		args      []string
		code      int
		out, errs []string
		unused    time.Duration
		client    string
	}{
		"table, over-scoped first": {
			env:  env,
			args: []string{"--unused-for", "30d", "--client", "z-greedy"},
			out: []string{"CLIENT", "LAST USED", "z-greedy  admin:all", "never", "(3d ago)",
				"over-scoped (granted, never used): z-greedy (1)"},
			unused: 30 * 24 * time.Hour, client: "z-greedy",
		},
		"json": {
			env:    env,
			args:   []string{"--json", "--unused-for", "36h"},
			out:    []string{`"client_id": "z-greedy"`, `"last_used"`, `"count": 3`, `"count": 12`},
			unused: 36 * time.Hour,
		},
		"-o json": {
			env:    env,
			args:   []string{"-o", "json", "--unused-for", "36h"},
			out:    []string{`"client_id": "z-greedy"`, `"count": 3`},
			unused: 36 * time.Hour,
		},
		"-o yaml": {
			env:    env,
			args:   []string{"--output=yaml", "--unused-for", "36h"},
			out:    []string{"client_id: z-greedy", "count: 3\n"},
			unused: 36 * time.Hour,
		},
		"token flag": {
			args: []string{"--token", "s3cret"},
			out:  []string{"a-tidy"},
		},
		"token on stdin": {
			stdin: "s3cret\n",
			args:  []string{"--token", "-"},
			out:   []string{"a-tidy"},
		},
		"wrong token": {
			env:  map[string]string{adminTokenEnv: "nope"},
			code: exitError,
			errs: []string{"Unauthenticated"},
		},
		"bad window": {
			env:  env,
			args: []string{"--unused-for", "a month"},
			code: exitUsage,
			errs: []string{"--unused-for"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"report", "usage", "--admin", addr}, c.args...)
			code, out, errs := runReport(t, c.env, c.stdin, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, errs)
			}
			for _, w := range c.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.errs {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			if code != exitOK {
				return
			}
			f.mu.Lock()
			last := f.last
			f.mu.Unlock()
			if got := last.GetUnusedFor().AsDuration(); got != c.unused || last.GetClientId() != c.client {
				t.Errorf("request unused_for %v client %q, want %v %q", got, last.GetClientId(), c.unused, c.client)
			}
			if strings.HasPrefix(name, "table") {
				if strings.Index(out, "z-greedy") > strings.Index(out, "a-tidy") && strings.Contains(out, "a-tidy") {
					t.Errorf("the over-scoped client is not listed first:\n%s", out)
				}
			}
			if strings.HasSuffix(name, "json") {
				var v map[string]any
				if err := json.Unmarshal([]byte(out), &v); err != nil {
					t.Errorf("--json output is not JSON: %v", err)
				}
				if strings.Contains(out, `"count": "`) {
					t.Errorf("a count is a string, not a number:\n%s", out)
				}
			}
		})
	}
}

func TestReportUsageOrder(t *testing.T) {
	var out bytes.Buffer
	printUsageTable(&out, &scopegatev1.UsageReportResponse{Clients: []*scopegatev1.ClientUsage{
		{ClientId: "a", Scopes: []*scopegatev1.ScopeUsage{{Scope: "x", Granted: true, Used: true, Count: 1}}},
		{ClientId: "b", Scopes: []*scopegatev1.ScopeUsage{{Scope: "x", Granted: true}, {Scope: "y", Granted: true}}},
		{ClientId: "c", Scopes: []*scopegatev1.ScopeUsage{{Scope: "x", Granted: true}}},
	}}, time.Now())
	s := out.String()
	ib, ic, ia := strings.Index(s, "\nb "), strings.Index(s, "\nc "), strings.Index(s, "\na ")
	if ib < 0 || ic < 0 || ia < 0 || ib > ic || ic > ia {
		t.Errorf("want b (2 unused), c (1), a (0):\n%s", s)
	}
	out.Reset()
	printUsageTable(&out, &scopegatev1.UsageReportResponse{}, time.Now())
	if !strings.Contains(out.String(), "no usage recorded") {
		t.Errorf("empty report: %q", out.String())
	}
}

func TestReportHelp(t *testing.T) {
	code, out, _ := runCLI(t, "", "help", "report", "usage")
	if code != exitOK || !strings.Contains(out, "--unused-for") && !strings.Contains(out, "-unused-for") {
		t.Errorf("help report usage: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "", "report", "usage", "--help")
	if code != exitOK || !strings.Contains(out, adminTokenEnv) {
		t.Errorf("report usage --help: exit %d\n%s", code, out)
	}
}

func TestServeAuditFlags(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		args []string
		err  string
	}{
		"bad sample":     {[]string{"--audit-allow-sample", "1.5"}, "--audit-allow-sample"},
		"bad buffer":     {[]string{"--audit-buffer", "0"}, "--audit-buffer"},
		"bad dest":       {[]string{"--audit", "syslog"}, "--audit"},
		"postgres alone": {[]string{"--audit", "postgres"}, "--store"},
		"missing dir":    {[]string{"--audit", "file:" + dir + "/none/audit.log"}, "does not exist"},
		"bad interval":   {[]string{"--usage-flush-interval", "1ms"}, "--usage-flush-interval"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"serve", "--policy", examplePolicy(t), "--grpc-addr", "127.0.0.1:0", "--metrics-addr", ""}, c.args...)
			code, _, errs := runCLI(t, "", args...)
			if code != exitUsage || !strings.Contains(errs, c.err) {
				t.Errorf("exit %d, stderr %q; want usage error naming %s", code, errs, c.err)
			}
		})
	}
}

// TestAdminSettingsFromEnvironment: the Admin API address and token come
// from SCOPEGATE_ADMIN_ADDR and SCOPEGATE_ADMIN_TOKEN_FILE when no flag
// gives them, so a shell sets them once.
func TestAdminSettingsFromEnvironment(t *testing.T) {
	_, addr := startFakeAdmin(t)
	tokFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{adminAddrEnv: addr, adminTokenFileEnv: tokFile}
	code, out, errs := runReport(t, env, "", "report", "usage")
	if code != exitOK || !strings.Contains(out, "a-tidy") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	env[adminTokenFileEnv] = filepath.Join(t.TempDir(), "none")
	code, _, errs = runReport(t, env, "", "report", "usage")
	if code != exitUsage || !strings.Contains(errs, adminTokenFileEnv+"=") {
		t.Errorf("missing token file: exit %d: %s", code, errs)
	}
}
