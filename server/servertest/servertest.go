// Package servertest starts a scopegate Server on loopback listeners for
// the tests of other packages that need a real deployment to talk to
// (the synthetic checks of scopegate test --target, the alert rules of
// examples): gRPC (ext_authz and the Check RPC) and HTTP (forward-auth).
package servertest

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/server"
)

// Addrs are where a started server listens.
type Addrs struct {
	// GRPC is host:port of the gRPC listener.
	GRPC string
	// HTTP is host:port of the HTTP (forward-auth) listener.
	HTTP string
}

// Serve starts a Server for the policy file at policyPath on 127.0.0.1
// ports and stops it when the test ends. edit, if set, changes the
// configuration first.
func Serve(t testing.TB, policyPath string, edit func(*server.Config)) Addrs {
	t.Helper()
	cfg := server.Config{PolicyPath: policyPath, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownTimeout: time.Second}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.NewServer(cfg)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(glis) }()
	go func() { defer wg.Done(); _ = srv.ServeHTTPListener(hlis) }()
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
	return Addrs{GRPC: glis.Addr().String(), HTTP: hlis.Addr().String()}
}
