package harness

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision/tokenmint"
)

// APIs the harness can drive.
const (
	// APIEnvoy is envoy.service.auth.v3.Authorization/Check.
	APIEnvoy = "envoy"
	// APIScopegate is scopegate.v1.Authorizer/Check.
	APIScopegate = "scopegate"
	// APIBoth runs APIEnvoy, then APIScopegate.
	APIBoth = "both"
	// APIDecide calls the in-process engine's Decide directly, without
	// gRPC: the decision's own cost on the generated policy.
	APIDecide = "decide"
	// APIForwardAuth is the HTTP listener's forward-auth check, as nginx
	// auth_request, Caddy and Traefik send it.
	APIForwardAuth = "forward-auth"
	// APIAuthZEN is an AuthZEN 1.0 access evaluation.
	APIAuthZEN = "authzen"
	// APIAuthZENBatch is an AuthZEN access evaluations request of
	// Config.Batch items.
	APIAuthZENBatch = "authzen-batch"
	// APINginx is a request to nginx, which asks the auth service with
	// auth_request and proxies an allowed request to an upstream.
	APINginx = "nginx"
)

// Request kinds of the mix, each with the verdict every response is
// checked against.
const (
	// KindAllow is a token with the route's scope: allowed (gRPC status 0,
	// ok_response; Check: allow, HTTP 200).
	KindAllow = "allow"
	// KindScope is a valid token on a route whose scope it lacks: denied
	// insufficient_scope (7 PERMISSION_DENIED, HTTP 403).
	KindScope = "scope"
	// KindBadSig is a token whose signature does not verify: denied
	// token_invalid (16 UNAUTHENTICATED, HTTP 401).
	KindBadSig = "badsig"
)

// kinds lists the request kinds in mix order.
var kinds = [...]string{KindAllow, KindScope, KindBadSig}

// Mint modes of never-seen tokens.
const (
	// MintAhead mints every never-seen token before the run, so minting
	// costs the load generator nothing while it measures.
	MintAhead = "ahead"
	// MintInline mints each never-seen token when it is sent. The
	// generator then spends CPU on signing while it measures, but holds no
	// token after use: the mode for memory runs with a million tokens.
	MintInline = "inline"
)

// Defaults of Config.
const (
	DefaultConcurrency = 64
	DefaultConns       = 4
	DefaultDuration    = 10 * time.Second
	DefaultWarmup      = time.Second
	DefaultTimeout     = time.Second
	DefaultRounds      = 3
	DefaultTokens      = 1000
	DefaultRoutes      = 100
	DefaultClients     = 10
	DefaultMix         = "allow=90,scope=5,badsig=5"
	DefaultBatch       = 10
	// DefaultReloadEvery is the reload interval of the reload shape.
	DefaultReloadEvery = time.Second
	// maxAheadTokens bounds the never-seen tokens minted before a run:
	// beyond it, use --mint inline.
	maxAheadTokens = 2_000_000
	// defaultMissRPS sizes the pool of never-seen tokens of a timed run:
	// the rate at which the run is assumed to send them at most. A run
	// that sends more reports the pool as exhausted.
	defaultMissRPS = 50_000
)

