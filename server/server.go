package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"golang.org/x/net/netutil"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/envoy"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
	"github.com/scopegate/scopegate/store/cache"
	"github.com/scopegate/scopegate/store/introspect"
	"github.com/scopegate/scopegate/store/jwks"
)

// Service names, as health checks and reflection list them.
const (
	ExtAuthzService   = "envoy.service.auth.v3.Authorization"
	AuthorizerService = "scopegate.v1.Authorizer"
)

// Keepalive settings. Envoy and other long-lived clients keep one
// connection open and may ping it; the enforcement policy is lenient enough
// that a client pinging every few seconds is not cut off with
// "too_many_pings", and the server pings idle connections itself to find
// dead peers.
const (
	keepaliveMinClientPing = 5 * time.Second
	keepaliveServerPing    = time.Minute
	keepalivePingTimeout   = 20 * time.Second
)

// connectionAgeGrace is how long calls in flight on a connection past its
// MaxConnectionAge get to finish: the check timeout, at least a second.
func connectionAgeGrace(cfg Config) time.Duration {
	return max(cfg.CheckTimeout, time.Second)
}

// Server is the scopegate gRPC server: one listener serving Envoy ext_authz
// v3, the scopegate Authorizer API, gRPC health and server reflection, all
// answered by one decision engine.
//
// It is built so that later listeners (HTTP forward-auth, admin, metrics)
// attach to the same engine through Engine, and so that a policy reload is
// one call (Reload) whoever triggers it.
type Server struct {
	cfg Config
	// ownersCache caches the configured ownership store, nil without one.
	ownersCache *cache.Ownership
	log         *slog.Logger
	keys        decision.KeyResolver
	registry    *jwks.Registry  // nil when Config.Keys was given
	keysChanged chan struct{}   // a key set changed: re-evaluate health
	bg          context.Context // background work; cancelled by Stop
	cancel      context.CancelFunc
	engine      *decision.Engine
	responder   *envoy.Responder
	grpc        *grpc.Server
	health      *health.Server
	ssf         *SSFReceiver // nil without SSF transmitters
	ssfLag      *ssfLag      // ssf_lag.go; nil without a revocation store
	httpl       httpListener // forward-auth, AuthZEN and health over HTTP

	// reloadMu serialises every policy reload, whatever triggered it
	// (reload.go), and guards lastState.
	reloadMu sync.Mutex
	// lastState identifies the policy file content last loaded or tried
	// (see fileState), so that a change elsewhere in the directory, or an
	// invalid file that is still invalid, does not reload again.
	lastState string
	// policyBytes is the size of the policy file in force (guarded by
	// reloadMu), for the memory limit (fitMemoryLimit).
	policyBytes int64
	// stopping is set, under reloadMu, when Stop begins: a reload then
	// refuses, so none runs on a server being torn down.
	stopping bool
	stopOnce sync.Once
	healthMu sync.Mutex
	status   healthpb.HealthCheckResponse_ServingStatus // last set; UNKNOWN before the first

	metrics *Metrics // metrics.go
	funnel  *funnel  // funnel.go: the one path of every decision request
	gate    *gate    // gate.go: gRPC calls in flight, bounded from stream start
	ops     opsState // shutdown.go, reload.go, metrics_listener.go

	auditing auditState // auditlog.go
	admin    adminState // admin_state.go

	// introspector asks issuers about opaque tokens: introClient (with
	// introMetrics), or Config.Introspector (introspection.go).
	introspector decision.Introspector
	introClient  *introspect.Client
	introMetrics *introspectionMetrics
}

// NewServer loads the policy and its issuers' keys and builds the server.
// It does not listen: call Serve with a listener. A policy that does not
// load is returned as an error wrapping *decision.LoadError, naming every
// problem.
func NewServer(cfg Config) (*Server, error) { return newServer(cfg, true) }

