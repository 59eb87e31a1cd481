package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestClientCommandsCallErrors: a client-side command whose call fails
// names the server once, says what to change, and shows none of gRPC's
// nesting ("rpc error: code = ... desc = ...").
func TestClientCommandsCallErrors(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()                         // nothing listens there now
	fake := startFake(t, &fakeServer{}) // ext_authz and Check, no Admin API
	cases := map[string]struct {
		args []string
		want []string
		addr string
	}{
		"client: nothing listens": {args: []string{"client", "--addr", closed, "--timeout", "2s"}, addr: closed,
			want: []string{"check call to " + closed + ": the server cannot be reached (connection refused)", "--addr (or $SCOPEGATE_ADDR"}},
		"revocations list: nothing listens": {args: []string{"revocations", "list", "--admin", closed, "--token", "x", "--timeout", "2s"}, addr: closed,
			want: []string{"Admin API call to " + closed + ": the server cannot be reached (connection refused)", "--admin (or $SCOPEGATE_ADMIN_ADDR"}},
		"report usage: the decision listener, not the Admin API": {args: []string{"report", "usage", "--admin", fake, "--token", "x"}, addr: fake,
			want: []string{"Admin API call to " + fake + ": the server does not offer this call", "is --admin"}},
		"revoke: the decision listener, not the Admin API": {args: []string{"revoke", "--admin", fake, "--token", "x", "--subject", "bob", "--reason", "INC-1"}, addr: fake,
			want: []string{"Admin API call to " + fake + ": the server does not offer this call"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, errs := runCLI(t, "", tc.args...)
			if code != exitError {
				t.Fatalf("exit %d, want %d: %s", code, exitError, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			for _, bad := range []string{"rpc error", "desc =", "transport:"} {
				if strings.Contains(errs, bad) {
					t.Errorf("stderr shows gRPC's internals %q:\n%s", bad, errs)
				}
			}
			if n := strings.Count(errs, tc.addr); n != 1 {
				t.Errorf("stderr names %s %d times, want once:\n%s", tc.addr, n, errs)
			}
		})
	}
}

// TestCallErrorByCode: every gRPC status becomes one sentence with the
// code as the client command and grpcurl spell it and, for a refused Admin API call,
// where the token comes from.
func TestCallErrorByCode(t *testing.T) {
	admin := callTarget{call: "Admin API call", addr: "a:1", flag: "--admin", env: adminAddrEnv, timeout: 5 * time.Second, admin: true}
	cases := map[string]struct {
		err  error
		want string
	}{
		"unauthenticated": {status.Error(codes.Unauthenticated, "the Admin API needs a bearer token"),
			"Admin API call to a:1: refused (Unauthenticated): the Admin API needs a bearer token; give an admin token with --token, $SCOPEGATE_ADMIN_TOKEN or $SCOPEGATE_ADMIN_TOKEN_FILE"},
		"permission denied": {status.Error(codes.PermissionDenied, "admin token refused"), "refused (PermissionDenied): admin token refused; give an admin token"},
		"deadline":          {status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "Admin API call to a:1: no answer within 5s: raise --timeout"},
		"invalid argument":  {status.Error(codes.InvalidArgument, "subject: give one"), "Admin API call to a:1: InvalidArgument: subject: give one"},
		"dns":               {status.Error(codes.Unavailable, "name resolver error: produced zero addresses"), "cannot be reached (the host name does not resolve)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := callError(admin, tc.err).Error()
			if !strings.Contains(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if strings.Contains(got, "rpc error") {
				t.Errorf("%q keeps gRPC's nesting", got)
			}
		})
	}
}
