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

// closers undoes, last first, what a start-up did before it failed.
type closers []func()

func (c *closers) push(f func()) { *c = append(*c, f) }

func (c *closers) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// Run builds a Server from cfg, binds every listener it is configured
// with (gRPC on cfg.GRPCAddr; HTTP on cfg.HTTPAddr unless cfg.DisableHTTP;
// the operator listener on cfg.MetricsAddr and the Admin API on
// cfg.Admin.Addr when set), and only then announces its health and
// serves, until ctx is cancelled; then it stops gracefully. It returns the
// error that prevented serving (a *ListenError for an address that cannot
// be bound), or nil after a clean stop.
func Run(ctx context.Context, cfg Config) error {
	s, err := newServer(cfg, false)
	if err != nil {
		return err
	}
	var undo closers
	defer undo.close() // a no-op once serving starts
	undo.push(s.Stop)

	type served struct {
		what  string
		addr  string
		lis   net.Listener
		serve func(net.Listener) error
	}
	var all []served
	listen := func(listener, setting, addr string, serve func(net.Listener) error) error {
		lis, err := bind(listener, setting, addr)
		if err != nil {
			return err
		}
		undo.push(func() { lis.Close() })
		all = append(all, served{listener, addr, lis, serve})
		return nil
	}
	if err := listen(ListenerGRPC, "GRPCAddr", s.cfg.GRPCAddr, s.Serve); err != nil {
		return err
	}
	if !s.cfg.DisableHTTP {
		if err := listen(ListenerHTTP, "HTTPAddr", s.cfg.HTTPAddr, s.ServeHTTPListener); err != nil {
			return err
		}
	}
	if s.admin.grpc != nil {
		if err := listen(ListenerAdmin, "Admin.Addr", s.cfg.Admin.Addr, s.ServeAdmin); err != nil {
			return err
		}
	}
	if s.cfg.MetricsAddr != "" {
		if err := listen(ListenerMetrics, "MetricsAddr", s.cfg.MetricsAddr, s.serveOps); err != nil {
			return err
		}
	}
	if s.ssf != nil && s.cfg.SSF.Addr != "" {
		if err := listen(ListenerSSF, "SSF.Addr", s.cfg.SSF.Addr, s.ssf.Serve); err != nil {
			return err
		}
	}
	if err := s.startReloaders(); err != nil {
		return err
	}

	// Every listener is bound: from here on Stop closes them.
	undo = nil
	s.startHealth()
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range all {
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
		s.Stop()
		return nil
	})
	return g.Wait()
}