// newServer is NewServer; announce false leaves the health status UNKNOWN
// (and unlogged) until startHealth, which Bound.Run calls once every
// listener is bound.
func newServer(cfg Config, announce bool) (_ *Server, err error) {
	invalid := cfg.Validate()
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger, keys: cfg.Keys, bg: ctx, cancel: cancel, keysChanged: make(chan struct{}, 1)}
	// The closer stack: each step below that opens something pushes what
	// releases it; a failed step releases everything opened before it,
	// last first, once.
	var undo closers
	defer func() {
		if err != nil {
			undo.close()
		}
	}()
	// The audit sinks are the server's from here, even when cfg is
	// invalid: until the audit log takes them (startAudit), closing them
	// is this stack's job.
	undo.push(func() {
		if s.auditing.log == nil {
			s.closeSinks()
		}
	})
	undo.push(s.closeBackground)
	if invalid != nil {
		return nil, invalid
	}
	if s.keys == nil {
		s.registry = jwks.NewRegistry(ctx)
		s.registry.OnChange = s.keySetChanged
		s.registry.FileOptions.Logger = cfg.Logger
		s.registry.URLOptions.Logger = cfg.Logger
		s.keys = s.registry
	}
	tracer, err := newTracing(cfg.Tracing)
	if err != nil {
		return nil, err
	}
	undo.push(func() { tracer.shutdown(s.bg) })
	s.startIntrospection()
	ownership := cfg.Ownership
	if tracer != nil {
		ownership = traceOwnership(ownership)
		if s.introspector != nil {
			s.introspector = tracedIntrospector{s.introspector}
		}
	}
	s.policyBytes = s.policyFileBytes()
	s.fitMemoryLimit(s.policyBytes)
	pol, err := s.loadPolicy()
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	owners, ownersCache, err := ownershipCache(ownership, pol)
	if err != nil {
		return nil, fmt.Errorf("ownership cache: %w", err)
	}
	s.ownersCache = ownersCache // closed by closeBackground
	var replay decision.ReplayCache
	if cfg.DPoPReplay != nil {
		replay = &decision.LayeredReplayCache{Local: decision.NewMemReplayCache(cfg.DPoPReplayCacheBytes, cfg.Clock), Shared: cfg.DPoPReplay}
	}
	s.engine, err = decision.NewEngine(pol, decision.Options{
		Clock:                cfg.Clock,
		TokenCacheBytes:      cfg.TokenCacheBytes,
		TokenCacheSize:       cfg.TokenCacheSize,
		MaxTokenBytes:        cfg.MaxTokenBytes,
		RevocationStaleAfter: cfg.Revocation.staleAfter(),
		Ownership:            owners,
		Keys:                 s.keys,
		Introspector:         s.introspector,
		DPoPNonceSecret:      cfg.DPoPNonceSecret,
		Replay:               replay,
		ReplayCacheBytes:     cfg.DPoPReplayCacheBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("start decision engine: %w", err)
	}
	undo.push(s.engine.Close)
	if err := s.waitForKeys(pol); err != nil {
		return nil, err
	}
	s.responder = envoy.NewResponder(envoy.ResponderOptions{Realm: cfg.Realm})
	s.funnel = &funnel{engine: s.engine, limits: newLimits(cfg), auditBlock: cfg.Audit.Block}
	s.funnel.tracing = tracer
	// Registered before the audit log's flush, so that records waiting for
	// their shadow evaluation reach the log before it closes.
	s.OnShutdown(func(ctx context.Context) {
		if r := s.funnel.shadow; r != nil {
			r.close(ctx)
		}
	})
	// After the shadow evaluations: the last spans are flushed once every
	// check has been recorded.
	s.OnShutdown(func(ctx context.Context) { s.funnel.tracing.shutdown(ctx) })
	if err := s.startAudit(); err != nil {
		return nil, err
	}
	undo.push(func() { s.closeAudit(s.bg) })
	s.funnel.audit = s.auditing.log
	s.initHTTP()
	s.metrics = newMetrics(s.engine, func() bool { return s.servingStatus() == healthpb.HealthCheckResponse_SERVING })
	if oc := s.ownersCache; oc != nil {
		s.metrics.SetOwnershipStats(func() (uint64, uint64) { st := oc.Stats(); return st.Hits, st.Misses })
	}
	s.metrics.policyLoaded()
	s.exportAuditMetrics()
	// stopAdmin stops what startAdmin started, however far it got, and
	// the SSF receiver startSSF starts.
	undo.push(s.stopAdmin)
	if err := s.startAdmin(ctx); err != nil {
		return nil, err
	}

	s.funnel.metrics = s.metrics
	s.funnel.shadow = newShadowRunner(s.funnel, cfg.CheckTimeout)
	undo.push(func() { s.funnel.shadow.close(s.bg) })
	s.gate = &gate{max: int64(cfg.MaxInflight), timeout: cfg.CheckTimeout}
	s.metrics.exportGate(s.gate, s.funnel.shadow)
	s.metrics.exportIntrospection(s.engine, s.introMetrics)
	unary, stream := s.interceptors()
	unary = append([]grpc.UnaryServerInterceptor{s.gate.unary}, unary...)
	s.grpc = grpc.NewServer(
		// Cheaper CheckRequest decoding and CheckResponse marshalling, and
		// handler goroutines that keep their grown stacks (codec.go).
		grpc.ForceServerCodecV2(Codec{}),
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		// Every call is admitted against the in-flight cap and bounded by
		// the check timeout from stream start, before its message is read
		// (gate.go).
		grpc.InTapHandle(s.gate.tap),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinClientPing,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    keepaliveServerPing,
			Timeout: keepalivePingTimeout,
			// A connection that carries no call for this long is closed
			// (GOAWAY); one older than MaxConnectionAge is asked to
			// reconnect, which also spreads long-lived proxy connections
			// over replicas. Calls in flight get the grace to finish.
			MaxConnectionIdle:     cfg.MaxConnectionIdle,
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: connectionAgeGrace(cfg),
		}),
	)
	undo.push(s.grpc.Stop) // its stream workers run from NewServer on
	s.grpc.RegisterService(&extAuthzServiceDesc, &ExtAuthz{funnel: s.funnel, responder: s.responder})
	scopegatev1.RegisterAuthorizerServer(s.grpc, &Authorizer{funnel: s.funnel, responder: s.responder})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	s.log.Info("policy loaded", "policy", cfg.PolicyPath, "version", pol.Version, "routes", len(pol.Routes), "issuers", len(pol.Issuers))
	if err := s.startSSF(ctx); err != nil {
		return nil, err
	}
	if announce {
		s.startHealth()
	}
	return s, nil
}

