package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/tokenmint"
)

// The dpop shape: every token of the pool has a twin bound to one DPoP key
// (cnf.jkt), and every request of a scopegate round carries a proof never
// used before (RFC 9449: the replay cache refuses a second use). The
// proofs are signed before the run, one per request the run is expected to
// send, so the client's signing does not compete with the server for the
// CPU; a run that outlasts the pool signs the rest as it goes, and the
// report says how many. The floor is the same server deciding the unbound
// twins as Bearer tokens, cached: the ratio is the cost of the DPoP path.

// dpopYAML is the generated policy's dpop block: a window long enough for
// a run's proofs, all signed at its start (max_age and clock_skew may not
// exceed 10 minutes together).
const dpopYAML = "dpop:\n  max_age: 9m\n  clock_skew: 5s\n"

// dpopRunLimit is how long a run may last for proofs signed at its start.
const dpopRunLimit = 9 * time.Minute

// dpopRPS sizes the proofs of a timed run: more than a 2-core machine
// decides DPoP requests per second.
const dpopRPS = 10_000

// maxAheadProofs bounds the proofs signed before a run (about 600 bytes
// each).
const maxAheadProofs = 1_000_000

// dpopReq is one DPoP request of a scopegate round.
type dpopReq struct {
	kind   int
	method string
	path   string
	authz  string // "DPoP <token>"
	proof  string
}

// dpopSet is the run's bound tokens and their proofs.
type dpopSet struct {
	prover *tokenmint.Prover
	tokens []string // "DPoP <token>", index-aligned with tokenSet.bearer
	bad    []string // tokens[i] with a bad signature
	pool   []dpopReq
	next   atomic.Int64
	inline atomic.Uint64
	errs   atomic.Uint64
}

// newDPoPSet mints the bound twins of tokens 0..n-1 with m's claims.
func newDPoPSet(m *minter, n int) (*dpopSet, error) {
	signer, err := tokenmint.NewECSigner("")
	if err != nil {
		return nil, err
	}
	prover, err := tokenmint.ProverOf(signer)
	if err != nil {
		return nil, err
	}
	bm := *m
	bm.jkt = prover.JKT
	toks, err := bm.mintMany(0, n, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	d := &dpopSet{prover: prover, tokens: make([]string, n), bad: make([]string, n)}
	for i, t := range toks {
		d.tokens[i] = "DPoP " + t
		d.bad[i] = "DPoP " + badSignature(t)
	}
	return d, nil
}

// proofsNeeded estimates the scopegate requests of the dpop shape: exact
// for a request count, from dpopRPS for a timed run.
func proofsNeeded(cfg *Config) int {
	secs := cfg.Warmup.Seconds()
	n := 0
	if cfg.Requests > 0 {
		n = cfg.Requests
	} else {
		secs += cfg.Duration.Seconds()
	}
	return min(n+int(secs*dpopRPS)+64, maxAheadProofs)
}

// request returns a DPoP request of kind for token i, with a fresh proof.
func (d *dpopSet) request(l *load, kind, i int) (dpopReq, error) {
	route := routeOf(i, l.toks.routes)
	rq := dpopReq{kind: kind, method: "GET", path: l.paths[route], authz: d.tokens[i]}
	switch kind {
	case 1: // a route the token has no scope for, as pick chooses it
		if l.cfg.Routes > 1 {
			rq.path = l.paths[(route+1)%l.cfg.Routes]
		} else {
			rq.method, rq.path = "POST", "/orders"
		}
	case 2:
		rq.authz = d.bad[i]
	}
	proof, err := d.prover.Proof(rq.method, "https://"+benchHost+rq.path, rq.authz[len("DPoP "):], time.Now())
	rq.proof = proof
	return rq, err
}

// fill signs n requests, picked by the mix with seed, on every CPU.
func (d *dpopSet) fill(l *load, n int, seed uint64) error {
	d.pool = make([]dpopReq, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				rq, err := d.request(l, pickKind(l, rng), rng.IntN(len(d.tokens)))
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				d.pool[k] = rq
			}
		})
	}
	wg.Wait()
	return firstErr
}

// pickKind draws a request kind by the mix.
func pickKind(l *load, rng *rand.Rand) int {
	n := rng.IntN(l.total)
	kind := 0
	for n >= l.weights[kind] {
		n -= l.weights[kind]
		kind++
	}
	return kind
}

// take returns the next request of the pool, or one signed now when the
// pool is used up.
func (d *dpopSet) take(w *worker) request {
	var rq dpopReq
	if k := int(d.next.Add(1)) - 1; k < len(d.pool) {
		rq = d.pool[k]
	} else {
		d.inline.Add(1)
		var err error
		if rq, err = d.request(w.l, pickKind(w.l, w.rng), w.rng.IntN(len(d.tokens))); err != nil {
			d.errs.Add(1)
		}
	}
	return request{kind: rq.kind, method: rq.method, path: rq.path, bearer: rq.authz, dpop: rq.proof}
}

// prime decides every bound token once (and its bad twin) in-process, each
// with a fresh proof, so the measured rounds find them in the token cache.
func (d *dpopSet) prime(ctx context.Context, l *load, eng *decision.Engine) error {
	for i := range d.tokens {
		for _, kind := range []int{0, 2} {
			rq, err := d.request(l, kind, i)
			if err != nil {
				return err
			}
			r := decision.Request{Method: rq.method, Path: rq.path, Host: benchHost, Scheme: "https", SourceIP: l.sourceIP,
				Authorization: rq.authz, AuthorizationCount: 1, DPoP: rq.proof, DPoPCount: 1}
			dec := eng.Decide(ctx, &r)
			if out, msg := checkDecision(&dec, kind); out != outcomeRight {
				return fmt.Errorf("priming the DPoP-bound tokens: %s", msg)
			}
		}
	}
	return nil
}
