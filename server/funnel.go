package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/audit"
)

// The request funnel. Every decision request, whatever protocol brought
// it (ext_authz, the Check RPC, forward-auth, AuthZEN), takes one path:
//
//  1. translate: the protocol's adapter fills a decision.Request, or finds
//     it malformed and names the field (the "invalid" message);
//  2. limits and deadline: the header count and bytes bound every
//     protocol alike, and the decision runs under the check timeout
//     (armed at stream start for gRPC, gate.go);
//  3. decide: engine.DecideEnforced, or decision.Reject for a request
//     refused before it was decided (malformed, over a limit, past the
//     deadline);
//  4. the adapter builds its protocol's reply from the decision;
//  5. record: metrics and audit, exactly once, from the decision the
//     reply was built from, detached from the caller's cancellation.
//
// So what the caller received, what is metered and what is audited are the
// same decision seen three ways, for every protocol by construction. A
// route in shadow mode is evaluated after step 4, off the answer's path
// (shadowRunner), and never changes or delays it.

// exchange is one request on its way through the funnel. Adapters keep it
// on their stack: it holds no pointer to the protocol's own message.
type exchange struct {
	api   apiKind
	start time.Time
	req   decision.Request
	d     decision.Decision
	// id is the decision id the reply carried, or "" (audit makes one).
	id string
	// callerGone is set when the caller's own deadline passed or it
	// cancelled: gRPC answers with a status error then, not a decision.
	callerGone bool
	// span is the check's span when it is traced (tracing.go), else nil.
	span trace.Span
}

// headerSize is what a request's headers count toward the limits: the
// header fields and their names and values summed, in bytes.
type headerSize struct {
	count, bytes int
}

// httpHeaderSize counts the header fields of an HTTP request (each value
// of a repeated header is a field, as on the wire).
func httpHeaderSize(h http.Header) headerSize {
	var hs headerSize
	for k, vs := range h {
		hs.count += len(vs)
		for _, v := range vs {
			hs.bytes += len(k) + len(v)
		}
	}
	return hs
}

// msgCallerGone is the detail recorded when the caller gave up first.
const msgCallerGone = "the caller cancelled, or its own deadline passed, before the decision was made"

// funnel holds what every protocol's requests go through.
type funnel struct {
	engine  *decision.Engine
	limits  limits
	metrics *Metrics      // nil records nothing
	audit   *audit.Logger // nil audits nothing
	// auditBlock: the audit log waits for room in a full buffer, so a
	// record gets a bounded context of its own (see auditCtx).
	auditBlock bool
	shadow     *shadowRunner // nil: shadow routes are not evaluated
	tracing    *tracing      // nil: tracing is off
}

// begin starts x for api, and its span when tracing is on and the check
// is sampled: c holds the request's headers, where the caller's trace
// context is read from. The context returned is ctx, or ctx with the
// span, for the lookups the decision makes.
func (f *funnel) begin(ctx context.Context, x *exchange, api apiKind, c carrier) context.Context {
	x.api = api
	x.start = time.Now()
	if f.tracing == nil {
		return ctx
	}
	return f.tracing.start(ctx, x, c)
}

// bound returns ctx bounded by the check timeout. A caller's deadline that
// is already sooner (Envoy always sends one; the gRPC gate arms ours at
// stream start) is kept as it is, at no cost. Otherwise the bound is a
// checkDeadline (deadline.go), whose stop the caller calls once the
// decision is made; stop is nil when nothing was derived, and a nil stop
// may be called.
//
// now is the clock reading the bound counts from: the exchange's start
// (begin), so that bounding does not read the clock again.
func (f *funnel) bound(ctx context.Context, now time.Time) (context.Context, *checkDeadline) {
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) <= f.limits.timeout {
		return ctx, nil
	}
	c := checkDeadlineAt(ctx, now, f.limits.timeout)
	return c, c
}

// decide runs steps 2 and 3 for x, whose request the adapter translated
// (invalid is the translation's request_invalid message, or ""); hs is the
// size of its headers. ctx is the bounded context (bound).
func (f *funnel) decide(ctx context.Context, x *exchange, invalid string, hs headerSize) {
	if over := f.limits.over(hs); over != "" {
		f.reject(x, decision.RequestInvalid, over)
		return
	}
	switch {
	case invalid != "":
		f.reject(x, decision.RequestInvalid, invalid)
	case ended(ctx):
		f.expired(ctx, x)
	default:
		x.d = f.engine.DecideEnforced(ctx, &x.req)
		if ended(ctx) {
			// Whatever the decision made of a cut-short lookup is not the
			// answer: the deadline is.
			f.expired(ctx, x)
		}
	}
}