// startHealth sets the first health status and keeps it current.
func (s *Server) startHealth() {
	s.updateHealth()
	go s.watchHealth(s.bg)
}

// healthInterval is how often readiness is re-evaluated, so that an issuer
// whose key set arrives late (a JWKS endpoint down at start) turns the
// server SERVING without a restart.
const healthInterval = 5 * time.Second

// updateHealth sets the health status: SERVING when a policy is in force
// and every issuer has keys to verify with, NOT_SERVING otherwise. After
// Stop it changes nothing (health.Server ignores updates once shut down).
func (s *Server) updateHealth() {
	st := healthpb.HealthCheckResponse_SERVING
	if ready, missing := s.engine.KeysReady(s.engine.Policy()); !ready {
		st = healthpb.HealthCheckResponse_NOT_SERVING
		if missing != "" {
			s.log.Debug("issuer has no keys yet; not serving", "issuer", missing)
		}
	}
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if st == s.status {
		return
	}
	s.status = st
	for _, name := range []string{"", ExtAuthzService, AuthorizerService} {
		s.health.SetServingStatus(name, st)
	}
	s.log.Info("health status", "status", st.String())
}

func (s *Server) watchHealth(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.updateHealth()
		case <-s.keysChanged:
			s.updateHealth()
		}
	}
}

