package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/store/audit"
)

// serveCmd runs the decision server until SIGINT or SIGTERM. Its flags are
// the server's configuration; each maps to one server.Config field.
type serveCmd struct {
	policy       string
	grpcAddr     string
	httpAddr     string
	httpPfx      string
	logLevel     string
	opsFlags     // serve_config.go
	auditFlags   // serve_audit.go
	adminFlags   // serve_admin.go
	ssfFlags     // serve_ssf.go
	tracingFlags // serve_tracing.go

	// Request limits (server/limits.go).
	maxHeaders     int
	maxHeaderBytes int
	maxPolicyBytes int
	checkTimeout   time.Duration
	maxInflight    int
	maxConns       int
	connIdle       time.Duration
	connAge        time.Duration

	dpopNonceSecretFile string
}

func (s *serveCmd) define(fs *flag.FlagSet) {
	fs.StringVar(&s.policy, "policy", "", "policy file to serve (required)")
	fs.StringVar(&s.grpcAddr, "grpc-addr", "127.0.0.1:9191", "address of the gRPC listener (Envoy ext_authz and scopegate Check)")
	fs.StringVar(&s.httpAddr, "http-addr", server.DefaultHTTPAddr, "address of the HTTP listener (forward-auth for nginx, Caddy, Traefik and Envoy's HTTP mode; AuthZEN); \"\" disables it")
	fs.StringVar(&s.httpPfx, "http-path-prefix", "", "path prefix stripped from forward-auth checks that carry no X-Forwarded-Uri/X-Original-URI (Envoy http_service path_prefix)")
	fs.StringVar(&s.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	s.opsFlags.define(fs)
	s.auditFlags.define(fs)
	s.adminFlags.define(fs)
	s.ssfFlags.define(fs)
	s.tracingFlags.define(fs)
	fs.StringVar(&s.dpopNonceSecretFile, "dpop-nonce-secret-file", "", "file holding the secret (at least 32 random bytes, the same on every replica) that keys DPoP server nonces, for a policy with dpop.nonce: required")
	fs.IntVar(&s.maxHeaders, "max-request-headers", server.DefaultMaxRequestHeaders, "most headers one check may carry; more are denied with request_invalid")
	fs.IntVar(&s.maxHeaderBytes, "max-request-header-bytes", server.DefaultMaxRequestHeaderBytes, "most bytes the headers of one check may total (names and values); more are denied with request_invalid")
	fs.IntVar(&s.maxPolicyBytes, "max-policy-bytes", 16<<20, "largest policy file loaded, at start and on reload; a larger one is refused unread")
	fs.DurationVar(&s.checkTimeout, "check-timeout", server.DefaultCheckTimeout, "longest a decision may take on the server side, for every protocol (gRPC calls from stream start, reading the message included); a slower one is answered as an internal error")
	fs.IntVar(&s.maxInflight, "max-inflight", server.DefaultMaxInflight, "most gRPC calls in flight at once, across connections, counted from stream start; more are refused with RESOURCE_EXHAUSTED")
	fs.IntVar(&s.maxConns, "max-connections", 0, "most gRPC connections open at once; further clients wait in the listen backlog (0: no cap)")
	fs.DurationVar(&s.connIdle, "max-connection-idle", server.DefaultMaxConnectionIdle, "close a gRPC connection that carried no call for this long")
	fs.DurationVar(&s.connAge, "max-connection-age", server.DefaultMaxConnectionAge, "ask a gRPC client to reconnect after this long (calls in flight get the check timeout to finish)")
}

func (s *serveCmd) run(ctx context.Context, c *cli) int {
	if s.policy == "" {
		return c.usageError("serve", "--policy is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return c.usageError("serve", "--log-level %q is not one of debug, info, warn, error", s.logLevel)
	}
	logger, err := s.newLogger(c.stderr, level)
	if err != nil {
		return c.usageError("serve", "%v", err)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from the start, so that one sent while the server
	// starts waits for it instead of ending the process; it is handled
	// once the server is listening.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg := server.Config{
		PolicyPath:     s.policy,
		GRPCAddr:       s.grpcAddr,
		HTTPAddr:       s.httpAddr,
		DisableHTTP:    s.httpAddr == "",
		HTTPPathPrefix: s.httpPfx,
		Logger:         logger,
	}
	if err := s.opsFlags.apply(&cfg); err != nil {
		return c.usageError("serve", "%v", err)
	}
	if err := s.ssfFlags.apply(&cfg); err != nil {
		return c.usageError("serve", "%v", err)
	}
	if err := s.tracingFlags.check(); err != nil {
		return c.usageError("serve", "%v", err)
	}
	memLimit, memFrom, err := s.memLimit(os.Getenv("GOMEMLIMIT"))
	if err != nil {
		return c.usageError("serve", "%v", err)
	}
	if memLimit > 0 {
		server.SetMemoryLimit(memLimit)
		if memFrom == server.MemoryLimitFromBudget {
			// The server raises it for the policy in force, and follows
			// the policy on every reload.
			cfg.AutoMemoryLimit = memLimit
			memFrom += " and the policy file"
		}
	}
	if l, ok := server.MemoryLimitSet(); ok {
		logger.Info("soft memory limit", "bytes", l, "from", memFrom)
	}
	if err := checkLimits(
		limit{flag: "max-request-headers", value: s.maxHeaders, bad: s.maxHeaders <= 0, def: server.DefaultMaxRequestHeaders},
		limit{flag: "max-request-header-bytes", value: s.maxHeaderBytes, bad: s.maxHeaderBytes <= 0, def: server.DefaultMaxRequestHeaderBytes},
		limit{flag: "max-policy-bytes", value: s.maxPolicyBytes, bad: s.maxPolicyBytes <= 0, def: 16 << 20},
		limit{flag: "check-timeout", value: s.checkTimeout, bad: s.checkTimeout <= 0, def: server.DefaultCheckTimeout},
		limit{flag: "max-inflight", value: s.maxInflight, bad: s.maxInflight <= 0, def: server.DefaultMaxInflight},
		limit{flag: "max-connections", value: s.maxConns, bad: s.maxConns < 0, zeroOK: true, def: 0},
		limit{flag: "max-connection-idle", value: s.connIdle, bad: s.connIdle <= 0, def: server.DefaultMaxConnectionIdle},
		limit{flag: "max-connection-age", value: s.connAge, bad: s.connAge <= 0, def: server.DefaultMaxConnectionAge},
	); err != nil {
		return c.usageError("serve", "%v", err)
	}
	cfg.MaxRequestHeaders, cfg.MaxRequestHeaderBytes, cfg.CheckTimeout = s.maxHeaders, s.maxHeaderBytes, s.checkTimeout
	cfg.MaxPolicyBytes = s.maxPolicyBytes
	cfg.MaxInflight, cfg.MaxConnections, cfg.MaxConnectionIdle, cfg.MaxConnectionAge = s.maxInflight, s.maxConns, s.connIdle, s.connAge
	if s.dpopNonceSecretFile != "" {
		secret, err := readDPoPNonceSecret(s.dpopNonceSecretFile)
		if err != nil {
			return c.usageError("serve", "%v", err)
		}
		cfg.DPoPNonceSecret = secret
	}
	// Flags checked alone are checked above, before anything is opened.
	// From here each resource opened is closed on every way out: the
	// store by the deferred Close, the audit sinks by the server once
	// Listen has them, by closeSinks before.
	st, err := s.adminFlags.open(ctx, &cfg, logger)
	if err != nil {
		return c.fail("serve", err)
	}
	if st != nil {
		defer st.Close()
		if err := s.ssfFlags.useStore(&cfg, st); err != nil {
			return c.usageError("serve", "%v", err)
		}
	}
	if err := s.auditFlags.apply(&cfg, c.stdout, st, c.env); err != nil {
		return c.usageError("serve", "%v", err)
	}
	if err := s.tracingFlags.apply(&cfg, c.env); err != nil {
		closeSinks(cfg.Audit.Sinks)
		return c.usageError("serve", "%v", err)
	}
	if err := cfg.Validate(); err != nil {
		closeSinks(cfg.Audit.Sinks)
		closeTracing(&cfg)
		return c.usageError("serve", "%s", serveErrorText(err))
	}
	srv, err := server.Listen(cfg)
	if err == nil {
		defer reloadOnHUP(ctx, hup, srv, s.auditFlags.files)()
		err = srv.Run(ctx)
	}
	if err != nil {
		var le *decision.LoadError
		if errors.As(err, &le) {
			return c.policyError("serve", err)
		}
		fmt.Fprintf(c.stderr, "scopegate serve: %s\n", serveErrorText(err))
		return exitError
	}
	return exitOK
}

// reloadOnHUP handles every SIGHUP received on hup until ctx ends (the
// server then stops) or the returned stop is called: it reopens the audit files (after logrotate moved them),
// then reloads the policy, even when its file looks unchanged (a key set
// it names may have been fixed, for one). A reload that fails is logged
// and counted by the server, and the policy in force stays.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, srv interface{ ReloadFrom(string) error }, files []*audit.FileSink) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-hup:
				for _, f := range files {
					f.Reopen()
				}
				_ = srv.ReloadFrom("SIGHUP")
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// readDPoPNonceSecret reads --dpop-nonce-secret-file: its bytes, less a
// trailing newline, at least decision.MinDPoPNonceSecretBytes of them. The
// secret itself never appears in an error.
func readDPoPNonceSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(repoPath(path))
	if err != nil {
		return nil, fileError("--dpop-nonce-secret-file", path, err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < decision.MinDPoPNonceSecretBytes {
		return nil, fmt.Errorf("--dpop-nonce-secret-file %s holds %d bytes; the DPoP nonce secret needs at least %d random bytes (e.g. openssl rand -base64 48 > %s)", path, len(b), decision.MinDPoPNonceSecretBytes, path)
	}
	return b, nil
}
