package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
)

// Listener names, as ListenError reports them.
const (
	ListenerGRPC    = "gRPC"
	ListenerHTTP    = "HTTP"
	ListenerMetrics = "metrics"
	ListenerAdmin   = "Admin API"
	ListenerSSF     = "SSF push"
)

// ListenError is a listener that could not be bound. Setting names the
// Config field that holds the address (GRPCAddr, HTTPAddr, MetricsAddr,
// Admin.Addr, SSF.Addr), so that a command line can name its own flag for it; the
// message itself names the listener and the address, never the field.
type ListenError struct {
	Listener string // ListenerGRPC, ListenerHTTP, ListenerMetrics, ListenerAdmin or ListenerSSF
	Setting  string // the Config field of the address
	Addr     string
	Err      error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("the %s listener cannot listen on %s: %s", e.Listener, e.Addr, e.Reason())
}

func (e *ListenError) Unwrap() error { return e.Err }

// InUse reports whether the address is taken by another socket.
func (e *ListenError) InUse() bool { return errors.Is(e.Err, syscall.EADDRINUSE) }

// Reason is the cause without the address (which net's error repeats).
func (e *ListenError) Reason() string {
	switch {
	case e.InUse():
		return "the port is in use by another process"
	case errors.Is(e.Err, syscall.EACCES):
		return "permission denied (ports below 1024 need privileges)"
	case errors.Is(e.Err, syscall.EADDRNOTAVAIL):
		return "no interface of this host has that address"
	}
	var op *net.OpError
	if errors.As(e.Err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return e.Err.Error()
}

func bind(listener, setting, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Listener: listener, Setting: setting, Addr: addr, Err: err}
	}
	return lis, nil
}

// closers is a start-up's closer stack: every resource opened pushes
// what releases it, and an error path calls close, which releases them all
// once, last opened first. Once start-up succeeds the stack is dropped and
// Stop owns the resources.
type closers []func()

func (c *closers) push(f func()) { *c = append(*c, f) }

func (c *closers) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// Run is Listen, then Bound.Run: it serves cfg until ctx is cancelled,
// then stops gracefully. It returns the error that prevented serving (a
// *ListenError for an address that cannot be bound), or nil after a clean
// stop.
func Run(ctx context.Context, cfg Config) error {
	b, err := Listen(cfg)
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

// Bound is a Server whose listeners are all bound but not yet served
// (Listen); Run serves them. Between the two the caller can wire what
// needs the server, such as a SIGHUP handler calling ReloadFrom.
type Bound struct {
	*Server
	listeners []boundListener
}

type boundListener struct {
	what  string
	addr  string
	lis   net.Listener
	serve func(net.Listener) error
}

// Listen builds a Server from cfg and binds every listener it is
// configured with: gRPC on cfg.GRPCAddr; HTTP on cfg.HTTPAddr unless
// cfg.DisableHTTP; the operator listener on cfg.MetricsAddr, the Admin
// API on cfg.Admin.Addr and the SSF push listener on cfg.SSF.Addr when
// set. It starts the policy watcher (cfg.WatchPolicy). Health stays
// unannounced until Run. On error everything opened so far is closed (a
// *ListenError names an address that cannot be bound); a caller that gets
// a Bound and does not Run it must Stop it.
func Listen(cfg Config) (*Bound, error) {
	s, err := newServer(cfg, false)
	if err != nil {
		return nil, err
	}
	b := &Bound{Server: s}
	if err = b.bindAll(); err == nil {
		err = s.startWatch()
	}
	if err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// bindAll binds the configured listeners, in order, and stops at the
// first that cannot be bound.
func (b *Bound) bindAll() error {
	s := b.Server
	for _, l := range []struct {
		on                      bool
		listener, setting, addr string
		serve                   func(net.Listener) error
	}{
		{true, ListenerGRPC, "GRPCAddr", s.cfg.GRPCAddr, s.Serve},
		{!s.cfg.DisableHTTP, ListenerHTTP, "HTTPAddr", s.cfg.HTTPAddr, s.ServeHTTPListener},
		{s.admin.grpc != nil, ListenerAdmin, "Admin.Addr", s.cfg.Admin.Addr, s.ServeAdmin},
		{s.cfg.MetricsAddr != "", ListenerMetrics, "MetricsAddr", s.cfg.MetricsAddr, s.serveOps},
		{s.ssf != nil && s.cfg.SSF.Addr != "", ListenerSSF, "SSF.Addr", s.cfg.SSF.Addr, s.ssf.Serve},
	} {
		if !l.on {
			continue
		}
		lis, err := bind(l.listener, l.setting, l.addr)
		if err != nil {
			return err
		}
		b.listeners = append(b.listeners, boundListener{l.listener, l.addr, lis, l.serve})
	}
	return nil
}

// Stop stops the server (Server.Stop) and closes every listener it bound,
// served or not. It is safe to call more than once.
func (b *Bound) Stop() {
	b.Server.Stop()
	for _, l := range b.listeners {
		l.lis.Close() // already closed when served: the error says so
	}
}

// Run announces the server's health and serves every bound listener until
// ctx is cancelled or one of them fails; then it stops the server
// gracefully (Stop) and returns the first failure, or nil after a clean
// stop. Call it once.
func (b *Bound) Run(ctx context.Context) error {
	s := b.Server
	s.startHealth()
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range b.listeners {
		g.Go(func() error {
			// A server stopped before it began serving (ctx ended at
			// once) is a clean stop too.
			if err := l.serve(l.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("serve %s on %s: %w", l.what, l.addr, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		b.Stop()
		return nil
	})
	return g.Wait()
}