// interceptors returns the unary and stream interceptor chains: recovery
// (a panic becomes codes.Internal and a log line, never a crash), then
// logging. Check calls skip logging unless the logger is enabled at debug
// level, so the decision path does not pay for it.
func (s *Server) interceptors() (unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) {
	rec := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.log.ErrorContext(ctx, "panic in gRPC handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})}
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		s.log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		// Successful calls (health probes above all) are routine: debug.
		logging.WithLevels(func(c codes.Code) logging.Level {
			if c == codes.OK {
				return logging.LevelDebug
			}
			return logging.DefaultServerCodeToLevel(c)
		}),
	}
	logUnary := logging.UnaryServerInterceptor(logger, logOpts...)
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		logUnary = selector.UnaryServerInterceptor(logUnary, selector.MatchFunc(notCheck))
	}
	unary = []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(rec...), logUnary}
	stream = []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(rec...), logging.StreamServerInterceptor(logger, logOpts...)}
	return unary, stream
}

// notCheck matches every call but the two decision calls.
func notCheck(_ context.Context, c interceptors.CallMeta) bool {
	return c.Method != "Check" || (c.Service != ExtAuthzService && c.Service != AuthorizerService)
}

// Engine returns the decision engine, for other listeners and for admin
// operations that read the policy in force.
func (s *Server) Engine() *decision.Engine { return s.engine }

// Serve accepts connections on lis until Stop. It returns nil after Stop.
// With Config.MaxConnections set, it holds at most that many connections
// open at once; further clients wait in the listen backlog until one
// closes.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("serving gRPC", "addr", lis.Addr().String(), "max_connections", s.cfg.MaxConnections, "max_inflight", s.cfg.MaxInflight)
	if n := s.cfg.MaxConnections; n > 0 {
		lis = netutil.LimitListener(lis, n)
	}
	return s.grpc.Serve(lis)
}

// Reload loads and compiles the policy file again and, only if that
// succeeds, makes it the policy in force. On error the old policy stays in
// force and the error (a *decision.LoadError naming every problem) is
// returned. Reloads are serialized with every other trigger's (reload.go).
func (s *Server) Reload() error { return s.ReloadFrom("api") }

// ReloadFrom is Reload on behalf of trigger, which the log lines name
// (the command passes "SIGHUP"). It reloads even when the file looks
// unchanged: whoever asked did so on purpose (a key set the policy names
// may have been fixed, for one).
func (s *Server) ReloadFrom(trigger string) error {
	_, err := s.reload(trigger, true)
	return err
}

// Stop marks the server NOT_SERVING, stops accepting calls and waits up to
// Config.ShutdownTimeout for calls in flight, then closes every connection
// and releases the engine and key sources. It is safe to call more than
// once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		// Wait for a reload in progress; later ones refuse.
		s.reloadMu.Lock()
		s.stopping = true
		s.reloadMu.Unlock()
		s.health.Shutdown()
		httpCtx, httpCancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer httpCancel()
		httpDone := s.shutdownHTTP(httpCtx)
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		t := time.NewTimer(s.cfg.ShutdownTimeout)
		select {
		case <-done:
			t.Stop()
		case <-t.C:
			s.log.Warn("graceful stop timed out; closing connections", "timeout", s.cfg.ShutdownTimeout)
			s.grpc.Stop()
			<-done
		}
		<-httpDone
		s.stopAdmin()
		s.stopOps() // shutdown hooks (audit flush), then the operator listener
		s.engine.Close()
		s.closeBackground()
		s.log.Info("server stopped")
	})
}

func (s *Server) closeBackground() {
	if s.registry != nil {
		s.registry.Close()
	}
	if s.ownersCache != nil {
		s.ownersCache.Close()
	}
	s.cancel()
}