// Config is one harness run.
type Config struct {
	// Shapes are the load shapes to measure, in order (see shapes); empty
	// is ShapeGRPC.
	Shapes ShapeList
	// Batch is the number of evaluations of an AuthZEN batch.
	Batch int
	// Segments, with Clients, files the generated scopes under that many
	// segments.
	Segments int
	// Nginx is the nginx binary of the nginx shape ("": nginx from PATH).
	Nginx string
	// Output is "table" (the report for people on Out) or "json" (the
	// report's JSON on Out).
	Output string
	// Progress receives a line per round and the warnings while the run
	// goes (nil: Out).
	Progress io.Writer
	// Target is the address of a running scopegate; "" starts one
	// in-process on 127.0.0.1:0 with the generated policy.
	Target string
	// API is APIEnvoy, APIScopegate, APIBoth or APIDecide.
	API string
	// Concurrency is the number of requests in flight; Conns the number of
	// gRPC connections they share.
	Concurrency int
	Conns       int
	// Duration is how long each server is measured (split into Rounds);
	// Requests, when positive, replaces it with a request count.
	Duration time.Duration
	Requests int
	// Timeout is the deadline of every call, as Envoy sets one on each
	// check (its ext_authz timeout, 200ms by default); 0 sends none.
	Timeout time.Duration
	// Warmup is how long each server is loaded, unmeasured, before the
	// first round.
	Warmup time.Duration
	// Rounds is the number of alternating rounds (scopegate, no-op,
	// scopegate, ...) each server's load is split into.
	Rounds int
	// Mix weighs the request kinds.
	Mix Mix
	// Tokens is the number of distinct valid tokens the run reuses (each
	// verified once, then served from the token cache).
	Tokens int
	// MissRate is the fraction of requests carrying a never-seen token,
	// which the server must verify from scratch.
	MissRate float64
	// Mint is MintAhead or MintInline, for never-seen tokens.
	Mint string
	// Key is the kind of signing key: rsa (RS256, the default), ec (ES256)
	// or ed25519 (EdDSA).
	Key string
	// Routes and Clients size the generated policy; Revocations is the
	// number of revoked jtis (none of them a token the run sends) loaded
	// into the in-process engine.
	Routes      int
	Clients     int
	Revocations int
	// TokenCacheSize is the in-process server's token cache size (0: the
	// server's default).
	TokenCacheSize int64
	// TokenCacheBytes is the in-process server's token cache budget (0:
	// the server's default).
	TokenCacheBytes int64
	// Noop also runs the built-in no-op ext_authz server, in alternating
	// rounds, and reports ratios to it.
	Noop bool
	// JSON is a file to write the report to ("" for none).
	JSON string
	// CPUProfile and MemProfile are files for a CPU profile and an
	// allocation profile of an extra, unmeasured scopegate round.
	CPUProfile string
	MemProfile string
	// SoakReload reloads the in-process policy at this interval while the
	// scopegate rounds run (0: never).
	SoakReload time.Duration
	// RSS reports the process's resident memory and Go heap after the run.
	RSS bool
	// WritePolicy writes the generated policy and its JWKS to this
	// directory and returns without load, for a server run separately.
	WritePolicy string
	// Seed makes token picks and mixes repeatable.
	Seed uint64
	// Opaque sends opaque tokens, issued by a stub authorization server
	// in this process and introspected by the in-process scopegate.
	Opaque bool
	// DPoP adds the dpop shape (ShapeDPoP): DPoP-bound tokens, each request
	// with a fresh proof signed before the run.
	DPoP bool
	// autoMemoryLimit is the soft memory limit the in-process servers keep,
	// as scopegate serve's --memory-limit auto does (0: GOMEMLIMIT rules).
	autoMemoryLimit int64
	// introspection is the generated issuer's introspection block (set by
	// Run with Opaque) and, with the dpop shape, the policy's dpop block.
	introspection string
	// Out receives the human-readable report; nil discards it.
	Out io.Writer
}

// DefaultConfig returns a Config with every default set.
func DefaultConfig() Config {
	m, _ := ParseMix(DefaultMix)
	return Config{
		API:         APIEnvoy,
		Concurrency: DefaultConcurrency,
		Conns:       DefaultConns,
		Duration:    DefaultDuration,
		Warmup:      DefaultWarmup,
		Timeout:     DefaultTimeout,
		Rounds:      DefaultRounds,
		Mix:         m,
		Tokens:      DefaultTokens,
		Mint:        MintAhead,
		Key:         tokenmint.KindRSA,
		Routes:      DefaultRoutes,
		Clients:     DefaultClients,
		Noop:        true,
		Seed:        1,
		Batch:       DefaultBatch,
		Output:      "table",
	}
}

