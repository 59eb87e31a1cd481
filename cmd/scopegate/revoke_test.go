package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/server"
)

// startAdminServer serves the example policy with its Admin API on
// loopback and returns the server and the admin address.
func startAdminServer(t *testing.T) (*server.Server, string) {
	t.Helper()
	srv, err := server.NewServer(server.Config{
		PolicyPath: examplePolicy(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Admin: server.AdminConfig{Addr: "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeAdmin(lis) }()
	t.Cleanup(srv.Stop)
	return srv, lis.Addr().String()
}

func runEnv(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	code := c.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func decideOrders(srv *server.Server, tok string) decision.Decision {
	return srv.Engine().Decide(context.Background(), &decision.Request{Method: "GET", Path: "/orders/1", Authorization: "Bearer " + tok, AuthorizationCount: 1})
}

func TestRevokeCommands(t *testing.T) {
	srv, addr := startAdminServer(t)
	admin := mint(t, "--scope", "scopegate:admin", "--sub", "ops", "--client", "ops-cli")
	user := mint(t, "--scope", "orders:read", "--client", "web-app")
	if d := decideOrders(srv, user); !d.Allow {
		t.Fatalf("before: %s", d.Code)
	}

	code, out, errs := runEnv(t, nil, "revoke", "--admin", addr, "--token", admin, "--client", "web-app", "--reason", "INC-1", "--until", "2h")
	if code != exitOK {
		t.Fatalf("revoke: exit %d: %s", code, errs)
	}
	id := strings.TrimSpace(out)
	if len(id) != 26 {
		t.Fatalf("revoke printed %q; want the revocation id alone", out)
	}
	if d := decideOrders(srv, user); d.Code != decision.Revoked {
		t.Fatalf("after revoke: %s", d.Code)
	}

	env := map[string]string{adminTokenEnv: admin}
	code, out, errs = runEnv(t, env, "revocations", "list", "--admin", addr)
	if code != exitOK || !strings.Contains(out, id) || !strings.Contains(out, "web-app") || !strings.Contains(out, "INC-1") || !strings.Contains(out, "synced at") {
		t.Fatalf("revocations list: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runEnv(t, env, "revocations", "list", "--admin", addr, "--json")
	if code != exitOK || !strings.Contains(out, `"client_id": "web-app"`) {
		t.Fatalf("revocations list --json: exit %d\n%s", code, out)
	}

	code, out, errs = runEnv(t, env, "unrevoke", "--admin", addr, "--id", id)
	if code != exitOK || !strings.Contains(out, id) {
		t.Fatalf("unrevoke: exit %d: %s%s", code, out, errs)
	}
	if d := decideOrders(srv, user); !d.Allow {
		t.Fatalf("after unrevoke: %s", d.Code)
	}
	code, _, errs = runEnv(t, env, "unrevoke", "--admin", addr, "--id", id)
	if code != exitError || !strings.Contains(errs, "NotFound") {
		t.Errorf("unrevoke of a removed id: exit %d: %s", code, errs)
	}

	// A token revocation by jti and issuer, narrowed to a scope, as JSON.
	code, out, errs = runEnv(t, env, "revoke", "--admin", addr, "--jti", "j-1", "--iss", "https://id.example.com/", "--scope", "orders:read", "--reason", "r", "--json")
	if code != exitOK || !strings.Contains(out, `"kind": "token"`) || !strings.Contains(out, `"scope": "orders:read"`) || !strings.Contains(out, `"created_by": "token:sub=ops client=ops-cli`) {
		t.Errorf("revoke --jti --json: exit %d\n%s%s", code, out, errs)
	}
	// The server's refusal is an error, not a usage error.
	code, _, errs = runEnv(t, nil, "revoke", "--admin", addr, "--token", user, "--sub", "x", "--reason", "r")
	if code != exitError || !strings.Contains(errs, "PermissionDenied") {
		t.Errorf("revoke with a non-admin token: exit %d: %s", code, errs)
	}
}

func TestRevokeUsageErrors(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"no target":        {args: []string{"revoke", "--token", "t", "--reason", "r"}, want: "exactly one of"},
		"two targets":      {args: []string{"revoke", "--token", "t", "--sub", "a", "--client", "b", "--reason", "r"}, want: "exactly one of"},
		"jti without iss":  {args: []string{"revoke", "--token", "t", "--jti", "j", "--reason", "r"}, want: "--jti needs --iss"},
		"no reason":        {args: []string{"revoke", "--token", "t", "--sub", "a"}, want: "--reason is required"},
		"scope and seg":    {args: []string{"revoke", "--token", "t", "--sub", "a", "--scope", "x", "--segment", "y", "--reason", "r"}, want: "not both"},
		"bad until":        {args: []string{"revoke", "--token", "t", "--sub", "a", "--reason", "r", "--until", "soon"}, want: "--until"},
		"no credentials":   {args: []string{"revoke", "--sub", "a", "--reason", "r"}, want: "no credentials"},
		"unrevoke no id":   {args: []string{"unrevoke", "--token", "t"}, want: "--id is required"},
		"cert without key": {args: []string{"revocations", "list", "--token", "t", "--cert-file", "c.pem"}, want: "go together"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, errs := runEnv(t, nil, tc.args...)
			if code != exitUsage || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, errs, exitUsage, tc.want)
			}
		})
	}
}

func TestParseUntil(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		in   string
		want time.Time
		bad  bool
	}{
		"RFC 3339": {in: "2026-12-01T00:00:00Z", want: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		"hours":    {in: "24h", want: now.Add(24 * time.Hour)},
		"days":     {in: "7d", want: now.Add(7 * 24 * time.Hour)},
		"minutes":  {in: "90m", want: now.Add(90 * time.Minute)},
		"negative": {in: "-1h", bad: true},
		"zero":     {in: "0s", bad: true},
		"word":     {in: "tomorrow", bad: true},
		"0 days":   {in: "0d", bad: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parseUntil(tc.in, now)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseUntil(%q) = %v; want an error", tc.in, got)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("parseUntil(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

// revoke --subject --issued-before refuses the subject's older tokens and
// keeps the newer ones; revoke --session refuses the session's tokens.
func TestRevokeIssuedBeforeAndSession(t *testing.T) {
	srv, addr := startAdminServer(t)
	env := map[string]string{adminTokenEnv: mint(t, "--scope", "scopegate:admin", "--sub", "ops", "--client", "ops-cli")}
	cut := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	older := mint(t, "--scope", "orders:read", "--sub", "carol", "--claim", fmt.Sprintf("iat=%d", cut.Add(-time.Hour).Unix()))
	newer := mint(t, "--scope", "orders:read", "--sub", "carol", "--claim", fmt.Sprintf("iat=%d", cut.Unix()))
	code, out, errs := runEnv(t, env, "revoke", "--admin", addr, "--subject", "carol", "--issued-before", cut.Format(time.RFC3339), "--reason", "password changed", "--json")
	if code != exitOK || !strings.Contains(out, `"issued_before": "`+cut.Format(time.RFC3339)+`"`) {
		t.Fatalf("revoke --issued-before: exit %d\n%s%s", code, out, errs)
	}
	if d := decideOrders(srv, older); d.Code != decision.Revoked {
		t.Errorf("token issued before: %s", d.Code)
	}
	if d := decideOrders(srv, newer); !d.Allow {
		t.Errorf("token issued at the instant: %s", d.Code)
	}

	inSession := mint(t, "--scope", "orders:read", "--sub", "dave", "--claim", "sid=s-42")
	otherSession := mint(t, "--scope", "orders:read", "--sub", "dave", "--claim", "sid=s-43")
	code, _, errs = runEnv(t, env, "revoke", "--admin", addr, "--session", "s-42", "--iss", "https://id.example.com/", "--reason", "logout")
	if code != exitOK {
		t.Fatalf("revoke --session: exit %d: %s", code, errs)
	}
	if d := decideOrders(srv, inSession); d.Code != decision.Revoked {
		t.Errorf("token of the session: %s", d.Code)
	}
	if d := decideOrders(srv, otherSession); !d.Allow {
		t.Errorf("token of another session: %s", d.Code)
	}
	code, out, _ = runEnv(t, env, "revocations", "list", "--admin", addr)
	if code != exitOK || !strings.Contains(out, "issued before "+cut.Format(time.RFC3339)) || !strings.Contains(out, "sid s-42") {
		t.Errorf("revocations list:\n%s", out)
	}
	onDevice := mint(t, "--scope", "orders:read", "--sub", "erin", "--claim", "did=d-9")
	otherDevice := mint(t, "--scope", "orders:read", "--sub", "erin", "--claim", "did=d-10")
	code, _, errs = runEnv(t, env, "revoke", "--admin", addr, "--device", "d-9", "--reason", "laptop lost")
	if code != exitOK {
		t.Fatalf("revoke --device: exit %d: %s", code, errs)
	}
	if d := decideOrders(srv, onDevice); d.Code != decision.Revoked {
		t.Errorf("token of the device: %s", d.Code)
	}
	if d := decideOrders(srv, otherDevice); !d.Allow {
		t.Errorf("token of another device: %s", d.Code)
	}
	code, out, errs = runEnv(t, env, "revoke", "--admin", addr, "--sub", "frank", "--assurance-level", "urn:example:pwd", "--issued-before", cut.Format(time.RFC3339), "--reason", "ssf drill", "--json")
	if code != exitOK || !strings.Contains(out, `"kind": "assurance"`) || !strings.Contains(out, `"acr_level": "urn:example:pwd"`) {
		t.Fatalf("revoke --assurance-level: exit %d\n%s%s", code, out, errs)
	}
	// Not a step-up route: untouched.
	if d := decideOrders(srv, mint(t, "--scope", "orders:read", "--sub", "frank", "--claim", "acr=urn:example:mfa", "--claim", fmt.Sprintf("iat=%d", cut.Add(-time.Hour).Unix()))); !d.Allow {
		t.Errorf("assurance on a route without step-up: %s", d.Code)
	}
	code, out, _ = runEnv(t, env, "revocations", "list", "--admin", addr)
	if code != exitOK || !strings.Contains(out, "frank (acr urn:example:pwd on step-up routes)") || !strings.Contains(out, "d-9") {
		t.Errorf("revocations list:\n%s", out)
	}
	for name, args := range map[string][]string{
		"assurance without sub":    {"--assurance-level", "x", "--client", "c"},
		"device and sub":           {"--device", "d", "--sub", "s"},
		"session without iss":      {"--session", "s"},
		"issued before with jti":   {"--jti", "j", "--iss", "i", "--issued-before", cut.Format(time.RFC3339)},
		"issued before not a time": {"--sub", "a", "--issued-before", "yesterday"},
	} {
		code, _, errs := runEnv(t, env, append(append([]string{"revoke", "--admin", addr}, args...), "--reason", "r")...)
		if code != exitUsage {
			t.Errorf("%s: exit %d (%s); want a usage error", name, code, errs)
		}
	}
}
