package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/tokenmint"
	"github.com/scopegate/scopegate/server"
	"github.com/scopegate/scopegate/store/audit"
	"github.com/scopegate/scopegate/store/introspect/introspecttest"
)

// memProfileRate samples allocations finely enough for a short profile
// round (the runtime's default samples one per 512 KiB).
const memProfileRate = 4096

// Run executes one harness run: it mints the tokens, starts scopegate
// in-process (or connects to cfg.Target) and the no-op server, loads them
// in alternating rounds for each API, and returns the report, which it also
// prints to cfg.Out and writes to cfg.JSON. An error means the run could
// not be made; wrong decisions and RPC errors are in the report (see
// Report.Failed).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	progress := cfg.Progress
	if progress == nil {
		progress = out
	}
	if cfg.MemProfile != "" {
		runtime.MemProfileRate = memProfileRate
	}
	now := time.Now()
	rep := newReport(&cfg, now)
	// The load before this run does any work of its own: the 1-minute
	// average read after minting counts the minting (all cores for
	// seconds) as other work.
	rep.LoadAvg.Start = loadAvg()

	ss, dev, err := signers()
	if err != nil {
		return nil, err
	}
	if cfg.WritePolicy != "" {
		if !dev {
			return nil, errors.New("--write-policy needs the development keys (examples/keys): run from the scopegate source tree")
		}
		p, err := writePolicy(cfg.WritePolicy, cfg.Routes, cfg.Clients, cfg.Segments, policyVersion(&cfg, 0), "", ss)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "wrote %s and %s; serve it with: scopegate serve --policy %s\n", p, JWKSFile, p)
		return rep, nil
	}
	if cfg.Target != "" && !dev {
		return nil, errors.New("--target needs the development keys (examples/keys) the target's policy trusts: run from the scopegate source tree")
	}
	if !dev {
		rep.note("the development keys were not found (not in the source tree): tokens are signed with fresh keys")
	}

	// Tokens.
	m, err := newMinter(ss[cfg.Key], cfg.Routes, cfg.Clients, now)
	if err != nil {
		return nil, err
	}
	var dp *dpopSet
	if cfg.has(ShapeDPoP) {
		if cfg.Duration+cfg.Warmup > dpopRunLimit && cfg.Requests == 0 {
			return nil, fmt.Errorf("--dpop signs its proofs at the start, and they are accepted for %v: use a shorter --duration", dpopRunLimit)
		}
		cfg.introspection += dpopYAML
		fmt.Fprintf(progress, "minting %d DPoP-bound tokens...\n", cfg.Tokens)
		if dp, err = newDPoPSet(m, cfg.Tokens); err != nil {
			return nil, err
		}
	}
	var as *introspecttest.AS
	if cfg.Opaque {
		as = startOpaqueAS(ss)
		defer as.Close()
		cfg.introspection = introspectionYAML(as)
	}
	t0 := time.Now()
	var pool []string
	bad := badSignature
	if as != nil {
		fmt.Fprintf(progress, "issuing %d opaque tokens at the stub authorization server...\n", cfg.Tokens)
		pool, bad = mintOpaque(as, 0, cfg.Tokens, cfg.Routes, cfg.Clients, now), unknownOpaque
	} else {
		fmt.Fprintf(progress, "minting %d %s tokens...\n", cfg.Tokens, ss[cfg.Key].Alg)
		if pool, err = m.mintMany(0, cfg.Tokens, runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
	}
	toks := &tokenSet{bearer: make([]string, len(pool)), bad: make([]string, len(pool)), routes: cfg.Routes, minter: m, inline: cfg.Mint == MintInline}
	size := 0
	for i, t := range pool {
		toks.bearer[i] = "Bearer " + t
		toks.bad[i] = "Bearer " + bad(t)
		size += len(t)
	}
	rep.TokenBytes = size / len(pool)
	if cfg.MissRate > 0 && cfg.Mint == MintAhead {
		n := freshNeeded(&cfg)
		if n > maxAheadTokens {
			return nil, fmt.Errorf("--miss-rate %v needs %d never-seen tokens, more than %d to mint ahead: use --mint inline (with --key ed25519 or ec to keep signing cheap)", cfg.MissRate, n, maxAheadTokens)
		}
		fmt.Fprintf(progress, "minting %d never-seen tokens for --miss-rate %v...\n", n, cfg.MissRate)
		var fresh []string
		if as != nil {
			fresh = mintOpaque(as, cfg.Tokens, n, cfg.Routes, cfg.Clients, now)
		} else if fresh, err = m.mintMany(cfg.Tokens, n, runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
		toks.fresh = make([]string, n)
		for i, t := range fresh {
			toks.fresh[i] = "Bearer " + t
		}
	}
	rep.MintSeconds = time.Since(t0).Seconds()

	// Servers.
	var sg *inproc
	addr := cfg.Target
	if addr == "" && cfg.needsInproc() {
		// The soft memory limit scopegate serve applies by default, unless
		// GOMEMLIMIT gives one: from the token cache budget, raised for
		// the policy (server.PolicyMemoryAllowance).
		from := ""
		if _, set := server.MemoryLimitSet(); !set {
			var l int64
			l, from = server.MemoryLimitAuto(cfg.TokenCacheBytes)
			if from == server.MemoryLimitFromBudget {
				cfg.autoMemoryLimit = l
			} else {
				server.SetMemoryLimit(l)
			}
			defer server.SetMemoryLimit(math.MaxInt64)
		}
		sg, err = startInproc(&cfg, ss, nil)
		if err != nil {
			return nil, err
		}
		defer sg.stop()
		addr = sg.addr
		if from != "" {
			l, _ := server.MemoryLimitSet()
			rep.note("the in-process server runs under scopegate serve's default soft memory limit, " + mib(uint64(l)) + " (from the " + from + ", with room for the policy; --memory-limit auto)")
		}
		if cfg.Revocations > 0 {
			sg.srv.Engine().SetRevocations(decision.NewRevocationSet(revocations(cfg.Revocations, now)))
			sg.srv.Engine().MarkRevocationsSynced(time.Now())
		}
	} else if cfg.Target != "" {
		if cfg.Revocations > 0 {
			rep.note("--revocations not applied: the target's revocations are its own")
		}
		if cfg.SoakReload > 0 {
			rep.note("--soak-reload not applied: only an in-process server is reloaded")
		}
		if cfg.TokenCacheSize > 0 || cfg.TokenCacheBytes > 0 {
			rep.note("--token-cache-size and --token-cache-bytes not applied: the target runs with its own configuration")
		}
	}
	// The baseline of --rss: the server started, every pre-minted token
	// held, nothing cached yet.
	var baseline *MemoryStats
	if cfg.RSS && sg != nil {
		baseline = readMemory(toks)
	}
	eps, err := newEndpoints(&cfg, addr, sg, rep)
	if err != nil {
		return nil, err
	}
	if sg != nil {
		eps.newInproc = func(auditTo io.Writer) (*inproc, error) { return startInproc(&cfg, ss, auditTo) }
	}
	defer eps.close()

	l := newLoad(cfg, toks, now)
	if dp != nil {
		n := proofsNeeded(&cfg)
		fmt.Fprintf(progress, "signing %d DPoP proofs (ES256)...\n", n)
		t0 := time.Now()
		if err := dp.fill(l, n, cfg.Seed^0xd909); err != nil {
			return nil, err
		}
		rep.DPoP = &DPoPStats{Ahead: n, SignSeconds: time.Since(t0).Seconds()}
		eps.dpop = dp
	}
	if w := loadWarning(rep.LoadAvg.Start, rep.CPUs); w != "" {
		rep.warn(w)
		fmt.Fprintf(progress, "WARNING: %s\n", w)
	}
	for _, se := range cfg.series() {
		sgEP, floorEP, err := eps.forSeries(se[0], se[1])
		if err != nil {
			return nil, err
		}
		ar, err := runAPI(ctx, l, se[1], sgEP, floorEP, eps.prime, sg, progress)
		if err != nil {
			return nil, err
		}
		ar.Shape = se[0]
		if floorEP != nil {
			ar.Floor = shapes[se[0]].floor
			for _, t := range shapes[se[0]].targets {
				ar.Targets = append(ar.Targets, t.evaluate(ar.Ratio))
			}
		}
		if se[1] == APIAuthZENBatch {
			ar.Batch = cfg.Batch
		}
		if se[0] == ShapeAudit && eps.sgAudit != nil {
			st := eps.sgAudit.srv.AuditLog().Stats()
			ar.Audit = &AuditStats{Written: st.Written, Dropped: st.Dropped, Failed: st.Failed, Buffered: st.Buffered}
			if st.Dropped > 0 || st.Failed > 0 {
				rep.warn(fmt.Sprintf("the audit shape's scopegate dropped %d audit records and failed to write %d (of %d written)", st.Dropped, st.Failed, st.Written))
			}
		}
		for _, w := range resultWarnings(ar) {
			rep.warn(w)
			fmt.Fprintf(progress, "WARNING: %s\n", w)
		}
		rep.Results = append(rep.Results, *ar)
	}
	rep.LoadAvg.End = loadAvg()
	if dp != nil {
		rep.DPoP.Inline, rep.DPoP.SignErrors = dp.inline.Load(), dp.errs.Load()
		if rep.DPoP.Inline > 0 {
			rep.note(strconv.FormatUint(rep.DPoP.Inline, 10) + " DPoP proofs were signed by the client during the rounds: the pool signed ahead ran out (use --requests)")
		}
	}
	rep.MissPoolExhausted = toks.exhausted.Load()
	rep.MintErrors = toks.mintErrs.Load()
	if rep.MissPoolExhausted > 0 {
		rep.note(strconv.FormatUint(rep.MissPoolExhausted, 10) + " requests meant to carry a never-seen token reused a cached one: the pool minted ahead ran out (use --requests, or --mint inline)")
	}

	if cfg.CPUProfile != "" || cfg.MemProfile != "" {
		sgEP, _, err := eps.forSeries(cfg.series()[0][0], cfg.series()[0][1])
		if err != nil {
			return nil, err
		}
		if err := profileRound(ctx, l, sgEP, cfg.series()[0][1], &cfg, progress); err != nil {
			return nil, err
		}
	}
	if sg != nil {
		hits, misses := sg.srv.Engine().TokenCacheStats()
		rep.TokenCache = &CacheStats{Hits: hits, Misses: misses}
		if as != nil {
			hits, misses := sg.srv.Engine().IntrospectionStats()
			rep.Introspection = &IntrospectionStats{Hits: hits, Misses: misses, Calls: uint64(as.Calls.Load())}
		}
		if sg.reloads.Load() > 0 {
			rep.Reloads = &ReloadStats{Reloads: sg.reloads.Load(), Failed: sg.reloadErrs.Load()}
		}
	}
	if cfg.RSS {
		rep.Memory = readMemory(toks)
		if sg != nil {
			rep.Memory.perEntry(baseline, sg.srv.Engine())
		}
		if sg == nil {
			rep.note("--rss measures this process; the target's memory is its own")
		}
	}
	if cfg.Output == "json" {
		b, err := rep.json()
		if err != nil {
			return rep, err
		}
		if _, err := out.Write(b); err != nil {
			return rep, err
		}
	} else {
		rep.print(out)
	}
	if cfg.JSON != "" {
		if err := rep.writeJSON(cfg.JSON); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// freshNeeded estimates the never-seen tokens a run sends: exact for a
// request count, from defaultMissRPS for a timed run. Warmup and profile
// rounds draw from the same pool.
func freshNeeded(cfg *Config) int {
	apis := 0
	for _, se := range cfg.series() {
		if se[0] == ShapeGRPC || se[0] == ShapeCold {
			apis++
		}
	}
	if cfg.Requests > 0 {
		n := float64(cfg.Requests) * cfg.MissRate * float64(apis)
		if cfg.CPUProfile != "" || cfg.MemProfile != "" {
			n += float64(cfg.Requests/cfg.Rounds) * cfg.MissRate
		}
		return int(n*1.02) + 16 + int(cfg.Warmup.Seconds()*defaultMissRPS*cfg.MissRate)*apis
	}
	secs := cfg.Duration.Seconds() + cfg.Warmup.Seconds()
	if cfg.CPUProfile != "" || cfg.MemProfile != "" {
		secs += cfg.Duration.Seconds() / float64(cfg.Rounds)
	}
	return int(secs*defaultMissRPS*cfg.MissRate)*apis + 16
}

// runAPI primes, warms up and measures one API: scopegate and the no-op in
// alternating rounds.
func runAPI(ctx context.Context, l *load, api string, sg, noop, primeEP *endpoint, in *inproc, out io.Writer) (*APIResult, error) {
	cfg := &l.cfg
	fmt.Fprintf(out, "[%s] priming %d tokens...\n", api, len(l.toks.bearer))
	pe, primeAPI := sg, api
	if sg.http != nil {
		// The HTTP APIs share the engine and its token cache: prime
		// through ext_authz.
		pe, primeAPI = primeEP, APIEnvoy
	}
	prime := l.prime(ctx, pe, primeAPI)
	if noop != nil && noop.prime {
		if fp := l.prime(ctx, noop, primeAPI); fp.errors+fp.wrong > 0 {
			return nil, fmt.Errorf("priming the %s floor: %d errors, %d wrong answers (%s%s)", noop.name, fp.errors, fp.wrong, fp.firstErr, fp.firstWrong)
		}
		if noop.engine != nil {
			noop.engine.WaitTokenCache()
		}
	}
	if sg.engine != nil && (in == nil || sg.engine != in.srv.Engine()) {
		sg.engine.WaitTokenCache()
	}
	if sg.dpop != nil && in != nil {
		fmt.Fprintf(out, "[%s] priming %d DPoP-bound tokens...\n", api, len(sg.dpop.tokens))
		if err := sg.dpop.prime(ctx, l, in.srv.Engine()); err != nil {
			return nil, err
		}
	}
	if in != nil {
		in.srv.Engine().WaitTokenCache()
	}
	if cfg.Warmup > 0 {
		fmt.Fprintf(out, "[%s] warming up %v per server...\n", api, cfg.Warmup)
		l.phase(ctx, sg, api, 0, cfg.Warmup, cfg.Seed^0xa5a5)
		if noop != nil {
			l.phase(ctx, noop, api, 0, cfg.Warmup, cfg.Seed^0x5a5a)
		}
	}
	sgTotal, noopTotal := newPhaseResult(), newPhaseResult()
	var sgRounds, noopRounds []RoundResult
	for r := range cfg.Rounds {
		budget, dur := roundBudget(cfg, r)
		seed := cfg.Seed + uint64(r)*1000
		res := l.phase(ctx, sg, api, budget, dur, seed)
		sgTotal.merge(res)
		sgRounds = append(sgRounds, roundOf(res))
		fmt.Fprintf(out, "[%s] round %d/%d: scopegate %.0f rps", api, r+1, cfg.Rounds, res.rps())
		if noop != nil {
			res := l.phase(ctx, noop, api, budget, dur, seed)
			noopTotal.merge(res)
			noopRounds = append(noopRounds, roundOf(res))
			fmt.Fprintf(out, ", %s %.0f rps", noop.name, res.rps())
		}
		fmt.Fprintln(out)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	ar := &APIResult{API: api, Scopegate: serverResultOf(serverScopegate, sgTotal, sgRounds)}
	ar.Scopegate.Prime = &PrimeResult{Requests: prime.requests, Errors: prime.errors, Wrong: prime.wrong, FirstError: prime.firstErr, FirstWrong: prime.firstWrong}
	if noop != nil {
		n := serverResultOf(noop.name, noopTotal, noopRounds)
		ar.Noop = &n
		ar.Ratio = ratiosOf(&ar.Scopegate, &n)
	}
	return ar, nil
}

// roundBudget returns round r's request count (0 for a timed round) and
// duration.
func roundBudget(cfg *Config, r int) (int, time.Duration) {
	if cfg.Requests > 0 {
		n := cfg.Requests / cfg.Rounds
		if r == cfg.Rounds-1 {
			n = cfg.Requests - n*(cfg.Rounds-1)
		}
		return n, 0
	}
	return 0, cfg.Duration / time.Duration(cfg.Rounds)
}

// profileRound loads scopegate for one more round with the CPU profiler
// on, then writes the allocation profile. The round is not part of the
// figures.
func profileRound(ctx context.Context, l *load, sg *endpoint, api string, cfg *Config, out io.Writer) error {
	budget, dur := roundBudget(cfg, 0)
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	res := l.phase(ctx, sg, api, budget, dur, cfg.Seed^0xfeed)
	if cfg.CPUProfile != "" {
		pprof.StopCPUProfile()
		fmt.Fprintf(out, "[%s] profile round: %.0f rps; CPU profile in %s\n", api, res.rps(), cfg.CPUProfile)
	}
	if cfg.MemProfile != "" {
		f, err := os.Create(cfg.MemProfile)
		if err != nil {
			return fmt.Errorf("allocation profile: %w", err)
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return fmt.Errorf("allocation profile: %w", err)
		}
		fmt.Fprintf(out, "[%s] allocation profile (whole run, 1 sample per %d bytes) in %s\n", api, memProfileRate, cfg.MemProfile)
	}
	return nil
}

// inproc is scopegate served in this process.
type inproc struct {
	srv        *server.Server
	addr       string
	httpAddr   string
	dir        string
	cfg        *Config
	served     chan error
	reloads    atomic.Uint64
	reloadErrs atomic.Uint64
}

// startInproc starts scopegate in this process on the generated policy;
// with auditTo, its decision audit log goes there as JSON lines (the
// stdout sink of scopegate serve, which audits to standard output by
// default), else nowhere.
func startInproc(cfg *Config, ss map[string]*tokenmint.Signer, auditTo io.Writer) (*inproc, error) {
	dir, err := os.MkdirTemp("", "scopegate-bench-")
	if err != nil {
		return nil, err
	}
	in := &inproc{dir: dir, cfg: cfg, served: make(chan error, 2)}
	p, err := writePolicy(dir, cfg.Routes, cfg.Clients, cfg.Segments, policyVersion(cfg, 0), cfg.introspection, ss)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	scfg := server.Config{
		PolicyPath:      p,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})),
		TokenCacheSize:  cfg.TokenCacheSize,
		TokenCacheBytes: cfg.TokenCacheBytes,
		AutoMemoryLimit: cfg.autoMemoryLimit,
	}
	if cfg.has(ShapeDPoP) {
		// Every proof of the run stays in the window: room for them all.
		scfg.DPoPReplayCacheBytes = int64(proofsNeeded(cfg)+2*cfg.Tokens) * 256
	}
	if auditTo != nil {
		scfg.Audit.Sinks = []audit.Sink{audit.NewWriterSink("stdout", auditTo)}
	}
	if cfg.has(ShapeFull) {
		if err := writeFileAtomic(p, in.policy(0)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		sink, err := audit.NewFileSink(filepath.Join(dir, "audit.log"), audit.FileOptions{})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		scfg.Audit.Sinks = []audit.Sink{sink}
		scfg.Ownership = newBenchOwners(cfg.Routes, cfg.Tokens)
	}
	in.srv, err = server.NewServer(scfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start scopegate: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		in.srv.Stop()
		os.RemoveAll(dir)
		return nil, err
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		lis.Close()
		in.srv.Stop()
		os.RemoveAll(dir)
		return nil, err
	}
	in.addr, in.httpAddr = lis.Addr().String(), hlis.Addr().String()
	go func() { in.served <- in.srv.Serve(lis) }()
	go func() { in.served <- in.srv.ServeHTTPListener(hlis) }()
	return in, nil
}

// reload rewrites the policy under a new version and reloads it.
func (in *inproc) reload() error {
	n := in.reloads.Add(1)
	p := in.dir + string(os.PathSeparator) + PolicyFile
	if err := writeFileAtomic(p, in.policy(n)); err != nil {
		in.reloadErrs.Add(1)
		return err
	}
	if err := in.srv.Reload(); err != nil {
		in.reloadErrs.Add(1)
		return err
	}
	return nil
}

// policy returns the generated policy of the n-th reload.
func (in *inproc) policy(n uint64) []byte {
	c := in.cfg
	return genPolicy(c.Routes, c.Clients, c.Segments, c.has(ShapeFull), policyVersion(c, n), c.introspection)
}

func (in *inproc) stop() {
	in.srv.Stop()
	<-in.served
	<-in.served
	os.RemoveAll(in.dir)
}

func policyVersion(cfg *Config, reload uint64) string {
	return fmt.Sprintf("bench-r%d-c%d-s%d-%d", cfg.Routes, cfg.Clients, cfg.Segments, reload)
}

func dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		c, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(wireCodec{})))
		if err != nil {
			closeAll(conns[:i])
			return nil, fmt.Errorf("connect to %s: %w", addr, err)
		}
		conns[i] = c
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
