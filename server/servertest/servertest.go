package servertest

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/scopegate/scopegate/server"
)

// TB is the part of testing.TB a start needs. The package does not import
// testing, which would bring the flag package into server/: flags are the
// command's.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

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
func Serve(t TB, policyPath string, edit func(*server.Config)) Addrs {
	t.Helper()
	return serve(t, policyPath, edit, nil)
}

// ServeTLS is Serve with the gRPC listener behind TLS: tlsConf is the
// server side (its certificate, and ClientAuth and ClientCAs for mTLS),
// as a mesh sidecar or a TLS-terminating listener in front of scopegate
// would present it. NextProtos is set to h2, which gRPC clients require.
func ServeTLS(t TB, policyPath string, tlsConf *tls.Config) Addrs {
	t.Helper()
	conf := tlsConf.Clone()
	conf.NextProtos = []string{"h2"}
	return serve(t, policyPath, nil, func(l net.Listener) net.Listener { return tls.NewListener(l, conf) })
}

func serve(t TB, policyPath string, edit func(*server.Config), wrapGRPC func(net.Listener) net.Listener) Addrs {
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
	addrs := Addrs{GRPC: glis.Addr().String(), HTTP: hlis.Addr().String()}
	if wrapGRPC != nil {
		glis = wrapGRPC(glis)
	}
	go func() { defer wg.Done(); _ = srv.Serve(glis) }()
	go func() { defer wg.Done(); _ = srv.ServeHTTPListener(hlis) }()
	t.Cleanup(func() {
		srv.Stop()
		wg.Wait()
	})
	return addrs
}
