package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Timeouts of the operator listener. Writes are not bounded by a short
// timeout because a CPU profile or trace streams for as long as asked
// (30 s by default).
const (
	opsReadHeaderTimeout = 10 * time.Second
	opsIdleTimeout       = 2 * time.Minute
	opsWriteTimeout      = 5 * time.Minute
	// opsCloseTimeout bounds how long Stop waits for scrapes and profiles
	// in progress before closing the operator listener's connections.
	opsCloseTimeout = time.Second
)

// opsHandler is the operator listener's mux: Prometheus metrics, liveness,
// readiness, and pprof when Config.Pprof is set. It is never mounted on a
// decision listener: profiles and metrics describe the process, and a
// client of the authorization API has no business reading them. pprof is
// off by default: profiles and goroutine dumps describe the process in
// detail, and the command line may carry secrets (served redacted).
func (s *Server) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Liveness: the process answers. It stays 200 while the policy
		// or keys are missing, so an orchestrator waits (readiness)
		// instead of restarting a server that is about to become ready.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		st := s.servingStatus()
		if st != healthpb.HealthCheckResponse_SERVING {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, st.String())
	})
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", redactedCmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// redactedCmdline is pprof.Cmdline with the secrets of the command line
// (the --store DSN's password, tokens) redacted, as the logs redact them.
func redactedCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, strings.Join(redactArgs(os.Args), "\x00"))
}

// servingStatus is the overall gRPC health status: what /readyz and the
// scopegate_serving metric report, so that the gRPC health check, the
// HTTP probe and the metric never disagree. After Stop it is NOT_SERVING.
func (s *Server) servingStatus() healthpb.HealthCheckResponse_ServingStatus {
	resp, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	return resp.GetStatus()
}

// listenOps starts the operator listener on addr ("" starts none) and
// returns its address.
func (s *Server) listenOps(addr string) (net.Addr, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := bind(ListenerMetrics, "MetricsAddr", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := s.serveOps(lis); err != nil {
			s.log.Error("metrics listener stopped", "addr", lis.Addr().String(), "error", err)
		}
	}()
	return lis.Addr(), nil
}

// serveOps serves the operator listener on lis until Stop; it returns nil
// after Stop.
func (s *Server) serveOps(lis net.Listener) error {
	srv := &http.Server{
		Handler:           s.opsHandler(),
		ReadHeaderTimeout: opsReadHeaderTimeout,
		IdleTimeout:       opsIdleTimeout,
		WriteTimeout:      opsWriteTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.ops.mu.Lock()
	if s.ops.stopped {
		s.ops.mu.Unlock()
		lis.Close()
		return nil
	}
	s.ops.http = srv
	s.ops.mu.Unlock()
	s.log.Info("serving metrics and health", "addr", lis.Addr().String(), "pprof", s.cfg.Pprof)
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// closeOpsListener stops the operator listener, letting a scrape in
// progress finish for a moment.
func (s *Server) closeOpsListener() {
	s.ops.mu.Lock()
	srv := s.ops.http
	s.ops.http = nil
	s.ops.stopped = true
	s.ops.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opsCloseTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
}

// validateAddr checks that addr, the value of the Config field named
// field, is empty or host:port with a valid port.
func validateAddr(field, addr, example string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("server config: %s %q is not host:port (e.g. %q): %v", field, addr, example, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("server config: %s %q: port %q must be a number from 0 to 65535", field, addr, port)
	}
	return nil
}
