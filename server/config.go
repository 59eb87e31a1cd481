package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// Defaults of Config. A zero field means its default.
const (
	// DefaultGRPCAddr listens on loopback only: exposing the PDP beyond the
	// host is a deliberate choice the operator makes with an explicit
	// address.
	DefaultGRPCAddr = "127.0.0.1:9191"
	// DefaultHTTPAddr is the HTTP listener (forward-auth and AuthZEN),
	// loopback only for the same reason.
	DefaultHTTPAddr = "127.0.0.1:9192"
	// DefaultTokenCacheBytes is the heap the verified-token cache may
	// hold: 64 MiB, about 50,000 typical tokens, a small share of the
	// Kubernetes example's 512 MiB limit.
	DefaultTokenCacheBytes = decision.DefaultTokenCacheBytes
	// DefaultTokenCacheSize is no entry bound: the byte budget alone
	// bounds the token cache.
	DefaultTokenCacheSize int64 = 0
	// DefaultMaxTokenBytes rejects longer bearer tokens unread.
	DefaultMaxTokenBytes = 16 << 10
	// DefaultMaxRecvMsgSize bounds one incoming gRPC message. A
	// CheckRequest without a body is a few KiB; 1 MiB leaves room for
	// large header sets while keeping a hostile client from making the
	// server buffer much.
	DefaultMaxRecvMsgSize = 1 << 20
	// DefaultMaxConcurrentStreams bounds concurrent calls per connection.
	DefaultMaxConcurrentStreams uint32 = 1024
	// DefaultMaxConnectionIdle closes a gRPC connection that carried no
	// call for this long.
	DefaultMaxConnectionIdle = 15 * time.Minute
	// DefaultMaxConnectionAge asks a gRPC client to reconnect after this
	// long, so that long-lived proxy connections spread over replicas and
	// no connection lives forever.
	DefaultMaxConnectionAge = time.Hour
	// DefaultShutdownTimeout bounds the graceful stop: in-flight calls get
	// this long to finish before connections are closed.
	DefaultShutdownTimeout = 10 * time.Second

	// minRecvMsgSize is the smallest MaxRecvMsgSize accepted: below it,
	// ordinary Envoy requests would be refused.
	minRecvMsgSize = 4 << 10
)

