package harness

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/scopegate/scopegate/decision"
	scopegatev1 "github.com/scopegate/scopegate/proto/scopegate/v1"
)

// Servers a phase can load.
const (
	serverScopegate = "scopegate"
	serverNoop      = "noop"
)

// endpoint is one server under load.
type endpoint struct {
	name   string
	conns  []*grpc.ClientConn
	engine *decision.Engine // APIDecide only
	// verify checks every response against its expected verdict (the
	// no-op allows everything, so it is not checked).
	verify bool
	// reload reloads the policy every reloadEvery (in-process scopegate
	// with --soak-reload, and the reload shape).
	reload      func() error
	reloadEvery time.Duration
	// http is an HTTP server under load (forward-auth, AuthZEN, nginx);
	// nil for gRPC.
	http *httpTarget
	// dpop sends DPoP-bound tokens, each request with a fresh proof
	// (the dpop shape).
	dpop *dpopSet
	// prime: the floor is a scopegate of its own, primed as scopegate is
	// (the audit shape's audit-off server).
	prime bool
	// fresh sends never-seen tokens at the miss rate. The no-op gets a
	// reused token of the same size instead: it does not verify anything,
	// and the pool minted ahead is sized for scopegate's rounds only.
	fresh bool
}

// tokenSet holds the run's tokens as whole Authorization values.
type tokenSet struct {
	bearer []string // valid, reused
	bad    []string // bearer[i] with a bad signature
	routes int
	// Never-seen tokens: minted ahead into fresh, or inline by minter.
	fresh     []string
	freshNext atomic.Int64
	minter    *minter
	inline    bool
	exhausted atomic.Uint64
	mintErrs  atomic.Uint64
}

// nextFresh returns a never-seen token and its route, or false when the
// pool minted ahead is used up.
func (t *tokenSet) nextFresh() (string, int, bool) {
	k := int(t.freshNext.Add(1)) - 1
	idx := len(t.bearer) + k
	if t.inline {
		tok, err := t.minter.mint(idx)
		if err != nil {
			t.mintErrs.Add(1)
			return "", 0, false
		}
		return "Bearer " + tok, routeOf(idx, t.routes), true
	}
	if k >= len(t.fresh) {
		t.exhausted.Add(1)
		return "", 0, false
	}
	return t.fresh[k], routeOf(idx, t.routes), true
}

// load is what every phase of a run shares.
type load struct {
	cfg      Config
	toks     *tokenSet
	paths    []string // a request path of each generated route
	weights  [len(kinds)]int
	total    int
	seconds  int64 // request time of every CheckRequest
	sourceIP netip.Addr
}

func newLoad(cfg Config, toks *tokenSet, now time.Time) *load {
	l := &load{cfg: cfg, toks: toks, weights: cfg.Mix.weights(), total: cfg.Mix.total(), seconds: now.Unix(),
		sourceIP: netip.MustParseAddr(benchSource)}
	l.paths = make([]string, cfg.Routes)
	for r := range l.paths {
		l.paths[r] = routePath(r, routeItem(r))
	}
	return l
}

// kindStats counts the requests of one kind.
type kindStats struct {
	Requests uint64 `json:"requests"`
	Wrong    uint64 `json:"wrong"`
}

// phaseResult is one phase's measurements.
type phaseResult struct {
	hist       *Histogram
	requests   uint64 // answered (errors excluded)
	errors     uint64
	wrong      uint64
	internal   uint64 // in-band internal errors (outcomeInternal)
	kinds      [len(kinds)]kindStats
	misses     uint64 // requests sent with a never-seen token
	elapsed    time.Duration
	firstErr   string
	firstWrong string
	// firstInternal describes the first in-band internal error.
	firstInternal string
	reloads       uint64
	reloadErrs    uint64
}

func newPhaseResult() *phaseResult { return &phaseResult{hist: NewHistogram()} }

func (p *phaseResult) merge(o *phaseResult) {
	p.hist.Merge(o.hist)
	p.requests += o.requests
	p.errors += o.errors
	p.wrong += o.wrong
	p.internal += o.internal
	for i := range p.kinds {
		p.kinds[i].Requests += o.kinds[i].Requests
		p.kinds[i].Wrong += o.kinds[i].Wrong
	}
	p.misses += o.misses
	p.elapsed += o.elapsed
	p.reloads += o.reloads
	p.reloadErrs += o.reloadErrs
	if p.firstErr == "" {
		p.firstErr = o.firstErr
	}
	if p.firstWrong == "" {
		p.firstWrong = o.firstWrong
	}
	if p.firstInternal == "" {
		p.firstInternal = o.firstInternal
	}
}