// ended reports whether ctx is done or its deadline has passed. A lookup
// under a context derived with the same deadline may see its own timer
// fire first: by the clock, not by the order timers fire in, a decision
// made past the deadline is not the answer.
func ended(ctx context.Context) bool {
	if c, ok := ctx.(*checkDeadline); ok {
		return c.ended()
	}
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// reject refuses x without deciding it.
func (f *funnel) reject(x *exchange, code decision.Code, detail string) {
	x.d = decision.Reject(f.engine.Policy(), code, detail)
	if tr := x.req.Trace; tr != nil {
		tr.Steps = append(tr.Steps, decision.TraceStep{Check: "request", Result: "fail", Detail: detail})
	}
}

// expired answers x whose context ended: past the check timeout it is an
// internal deny; a caller that gave up first gets one recorded too, and
// the adapter answers as its protocol does for a gone caller.
func (f *funnel) expired(ctx context.Context, x *exchange) {
	// The deadline has passed: its timer fires at once, and then the
	// cause tells whose deadline it was.
	<-ctx.Done()
	if errors.Is(context.Cause(ctx), errCheckTimeout) {
		f.reject(x, decision.Internal, f.limits.msgTimeout)
		return
	}
	f.reject(x, decision.Internal, msgCallerGone)
	x.callerGone = true
}

// record is step 5: it counts and audits x's decision, which must be the
// one its reply was built from. When a shadow route matches, the audit
// record waits for the shadow evaluation, off the answer's path.
func (f *funnel) record(ctx context.Context, x *exchange) {
	if x.span != nil {
		sc := x.span.SpanContext()
		x.req.TraceID, x.req.SpanID = sc.TraceID(), sc.SpanID()
		endSpan(x)
		x.span = nil
	}
	f.metrics.observe(x.api, &x.d, time.Since(x.start))
	if f.shadow != nil && f.engine.ShadowRoute(&x.req, &x.d) != nil && f.shadow.enqueue(x) {
		return
	}
	f.auditRecord(ctx, x)
}

// auditRecord writes x's audit record.
func (f *funnel) auditRecord(ctx context.Context, x *exchange) {
	if f.audit == nil {
		return
	}
	if !f.auditBlock {
		// The logger reads ctx only to wait for room, which it does not
		// do unless blocking: nothing of the caller's is needed.
		f.audit.Record(context.Background(), auditAPIs[x.api], &x.req, &x.d, x.start, x.id)
		return
	}
	// Detached from the caller's cancellation (a record is written for a
	// caller that hung up), bounded by the check timeout so a stuck sink
	// cannot hold the request forever.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.limits.timeout)
	f.audit.Record(rctx, auditAPIs[x.api], &x.req, &x.d, x.start, x.id)
	cancel()
}

// auditAPIs maps the funnel's API to the audit record's.
var auditAPIs = [numAPIs]audit.API{apiEnvoy: audit.ExtAuthz, apiScopegate: audit.Authorizer, apiHTTP: audit.HTTP, apiAuthZEN: audit.AuthZEN}

// Shadow evaluation off the answer's path.
const (
	// shadowQueueSize bounds the decisions waiting for their shadow
	// evaluation. A full queue records the decision without its shadow
	// outcome (counted), never drops the record.
	shadowQueueSize = 1024
	// shadowWorkers evaluate shadow routes concurrently; each evaluation
	// is bounded by the check timeout.
	shadowWorkers = 8
)

// shadowRunner evaluates shadow routes after the enforced answer was
// built, each under a budget of its own, then writes the audit record with
// the shadow outcome and counts it.
type shadowRunner struct {
	f       *funnel
	budget  time.Duration
	ch      chan exchange
	wg      sync.WaitGroup
	mu      sync.RWMutex // held shared while enqueueing; close takes it exclusively
	closed  bool
	skipped atomic.Uint64 // decisions recorded without their shadow outcome (queue full)
}

func newShadowRunner(f *funnel, budget time.Duration) *shadowRunner {
	s := &shadowRunner{f: f, budget: budget, ch: make(chan exchange, shadowQueueSize)}
	for range shadowWorkers {
		s.wg.Go(s.run)
	}
	return s
}

// enqueue hands x to the workers. It reports false when the queue is full
// or closed: the caller records x without the shadow outcome.
func (s *shadowRunner) enqueue(x *exchange) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	q := *x
	q.req.Trace = nil // the trace went out with the reply
	select {
	case s.ch <- q:
		return true
	default:
		s.skipped.Add(1)
		return false
	}
}

func (s *shadowRunner) run() {
	for x := range s.ch {
		// A shadow route answered from the caches never waits on its
		// context: the timer is armed only if a lookup asks for Done.
		ctx := newCheckDeadline(context.Background(), s.budget)
		s.f.engine.EvaluateShadow(ctx, &x.req, &x.d)
		ctx.stop()
		s.f.metrics.observeShadow(&x.d)
		s.f.auditRecord(context.Background(), &x)
	}
}

// close stops accepting work and waits for the queued evaluations (each
// bounded by the budget) or ctx, whichever ends first.
func (s *shadowRunner) close(ctx context.Context) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.ch)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