// Config configures a Server. The zero value of every field but PolicyPath
// means its default.
type Config struct {
	// PolicyPath is the policy file to load (required).
	PolicyPath string
	// SSF configures the Shared Signals receiver (ssf.go); off without
	// transmitters.
	SSF SSFConfig
	// GRPCAddr is the host:port the gRPC listener binds (Run only);
	// default DefaultGRPCAddr.
	GRPCAddr string
	// HTTPAddr is the host:port the HTTP listener (forward-auth, AuthZEN)
	// binds (Run only); default DefaultHTTPAddr.
	HTTPAddr string
	// DisableHTTP turns the HTTP listener off (Run serves gRPC only).
	DisableHTTP bool
	// HTTPPathPrefix is stripped from a forward-auth check's own path when
	// no X-Forwarded-Uri / X-Original-URI is present: set it to Envoy's
	// http_service path_prefix. "" (default) strips nothing. It must start
	// with '/' and not end with '/'.
	HTTPPathPrefix string
	// Logger receives the server's logs; default slog.Default(). Check calls
	// are logged only when it is enabled at debug level.
	Logger *slog.Logger
	// TokenCacheBytes bounds the heap the verified-token cache holds, in
	// bytes (at least 1 MiB); default DefaultTokenCacheBytes.
	TokenCacheBytes int64
	// TokenCacheSize, when positive, also bounds the token cache in
	// entries; default none (DefaultTokenCacheSize).
	TokenCacheSize int64
	// MaxTokenBytes rejects longer bearer tokens; default
	// DefaultMaxTokenBytes.
	MaxTokenBytes int
	// MaxRecvMsgSize bounds an incoming gRPC message, in bytes; default
	// DefaultMaxRecvMsgSize.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds concurrent calls per connection; default
	// DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// ShutdownTimeout bounds the graceful stop; default
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// MaxInflight bounds the gRPC calls in flight across connections,
	// counted from stream start; more are refused with RESOURCE_EXHAUSTED
	// before any goroutine is spent on them (gate.go). Default
	// DefaultMaxInflight.
	MaxInflight int
	// MaxConnections caps the gRPC connections open at once (Serve); 0
	// (the default) sets no cap. Further clients wait in the listen
	// backlog.
	MaxConnections int
	// MaxConnectionIdle closes a gRPC connection idle this long; default
	// DefaultMaxConnectionIdle.
	MaxConnectionIdle time.Duration
	// MaxConnectionAge asks a gRPC client to reconnect after this long;
	// default DefaultMaxConnectionAge.
	MaxConnectionAge time.Duration
	// MaxRequestHeaders bounds the headers of one Check (ext_authz or
	// Authorizer); more are denied with request_invalid. Default
	// DefaultMaxRequestHeaders (limits.go).
	MaxRequestHeaders int
	// MaxRequestHeaderBytes bounds the headers of one Check, names and
	// values summed; more are denied with request_invalid. Default
	// DefaultMaxRequestHeaderBytes.
	MaxRequestHeaderBytes int
	// AutoMemoryLimit, when positive, is a soft memory limit derived from
	// the token cache budget (MemoryLimitAuto) that the server keeps
	// applied, raised by what the policy file in force needs
	// (PolicyMemoryAllowance), at start and on every reload. 0 leaves the
	// process's limit alone.
	AutoMemoryLimit int64
	// MaxPolicyBytes refuses, unparsed, a larger policy file at start and
	// on reload; 0 means the default of 16 MiB.
	MaxPolicyBytes int
	// CheckTimeout bounds one decision on the server side; a decision that
	// runs longer is answered as an internal error. Default
	// DefaultCheckTimeout.
	CheckTimeout time.Duration
	// Realm is the realm of WWW-Authenticate challenges; default "scopegate".
	Realm string
	// Clock is the engine's clock; default time.Now. Tests inject one.
	Clock func() time.Time
	// Keys finds issuers' key sets at decision time; default a
	// store/jwks.Registry (files and URLs, fetched in the background).
	// Tests and embedders may pass their own.
	Keys decision.KeyResolver
	// Introspector asks issuers about opaque tokens (RFC 7662); default a
	// store/introspect.Client, whose credentials are read when a policy
	// loads. Tests and embedders may pass their own.
	Introspector decision.Introspector
	// DPoPNonceSecret keys the DPoP server nonces (RFC 9449 §8) of a
	// policy with dpop.nonce: required: at least
	// decision.MinDPoPNonceSecretBytes bytes, the same on every replica.
	// A policy that requires nonces does not load without it.
	DPoPNonceSecret []byte
	// DPoPReplay is the DPoP replay cache shared by the replicas of a
	// deployment (store.ReplayCacheProvider: PostgreSQL). The server puts
	// its own cache in memory in front of it (decision.LayeredReplayCache),
	// so a proof seen here is refused without a round trip. When nil, the
	// cache in memory is all: right for one process (the bbolt store, no
	// store), not for replicas behind one load balancer.
	DPoPReplay decision.ReplayCache
	// DPoPReplayCacheBytes bounds the in-process DPoP replay cache (0:
	// decision.DefaultReplayCacheBytes, 16 MiB, about 130,000 proofs in
	// the window).
	DPoPReplayCacheBytes int64
	// KeyStartupTimeout, when positive, makes NewServer fail if some
	// issuer's key set has not been loaded within it (a JWKS endpoint down
	// at start). Zero, the default, starts anyway: the server is
	// NOT_SERVING, and the issuer's tokens are denied with
	// key_set_unavailable, until the keys arrive.
	KeyStartupTimeout time.Duration
	// MetricsAddr is the host:port of the operator listener Run starts:
	// /metrics, /healthz, /readyz and, with Pprof, /debug/pprof. "" starts none (the
	// library default; scopegate serve defaults to DefaultMetricsAddr).
	MetricsAddr string
	// Pprof serves /debug/pprof/* on the operator listener (off by
	// default). /debug/pprof/cmdline is served with secrets redacted.
	Pprof bool
	// WatchPolicy makes Run reload the policy file when it changes
	// (ReloadFrom reloads on demand: scopegate serve calls it on SIGHUP).
	WatchPolicy bool
	// Audit configures the decision audit log and scope usage
	// aggregation (auditlog.go); the zero value records neither.
	Audit AuditConfig
	// Admin configures the Admin API listener (admin_config.go); off
	// unless Admin.Addr is set.
	Admin AdminConfig
	// Revocation configures the revocation store and its staleness bound
	// (admin_config.go); the zero value keeps revocations in memory.
	Revocation RevocationConfig
	// Ownership answers the ownership lookups of the policy's owner rules
	// (store.Store.Ownership()); the server puts a cache in front of it.
	// When nil, an owner rule denies with ownership_unavailable.
	Ownership decision.OwnershipStore
	// Tracing exports a span per check to an OpenTelemetry collector
	// (tracing.go); the zero value is off.
	Tracing Tracing
}