// rps returns answered requests per second.
func (p *phaseResult) rps() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.requests) / p.elapsed.Seconds()
}

// request is one request a worker sends.
type request struct {
	kind   int
	method string
	path   string
	bearer string
	fresh  bool
	dpop   string // the DPoP proof header, or ""
}

// worker is one load goroutine: its own random source, encoder and
// histogram, merged after the phase.
type worker struct {
	l   *load
	rng *rand.Rand
	enc *encoder
	res *phaseResult
}

// pick chooses the next request by the mix and the miss rate.
func (w *worker) pick(fresh bool) request {
	l := w.l
	n := w.rng.IntN(l.total)
	kind := 0
	for n >= l.weights[kind] {
		n -= l.weights[kind]
		kind++
	}
	var rq request
	rq.kind, rq.method = kind, "GET"
	var route int
	if l.cfg.MissRate > 0 && w.rng.Float64() < l.cfg.MissRate && fresh {
		rq.bearer, route, rq.fresh = l.toks.nextFresh()
		if rq.fresh && kind == 2 {
			rq.bearer = "Bearer " + badSignature(rq.bearer[len("Bearer "):])
		}
	}
	if !rq.fresh {
		i := w.rng.IntN(len(l.toks.bearer))
		route = routeOf(i, l.toks.routes)
		rq.bearer = l.toks.bearer[i]
		if kind == 2 {
			rq.bearer = l.toks.bad[i]
		}
	}
	rq.path = l.paths[route]
	if kind == 1 {
		// A route the token has no scope for.
		if l.cfg.Routes > 1 {
			rq.path = l.paths[(route+1)%l.cfg.Routes]
		} else {
			rq.method, rq.path = "POST", "/orders"
		}
	}
	return rq
}

// phase runs one server under load for budget requests (or, when budget
// is 0, for dur) with the config's concurrency and returns the merged
// result. seed varies the random picks between phases.
func (l *load) phase(ctx context.Context, ep *endpoint, api string, budget int, dur time.Duration, seed uint64) *phaseResult {
	var stop atomic.Bool
	var remaining atomic.Int64
	remaining.Store(int64(budget))
	take := func() bool {
		if ctx.Err() != nil || stop.Load() {
			return false
		}
		if budget > 0 {
			return remaining.Add(-1) >= 0
		}
		return true
	}

	workers := make([]*worker, l.cfg.Concurrency)
	for i := range workers {
		workers[i] = &worker{l: l, rng: rand.New(rand.NewPCG(seed, uint64(i))), enc: newEncoder(i, l.seconds), res: newPhaseResult()}
	}
	var reloads, reloadErrs atomic.Uint64
	done := make(chan struct{})
	var bg sync.WaitGroup
	if ep.reload != nil && ep.reloadEvery > 0 {
		bg.Go(func() {
			t := time.NewTicker(ep.reloadEvery)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					if err := ep.reload(); err != nil {
						reloadErrs.Add(1)
					}
					reloads.Add(1)
				}
			}
		})
	}
	start := time.Now()
	if budget == 0 {
		timer := time.AfterFunc(dur, func() { stop.Store(true) })
		defer timer.Stop()
	}
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			if api == APIDecide {
				w.runDecide(ctx, ep.engine, take)
				return
			}
			if ep.http != nil {
				w.runHTTP(ctx, ep, api, take)
				return
			}
			w.runRPC(ctx, ep, ep.conns[i%len(ep.conns)], api, take)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	bg.Wait()

	res := newPhaseResult()
	for _, w := range workers {
		res.merge(w.res)
	}
	res.elapsed = elapsed
	res.reloads, res.reloadErrs = reloads.Load(), reloadErrs.Load()
	return res
}

func (w *worker) runRPC(ctx context.Context, ep *endpoint, conn *grpc.ClientConn, api string, take func() bool) {
	method := authv3.Authorization_Check_FullMethodName
	if api == APIScopegate {
		method = scopegatev1.Authorizer_Check_FullMethodName
	}
	var msg rawMessage
	v := verdict{api: api}
	for take() {
		var rq request
		if ep.dpop != nil {
			rq = ep.dpop.take(w)
		} else {
			rq = w.pick(ep.fresh)
		}
		if api == APIScopegate {
			msg.b = w.enc.scopegate(rq.method, rq.path, rq.bearer[len("Bearer "):])
		} else {
			msg.b = w.enc.envoy(rq.method, rq.path, rq.bearer, rq.dpop)
		}
		t0 := time.Now()
		var err error
		if timeout := w.l.cfg.Timeout; timeout > 0 {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			err = conn.Invoke(cctx, method, &msg, &v)
			cancel()
		} else {
			err = conn.Invoke(ctx, method, &msg, &v)
		}
		lat := time.Since(t0)
		w.record(rq, lat, err, ep.verify, v.check)
	}
}