// RegisterFlags binds the harness's flags to c, with c's current values
// as defaults, so that `go run ./bench` and `scopegate bench` take the same
// flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(&c.Shapes, "shape", "load shapes to measure, comma-separated: "+shapeNames()+", or all")
	fs.IntVar(&c.Batch, "batch", c.Batch, "evaluations per AuthZEN batch (shape authzen-batch)")
	fs.IntVar(&c.Segments, "segments", c.Segments, "with --clients, file the generated scopes under this many segments")
	fs.StringVar(&c.Nginx, "nginx", c.Nginx, "nginx binary of the nginx shape (empty: nginx from PATH)")
	fs.StringVar(&c.Output, "output", c.Output, "report format on standard output: table or json (the same JSON as --json)")
	fs.StringVar(&c.Output, "o", c.Output, "same as --output")
	fs.StringVar(&c.Target, "target", c.Target, "address of a running scopegate serving the policy --write-policy writes (same --routes, --clients, --key); empty starts scopegate in-process")
	fs.StringVar(&c.API, "api", c.API, "API to load: envoy (ext_authz Check), scopegate (Authorizer Check), both, or decide (Engine.Decide in-process, no gRPC)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "requests in flight")
	fs.IntVar(&c.Conns, "conns", c.Conns, "gRPC connections the requests share")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long each server is measured, split into --rounds")
	fs.IntVar(&c.Requests, "requests", c.Requests, "requests per server instead of --duration (split into --rounds)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "deadline of every call, as Envoy sends its ext_authz timeout (0: none)")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "unmeasured load on each server before the first round")
	fs.IntVar(&c.Rounds, "rounds", c.Rounds, "alternating rounds (scopegate, no-op, scopegate, ...) per server")
	fs.Var(&c.Mix, "mix", "request kinds and weights: allow (allowed), scope (insufficient scope), badsig (invalid signature)")
	fs.IntVar(&c.Tokens, "tokens", c.Tokens, "distinct valid tokens reused by the run (verified once, then cached)")
	fs.Float64Var(&c.MissRate, "miss-rate", c.MissRate, "fraction of requests with a never-seen token (a cold verify), 0 to 1")
	fs.StringVar(&c.Mint, "mint", c.Mint, "when never-seen tokens are minted: ahead (before the run) or inline (when sent; for memory runs)")
	fs.StringVar(&c.Key, "key", c.Key, "signing key of every token: rsa (RS256), ec (ES256) or ed25519 (EdDSA)")
	fs.IntVar(&c.Routes, "routes", c.Routes, "generated routes /svc{i}/items/{id}, each requiring scope s{i}:read")
	fs.IntVar(&c.Clients, "clients", c.Clients, "generated registered clients with grants (0: no scope catalog, no clients)")
	fs.IntVar(&c.Revocations, "revocations", c.Revocations, "revoked jtis loaded into the in-process engine (none of them sent)")
	fs.Int64Var(&c.TokenCacheSize, "token-cache-size", c.TokenCacheSize, "in-process token cache entry bound (0: the server default, none)")
	fs.Int64Var(&c.TokenCacheBytes, "token-cache-bytes", c.TokenCacheBytes, "in-process token cache budget in bytes (0: the server default)")
	fs.BoolVar(&c.Noop, "noop", c.Noop, "also load the built-in no-op ext_authz server in alternating rounds and print ratios to it")
	fs.StringVar(&c.JSON, "json", c.JSON, "write the results as JSON to this file")
	fs.StringVar(&c.CPUProfile, "cpuprofile", c.CPUProfile, "write a CPU profile of an extra scopegate round to this file")
	fs.StringVar(&c.MemProfile, "memprofile", c.MemProfile, "write an allocation profile of an extra scopegate round to this file")
	fs.DurationVar(&c.SoakReload, "soak-reload", c.SoakReload, "reload the in-process policy at this interval during the scopegate rounds (0: never)")
	fs.BoolVar(&c.RSS, "rss", c.RSS, "report resident memory and Go heap after the run, and per cached token (in-process server)")
	fs.StringVar(&c.WritePolicy, "write-policy", c.WritePolicy, "write the generated policy and JWKS to this directory and exit")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of token picks and the mix")
	fs.BoolVar(&c.DPoP, "dpop", c.DPoP, "also measure the dpop shape: DPoP-bound tokens with a fresh ES256 proof per request (signed before the run) vs the same tokens as cached Bearer")
	fs.BoolVar(&c.Opaque, "opaque", c.Opaque, "send opaque tokens that the in-process scopegate introspects at a stub authorization server in this process (badsig becomes a token the server never issued)")
}

// Validate reports every invalid field at once, each with the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.API {
	case APIEnvoy, APIScopegate, APIBoth:
	case APIDecide:
		if c.Target != "" {
			bad("--api decide calls the engine in-process: drop --target")
		}
	default:
		bad("--api %q: use envoy, scopegate, both or decide", c.API)
	}
	for _, sh := range c.Shapes {
		if _, ok := shapes[sh]; !ok {
			bad("--shape %q: use %s, or all", sh, shapeNames())
		}
	}
	if c.Target != "" && c.usesInprocOnly() {
		bad("--shape %s needs the in-process server (it reloads or restarts it): drop --target", strings.Join(c.Shapes, ","))
	}
	if c.has(ShapeCold) && c.MissRate == 0 {
		bad("--shape cold compares never-seen tokens with cached ones: give --miss-rate, e.g. 0.01 or 0.1")
	}
	if c.has(ShapeFull) && len(c.shapes()) > 1 {
		bad("--shape full configures the in-process server with every feature on: run it alone")
	}
	if c.has(ShapeFull) && c.Clients == 0 {
		bad("--shape full needs registered clients for drift: give --clients")
	}
	if c.Batch < 1 || c.Batch > 1024 {
		bad("--batch %d: use 1 to 1024 (the server's limit per request)", c.Batch)
	}
	if c.Segments < 0 {
		bad("--segments %d is negative: use 0 for none", c.Segments)
	}
	if c.Segments > 0 && c.Clients == 0 {
		bad("--segments needs a scope catalog: give --clients too")
	}
	if c.Output != "table" && c.Output != "json" {
		bad("--output %q: use table or json", c.Output)
	}
	if c.Concurrency < 1 {
		bad("--concurrency %d: use at least 1", c.Concurrency)
	}
	if c.Conns < 1 {
		bad("--conns %d: use at least 1", c.Conns)
	}
	if c.Requests < 0 {
		bad("--requests %d is negative: use 0 to run for --duration", c.Requests)
	}
	if c.Requests == 0 && c.Duration <= 0 {
		bad("--duration %v: use a positive duration, or --requests", c.Duration)
	}
	if c.Timeout < 0 {
		bad("--timeout %v is negative: use 0 for no deadline", c.Timeout)
	}
	if c.Warmup < 0 {
		bad("--warmup %v is negative: use 0 for none", c.Warmup)
	}
	if c.Rounds < 1 {
		bad("--rounds %d: use at least 1", c.Rounds)
	}
	if c.Requests > 0 && c.Requests < c.Rounds {
		bad("--requests %d is fewer than --rounds %d", c.Requests, c.Rounds)
	}
	if c.Mix.total() == 0 {
		bad("--mix gives every kind weight 0: e.g. %s", DefaultMix)
	}
	if c.Tokens < 1 {
		bad("--tokens %d: use at least 1", c.Tokens)
	}
	if c.MissRate < 0 || c.MissRate > 1 {
		bad("--miss-rate %v: use a fraction from 0 to 1", c.MissRate)
	}
	if c.Mint != MintAhead && c.Mint != MintInline {
		bad("--mint %q: use ahead or inline", c.Mint)
	}
	if _, ok := tokenmint.ExampleKeyOf(c.Key); !ok {
		bad("--key %q: use rsa, ec or ed25519", c.Key)
	}
	if c.Routes < 1 {
		bad("--routes %d: use at least 1", c.Routes)
	}
	if c.Clients < 0 {
		bad("--clients %d is negative: use 0 for none", c.Clients)
	}
	if c.Revocations < 0 {
		bad("--revocations %d is negative: use 0 for none", c.Revocations)
	}
	if c.TokenCacheBytes < 0 || (c.TokenCacheBytes > 0 && c.TokenCacheBytes < 1<<20) {
		bad("--token-cache-bytes %d: give at least 1048576 (1 MiB), or 0 for the server default", c.TokenCacheBytes)
	}
	if c.TokenCacheSize < 0 {
		bad("--token-cache-size %d is negative: use 0 for the server default", c.TokenCacheSize)
	}
	if c.SoakReload < 0 {
		bad("--soak-reload %v is negative: use 0 for none", c.SoakReload)
	}
	if c.Opaque && c.Target != "" {
		bad("--opaque introspects at a stub authorization server only an in-process scopegate knows: drop --target")
	}
	if c.Opaque && c.Mint == MintInline {
		bad("--opaque issues its tokens at the stub before the run: drop --mint inline")
	}
	if c.has(ShapeDPoP) && (c.Opaque || c.API != APIEnvoy) {
		bad("--dpop (shape dpop) is measured over ext_authz with JWTs: drop --opaque and --api")
	}
	if c.Opaque && c.WritePolicy != "" {
		bad("--opaque needs the stub authorization server of a run: drop --write-policy")
	}
	if c.Target != "" && c.MemProfile != "" {
		bad("--memprofile profiles the in-process server: drop --target")
	}
	return errors.Join(errs...)
}