// Validate reports every invalid field at once, each with the fix. It does
// not touch the file system or the network.
func (c *Config) Validate() error {
	var errs []error
	if c.PolicyPath == "" {
		errs = append(errs, errors.New("server config: PolicyPath is empty: name the policy file to load"))
	}
	if c.GRPCAddr != "" {
		if _, port, err := net.SplitHostPort(c.GRPCAddr); err != nil {
			errs = append(errs, fmt.Errorf("server config: GRPCAddr %q is not host:port (e.g. %q): %v", c.GRPCAddr, DefaultGRPCAddr, err))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("server config: GRPCAddr %q: port %q must be a number from 0 to 65535", c.GRPCAddr, port))
		}
	}
	if err := validateAddr("MetricsAddr", c.MetricsAddr, DefaultMetricsAddr); err != nil {
		errs = append(errs, err)
	}
	if c.KeyStartupTimeout < 0 {
		errs = append(errs, errors.New("server config: KeyStartupTimeout is negative: use 0 to start without keys (NOT_SERVING until they arrive) or a positive timeout to fail instead"))
	}
	if c.HTTPAddr != "" {
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("server config: HTTPAddr %q is not host:port (e.g. %q): %v", c.HTTPAddr, DefaultHTTPAddr, err))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("server config: HTTPAddr %q: port %q must be a number from 0 to 65535", c.HTTPAddr, port))
		}
	}
	if err := validatePathPrefix(c.HTTPPathPrefix); err != nil {
		errs = append(errs, err)
	}
	if c.TokenCacheSize < 0 {
		errs = append(errs, fmt.Errorf("server config: TokenCacheSize %d is negative: use 0 for no entry bound (TokenCacheBytes bounds the cache)", c.TokenCacheSize))
	}
	if c.TokenCacheBytes < 0 || (c.TokenCacheBytes > 0 && c.TokenCacheBytes < 1<<20) {
		errs = append(errs, fmt.Errorf("server config: TokenCacheBytes %d is too small: use at least 1048576 (1 MiB), or 0 for the default (%d)", c.TokenCacheBytes, DefaultTokenCacheBytes))
	}
	if c.MaxTokenBytes < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxTokenBytes %d is negative: use 0 for the default (%d)", c.MaxTokenBytes, DefaultMaxTokenBytes))
	}
	if c.MaxRecvMsgSize < 0 || (c.MaxRecvMsgSize > 0 && c.MaxRecvMsgSize < minRecvMsgSize) {
		errs = append(errs, fmt.Errorf("server config: MaxRecvMsgSize %d is too small: use at least %d bytes, or 0 for the default (%d)", c.MaxRecvMsgSize, minRecvMsgSize, DefaultMaxRecvMsgSize))
	}
	if c.MaxRequestHeaders < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxRequestHeaders %d is negative: use 0 for the default (%d)", c.MaxRequestHeaders, DefaultMaxRequestHeaders))
	}
	if c.MaxRequestHeaderBytes < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxRequestHeaderBytes %d is negative: use 0 for the default (%d)", c.MaxRequestHeaderBytes, DefaultMaxRequestHeaderBytes))
	}
	if c.MaxPolicyBytes < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxPolicyBytes %d is negative: use 0 for the default (16 MiB)", c.MaxPolicyBytes))
	}
	if c.CheckTimeout < 0 {
		errs = append(errs, fmt.Errorf("server config: CheckTimeout %v is negative: use 0 for the default (%v)", c.CheckTimeout, DefaultCheckTimeout))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("server config: ShutdownTimeout %v is negative: use 0 for the default (%v)", c.ShutdownTimeout, DefaultShutdownTimeout))
	}
	if c.MaxInflight < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxInflight %d is negative: use 0 for the default (%d)", c.MaxInflight, DefaultMaxInflight))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxConnections %d is negative: use 0 for no cap", c.MaxConnections))
	}
	if c.MaxConnectionIdle < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxConnectionIdle %v is negative: use 0 for the default (%v)", c.MaxConnectionIdle, DefaultMaxConnectionIdle))
	}
	if c.MaxConnectionAge < 0 {
		errs = append(errs, fmt.Errorf("server config: MaxConnectionAge %v is negative: use 0 for the default (%v)", c.MaxConnectionAge, DefaultMaxConnectionAge))
	}
	if err := c.Audit.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Admin.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Revocation.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Tracing.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TokenCacheBytes == 0 {
		c.TokenCacheBytes = DefaultTokenCacheBytes
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.MaxRecvMsgSize == 0 {
		c.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.MaxRequestHeaders == 0 {
		c.MaxRequestHeaders = DefaultMaxRequestHeaders
	}
	if c.MaxRequestHeaderBytes == 0 {
		c.MaxRequestHeaderBytes = DefaultMaxRequestHeaderBytes
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = DefaultCheckTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.MaxConnectionIdle == 0 {
		c.MaxConnectionIdle = DefaultMaxConnectionIdle
	}
	if c.MaxConnectionAge == 0 {
		c.MaxConnectionAge = DefaultMaxConnectionAge
	}
	return c
}