func (w *worker) runDecide(ctx context.Context, eng *decision.Engine, take func() bool) {
	for take() {
		rq := w.pick(true)
		r := decision.Request{Method: rq.method, Path: rq.path, Authorization: rq.bearer, AuthorizationCount: 1,
			SourceIP: w.l.sourceIP, Host: benchHost}
		t0 := time.Now()
		d := eng.Decide(ctx, &r)
		lat := time.Since(t0)
		w.record(rq, lat, nil, true, func(kind int) (int, string) { return checkDecision(&d, kind) })
	}
}

// checkDecision compares an in-process decision with what a request of
// kind must get.
func checkDecision(d *decision.Decision, kind int) (int, string) {
	want := [...]decision.Code{decision.OK, decision.InsufficientScope, decision.TokenInvalid}[kind]
	if d.Allow != (kind == 0) || d.Code != want {
		out := outcomeWrong
		if !d.Allow && d.Code == decision.Internal {
			out = outcomeInternal
		}
		return out, kinds[kind] + " request: got " + d.Code.String() + " (" + d.Message() + "), want " + want.String()
	}
	return outcomeRight, ""
}

func (w *worker) record(rq request, lat time.Duration, err error, verify bool, check func(int) (int, string)) {
	res := w.res
	if err != nil {
		res.errors++
		if res.firstErr == "" {
			res.firstErr = err.Error()
		}
		return
	}
	res.requests++
	res.hist.Record(lat)
	res.kinds[rq.kind].Requests++
	if rq.fresh {
		res.misses++
	}
	if !verify {
		return
	}
	switch out, s := check(rq.kind); out {
	case outcomeWrong:
		res.wrong++
		res.kinds[rq.kind].Wrong++
		if res.firstWrong == "" {
			res.firstWrong = s
		}
	case outcomeInternal:
		res.internal++
		if res.firstInternal == "" {
			res.firstInternal = s
		}
	}
}

// prime sends every reused token once as an allow and once with a bad
// signature, so that the measured rounds find them in the token cache
// (valid and remembered-invalid alike). It returns the result, checked
// like any phase.
func (l *load) prime(ctx context.Context, ep *endpoint, api string) *phaseResult {
	n := len(l.toks.bearer)
	var next atomic.Int64
	workers := make([]*worker, min(l.cfg.Concurrency, 2*n))
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		w := &worker{l: l, enc: newEncoder(i, l.seconds), res: newPhaseResult()}
		workers[i] = w
		wg.Go(func() {
			var msg rawMessage
			v := verdict{api: api}
			for ctx.Err() == nil {
				j := int(next.Add(1)) - 1
				if j >= 2*n {
					return
				}
				t := j / 2
				rq := request{method: "GET", path: l.paths[routeOf(t, l.toks.routes)], bearer: l.toks.bearer[t]}
				if j%2 == 1 {
					rq.kind, rq.bearer = 2, l.toks.bad[t]
				}
				var err error
				t0 := time.Now()
				switch api {
				case APIDecide:
					r := decision.Request{Method: rq.method, Path: rq.path, Authorization: rq.bearer, AuthorizationCount: 1, SourceIP: l.sourceIP, Host: benchHost}
					d := ep.engine.Decide(ctx, &r)
					w.record(rq, time.Since(t0), nil, true, func(kind int) (int, string) { return checkDecision(&d, kind) })
					continue
				case APIScopegate:
					msg.b = w.enc.scopegate(rq.method, rq.path, rq.bearer[len("Bearer "):])
					err = ep.conns[i%len(ep.conns)].Invoke(ctx, scopegatev1.Authorizer_Check_FullMethodName, &msg, &v)
				default:
					msg.b = w.enc.envoy(rq.method, rq.path, rq.bearer, "")
					err = ep.conns[i%len(ep.conns)].Invoke(ctx, authv3.Authorization_Check_FullMethodName, &msg, &v)
				}
				w.record(rq, time.Since(t0), err, ep.verify, v.check)
			}
		})
	}
	wg.Wait()
	res := newPhaseResult()
	for _, w := range workers {
		res.merge(w.res)
	}
	res.elapsed = time.Since(start)
	return res
}