// Mix weighs the request kinds, e.g. allow=90,scope=5,badsig=5.
type Mix struct {
	Allow, Scope, BadSig int
}

// ParseMix parses kind=weight pairs separated by commas. Kinds left out
// weigh 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	err := m.Set(s)
	return m, err
}

// Set implements flag.Value.
func (m *Mix) Set(s string) error {
	var out Mix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q is not kind=weight (e.g. %s)", part, DefaultMix)
		}
		w, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || w < 0 {
			return fmt.Errorf("weight %q of %s is not a whole number >= 0", v, k)
		}
		switch strings.TrimSpace(k) {
		case KindAllow:
			out.Allow = w
		case KindScope:
			out.Scope = w
		case KindBadSig:
			out.BadSig = w
		default:
			return fmt.Errorf("unknown kind %q: use allow, scope or badsig", k)
		}
	}
	if out.total() == 0 {
		return fmt.Errorf("%q gives every kind weight 0", s)
	}
	*m = out
	return nil
}

// String implements flag.Value.
func (m *Mix) String() string {
	if m == nil {
		return ""
	}
	return fmt.Sprintf("%s=%d,%s=%d,%s=%d", KindAllow, m.Allow, KindScope, m.Scope, KindBadSig, m.BadSig)
}

func (m Mix) total() int { return m.Allow + m.Scope + m.BadSig }

// weights returns the weights in the order of kinds.
func (m Mix) weights() [len(kinds)]int { return [...]int{m.Allow, m.Scope, m.BadSig} }

// apis returns the APIs a run loads, in order.
func (c *Config) apis() []string {
	if c.API == APIBoth {
		return []string{APIEnvoy, APIScopegate}
	}
	return []string{c.API}
}
