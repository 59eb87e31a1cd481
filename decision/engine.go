package decision

import (
	"context"
	"fmt"
	"iter"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxParams is the most {param} / {rest...} segments a path template may have.
const MaxParams = 8

// Params are the values of a matched route's path parameters, in the order
// of Route.ParamNames. They are substrings of the normalized path.
type Params struct {
	n      int
	values [MaxParams]string
}

// Len returns the number of parameters.
func (p *Params) Len() int { return p.n }

// At returns the i-th value.
func (p *Params) At(i int) string { return p.values[i] }

// Get returns the value of the parameter named name on route r.
func (p *Params) Get(r *Route, name string) (string, bool) {
	if r == nil {
		return "", false
	}
	for i, n := range r.ParamNames {
		if n == name && i < p.n {
			return p.values[i], true
		}
	}
	return "", false
}

func (p *Params) reset() { p.n = 0 }

func (p *Params) push(v string) bool {
	if p.n >= MaxParams {
		return false
	}
	p.values[p.n] = v
	p.n++
	return true
}

func (p *Params) pop() { p.n-- }

// Decision is the answer to one Request. It is returned by value and, on the
// serving path, allocates nothing: reasons are constants, Route and Token
// point into the compiled policy and the token cache.
type Decision struct {
	Allow bool
	// Code is the primary reason (OK for an allow).
	Code Code
	// Detail is a specific message for this deny; "" means Code.Message().
	Detail string
	// Path is the normalized path the route was matched on.
	Path string
	// Route is the matched route, or nil.
	Route *Route
	// Params are the matched route's path parameter values.
	Params Params
	// Token is the verified token, or nil (public route, or token rejected).
	Token *Token
	// Policy is the policy the decision was made with.
	Policy *Policy
	// DPoPNonce is the nonce a dpop_nonce_required deny tells the client
	// to use, sent in a DPoP-Nonce header (RFC 9449 §9); "" otherwise.
	DPoPNonce string
	// Shadow is the would-be decision of a shadow-mode route that matched
	// the request (Shadow.Route is nil when none did).
	Shadow ShadowOutcome
	// used marks which of the route's required scopes (all_of, then any_of)
	// the token carried.
	used uint64
	gov  decisionGovernance
}

// Message returns the human-readable message of the decision.
func (d *Decision) Message() string {
	if d.Detail != "" {
		return d.Detail
	}
	return d.Code.Message()
}

// ScopesUsed returns the scopes that satisfied the route's requirement (for
// an allow) or, for insufficient_scope, the required scopes the token did
// carry. On a SMART route they are the token's SMART scopes that granted
// the request. It allocates; call it off the hot path (audit, replies).
func (d *Decision) ScopesUsed() []string {
	if d.gov.smartUsed != 0 {
		out := make([]string, 0, bits.OnesCount64(d.gov.smartUsed))
		d.smartScopesUsed(func(s string) bool { out = append(out, s); return true })
		return out
	}
	if d.Route == nil || d.used == 0 {
		return nil
	}
	out := make([]string, 0, bits.OnesCount64(d.used))
	i := 0
	for _, s := range d.Route.AllOf {
		if d.used&(1<<i) != 0 {
			out = append(out, s)
		}
		i++
	}
	for _, s := range d.Route.AnyOf {
		if d.used&(1<<i) != 0 {
			out = append(out, s)
		}
		i++
	}
	return out
}

// ScopesUsedSeq yields what ScopesUsed returns, in the same order,
// without allocating.
func (d *Decision) ScopesUsedSeq() iter.Seq[string] {
	return func(yield func(string) bool) {
		if d.gov.smartUsed != 0 {
			d.smartScopesUsed(yield)
			return
		}
		if d.Route == nil || d.used == 0 {
			return
		}
		i := 0
		for _, list := range [2][]string{d.Route.AllOf, d.Route.AnyOf} {
			for _, s := range list {
				if d.used&(1<<i) != 0 && !yield(s) {
					return
				}
				i++
			}
		}
	}
}

// PolicyVersion returns the version of the policy that decided, or "".
func (d *Decision) PolicyVersion() string {
	if d.Policy == nil {
		return ""
	}
	return d.Policy.Version
}

// Options configure an Engine.
type Options struct {
	// Clock returns the current time. The default is a clock that advances
	// every millisecond and costs one atomic load (see clock.go); tests inject
	// their own.
	Clock func() time.Time
	// TokenCacheBytes bounds the heap the verified-token cache holds
	// (default DefaultTokenCacheBytes, at least 1 MiB). Each entry is
	// charged what it keeps alive: the token, its claims, the cache's own
	// bookkeeping (tokencache.go).
	TokenCacheBytes int64
	// TokenCacheSize, when positive, also bounds the cache in entries;
	// zero means no entry bound (the byte budget alone).
	TokenCacheSize int64
	// MaxTokenBytes rejects longer bearer tokens unread (default 16 KiB).
	MaxTokenBytes int
	// Ownership answers the ownership lookups routes name (store/ownership).
	// When nil, a route with an owner rule denies with ownership_unavailable.
	Ownership OwnershipStore
	// RevocationStaleAfter bounds the age of the revocations in force
	// (MarkRevocationsSynced): past it, routes that require a high-risk
	// scope deny with revocation_stale. Zero means no bound (revoke.go).
	RevocationStaleAfter time.Duration
	// Keys finds each issuer's key set (Issuer.KeyRef) when a token is
	// verified: store/jwks.Registry on a server, StaticKeyResolver in tests
	// and tools. When nil, or when it has no key set for an issuer yet,
	// that issuer's tokens are denied with key_set_unavailable.
	Keys KeyResolver
	// Introspector asks issuers with an introspection block about their
	// opaque tokens (store/introspect on a server). When nil, such tokens
	// are denied with introspection_unavailable.
	Introspector Introspector
	// Replay remembers the DPoP proofs already used (dpop_replay.go). When
	// nil, the engine keeps its own MemReplayCache of ReplayCacheBytes
	// (default DefaultReplayCacheBytes): right for one replica; replicas
	// behind one load balancer share one (store/postgres).
	Replay           ReplayCache
	ReplayCacheBytes int64
	// DPoPNonceSecret keys the DPoP server nonces of a policy with
	// dpop.nonce: required (at least MinDPoPNonceSecretBytes bytes, the
	// same on every replica). Without it such a policy denies DPoP
	// requests with internal.
	DPoPNonceSecret []byte
}

// Engine decides requests against the current policy. It is safe for
// concurrent use; SetPolicy swaps the policy atomically.
type Engine struct {
	policy      atomic.Pointer[Policy]
	verifier    *verifier
	clock       func() time.Time
	coarseClock bool
	closeOnce   sync.Once
	maxToken    int

	ownership OwnershipStore
	replay    ReplayCache
	nonces    *dpopNonces
	proofKeys *proofKeyCache

	engineRevocations // revoke.go
}

// NewEngine returns an engine deciding with pol.
func NewEngine(pol *Policy, opts Options) (*Engine, error) {
	coarse := opts.Clock == nil
	if coarse {
		opts.Clock = sharedClock.acquire()
	}
	if opts.MaxTokenBytes <= 0 {
		opts.MaxTokenBytes = 16 << 10
	}
	v, err := newVerifier(verifierConfig{MaxBytes: opts.TokenCacheBytes, MaxEntries: opts.TokenCacheSize, Keys: opts.Keys, Introspector: opts.Introspector})
	if err != nil {
		if coarse {
			sharedClock.release()
		}
		return nil, err
	}
	if n := len(opts.DPoPNonceSecret); n > 0 && n < MinDPoPNonceSecretBytes {
		v.close()
		if coarse {
			sharedClock.release()
		}
		return nil, fmt.Errorf("the DPoP nonce secret has %d bytes; use at least %d random bytes", n, MinDPoPNonceSecretBytes)
	}
	e := &Engine{verifier: v, clock: opts.Clock, coarseClock: coarse, maxToken: opts.MaxTokenBytes, ownership: opts.Ownership}
	e.replay = opts.Replay
	if e.replay == nil {
		e.replay = NewMemReplayCache(opts.ReplayCacheBytes, opts.Clock)
	}
	e.nonces = newDPoPNonces(opts.DPoPNonceSecret)
	e.proofKeys = newProofKeyCache(proofKeyCacheSize)
	e.policy.Store(pol)
	e.revStaleAfter = opts.RevocationStaleAfter
	return e, nil
}

// Policy returns the policy in force.
func (e *Engine) Policy() *Policy { return e.policy.Load() }

// SetPolicy makes pol the policy in force for every later decision.
func (e *Engine) SetPolicy(pol *Policy) { e.policy.Store(pol) }

// Close releases the engine's caches and its share of the clock.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		e.verifier.close()
		if e.coarseClock {
			sharedClock.release()
		}
	})
}

// IssuerKeys returns the key source the engine verifies iss's tokens with,
// or nil when its key set is not available (health checks, metrics).
func (e *Engine) IssuerKeys(iss *Issuer) KeySource { return e.verifier.keys.source(iss) }

// KeysReady reports whether every issuer of pol has a key set with at least
// one key: the server is not ready to serve until it does. It returns the
// first issuer without keys.
func (e *Engine) KeysReady(pol *Policy) (ready bool, missing string) {
	if pol == nil {
		return false, ""
	}
	for name, iss := range pol.Issuers {
		if src := e.IssuerKeys(iss); src == nil || len(src.Keys()) == 0 {
			return false, name
		}
	}
	return true, ""
}

// PurgeTokenCache drops every verified token, so each is verified again on
// its next use (benchmarks of the cold path; key compromise drills).
func (e *Engine) PurgeTokenCache() { e.verifier.purge() }

// WaitTokenCache blocks until the token cache has applied pending writes
// (the cache admits entries asynchronously); for tests and benchmarks.
func (e *Engine) WaitTokenCache() { e.verifier.wait() }

// Decide authorizes one request. The checks run in a fixed order, cheap
// and request-only checks first: path, route, token, scopes. The first
// failing check gives the decision its primary reason. When a route in
// shadow mode matches the request, its would-be outcome is evaluated too
// and reported in Decision.Shadow (offline tools: explain, policy tests).
//
// A server answering requests calls DecideEnforced instead and evaluates
// the shadow route after the answer has gone (EvaluateShadow), so that a
// slow shadow rule (an ownership lookup) never changes or delays it.
func (e *Engine) Decide(ctx context.Context, r *Request) Decision {
	d := e.DecideEnforced(ctx, r)
	e.EvaluateShadow(ctx, r, &d)
	return d
}

// DecideEnforced is Decide without the shadow routes: the enforced answer
// alone. Scopes in shadow mode are still reported in Decision.Shadow: their
// rules are request-only checks, which cost no I/O.
func (e *Engine) DecideEnforced(ctx context.Context, r *Request) Decision {
	pol := e.policy.Load()
	if pol == nil {
		return Decision{Code: Internal, Detail: "no policy is loaded"}
	}
	return e.decide(ctx, r, pol, pol.router, r.Trace)
}

// ShadowOutcome is the would-be decision of a rule in shadow mode: a route
// in mode shadow, or the when blocks of scopes in mode shadow.
type ShadowOutcome struct {
	// Route is the shadow route that matched (or, with Scopes, the route
	// whose scopes' shadow rules would deny); nil when there is none.
	Route *Route
	Allow bool
	Code  Code
	// Scopes is set when the outcome is that of scopes' shadow rules.
	Scopes bool
}

// ShadowRoute returns the route in shadow mode that would answer r, whose
// enforced decision is d, or nil when none would: then EvaluateShadow has
// nothing to do. It is one route lookup on the normalized path, no I/O.
func (e *Engine) ShadowRoute(r *Request, d *Decision) *Route {
	pol := d.Policy
	if pol == nil || pol.shadowRouter == nil || d.Path == "" {
		return nil
	}
	var p Params
	route, _ := pol.shadowRouter.match(r.Method, d.Path, &p)
	if route == nil || !route.Shadow {
		return nil
	}
	return route
}

// EvaluateShadow records in d.Shadow what r would get if the shadow route
// that matches it were enforced, with the policy d was decided with. It
// never changes d's answer. ctx bounds its lookups.
func (e *Engine) EvaluateShadow(ctx context.Context, r *Request, d *Decision) {
	route := e.ShadowRoute(r, d)
	if route == nil {
		return
	}
	pol := d.Policy
	quiet := *r // the shadow evaluation leaves no steps in the trace
	quiet.Trace = nil
	sd := e.decide(ctx, &quiet, pol, pol.shadowRouter, nil)
	d.Shadow = ShadowOutcome{Route: route, Allow: sd.Allow, Code: sd.Code}
	if r.Trace != nil {
		result := "allow"
		if !sd.Allow {
			result = "deny " + sd.Code.String()
		}
		r.Trace.add("shadow", "info", "shadow route "+route.Name+" would answer "+result+" (not enforced)")
	}
}

// decide runs the checks against one route table.
func (e *Engine) decide(ctx context.Context, r *Request, pol *Policy, rt *router, tr *Trace) Decision {
	d := Decision{Policy: pol}

	// 1. Path and route.
	norm, detail, ok := normalizePath(r.Path, &pol.Paths)
	if !ok {
		tr.add("path", "fail", detail)
		d.Code, d.Detail = PathInvalid, detail
		return d
	}
	d.Path = norm
	if tr != nil {
		tr.add("path", "pass", "normalized to "+norm)
	}
	if r.Method == "" {
		tr.add("route", "fail", "the request has no method")
		d.Code, d.Detail = RequestInvalid, "the request has no method"
		return d
	}
	if !isMethodToken(r.Method) {
		// Not a method a proxy would forward: e.g. two :method headers a
		// proxy merged with a comma. A route open to every method must not
		// take it for one.
		tr.add("route", "fail", detailBadMethod)
		d.Code, d.Detail = RequestInvalid, detailBadMethod
		return d
	}
	if r.MethodOverride != "" && !methodOverrideAgrees(r.MethodOverride, r.Method) {
		tr.add("route", "fail", detailMethodOverride)
		d.Code, d.Detail = RequestInvalid, detailMethodOverride
		return d
	}
	route, pathMatched := rt.match(r.Method, norm, &d.Params)
	if route == nil {
		if pathMatched {
			d.Code = MethodNotAllowed
			d.Detail = rt.allowedDetail(norm)
		} else {
			d.Code = NoRoute
		}
		if tr != nil {
			if pathMatched {
				tr.add("route", "fail", "a route matches "+norm+" but not method "+r.Method)
			} else {
				tr.add("route", "fail", "no route matches "+norm+" (default: deny)")
			}
		}
		return d
	}
	d.Route = route
	if tr != nil {
		tr.add("route", "pass", "matched route "+route.Name+" ("+route.Template+")")
	}
	if route.Public {
		tr.add("token", "skip", "the route is public")
		d.Allow, d.Code = true, OK
		return d
	}

	// 2. Token.
	raw, dpop, code, detail := extractCredential(r.Authorization, r.AuthorizationCount, e.maxToken)
	if code != OK {
		tr.add("token", "fail", detail)
		d.Code, d.Detail = code, detail
		return d
	}
	now := e.clock()
	vt, code, detail := e.verifier.verify(ctx, raw, pol, now)
	if code != OK {
		tr.add("token", "fail", detail)
		d.Code, d.Detail = code, detail
		return d
	}
	d.Token = &vt.Token
	if tr != nil {
		tr.add("token", "pass", "issuer "+vt.Token.Issuer+", subject "+vt.Token.Subject+", client "+vt.Token.ClientID+", scopes ["+strings.Join(vt.Token.Scopes, " ")+"]")
	}

	// 2b. DPoP (RFC 9449): the proof is checked on every request; only its
	// jti's novelty waits until the end (a lookup that may leave the
	// process).
	var proof proofClaims
	proofChecked, code, detail := e.checkDPoP(r, &d, raw, dpop, now, &proof)
	if code != OK {
		d.Code, d.Detail = code, detail
		return d
	}

	// 3. Revocation: an in-memory set, O(1).
	if code, detail := e.checkRevoked(pol, d.Token, now); code != OK {
		tr.add("revocation", "fail", detail)
		d.Code, d.Detail = code, detail
		return d
	}

	// 4. Scopes: the route's requirement against the granted bitset (with
	// implied scopes, without retired ones).
	granted := vt.scopeBits(pol)
	// Narrowed revocations take scopes away; a stale list fails closed on
	// high-risk routes (revoke_scope.go).
	var revBuf revokedScopesBuf
	granted, rcode, rdetail := e.checkRevokedScopes(pol, &d, granted, now, &revBuf)
	if rcode != OK {
		tr.add("revocation", "fail", rdetail)
		d.Code, d.Detail = rcode, rdetail
		return d
	}
	used, ok := route.satisfiedBy(granted)
	d.used = used
	if !ok {
		d.Code = InsufficientScope
		d.Detail = route.missing(pol, used).detail
		if pol.retiredExplains(route, d.Token) {
			// The detail names what the token lacks too: the deny caches
			// key a reply (and its challenge's scope) by the detail.
			d.Code, d.Detail = ScopeRetired, pol.retiredDetail(route, d.Token)+"; "+d.Detail
		}
		tr.add("scopes", "fail", d.Detail)
		return d
	}
	if tr != nil {
		tr.add("scopes", "pass", "required "+route.describeRequirement()+", satisfied by ["+strings.Join(d.ScopesUsed(), " ")+"]")
	}
	// SMART on FHIR routes are decided by the request's FHIR interaction
	// against the token's SMART scopes.
	if code, detail, handled := e.checkSMART(ctx, r, &d, now); handled && code != OK {
		tr.add("smart", "fail", detail)
		d.Code, d.Detail = code, detail
		return d
	}

	// 5. Contextual constraints: request-only checks first, lookups that
	// leave the process last.
	if code, detail := e.checkConstraints(ctx, r, &d, now); code != OK {
		d.Code, d.Detail = code, detail
		return d
	}

	// 6. Drift: the token's scopes against its client's grants.
	if code, detail := e.checkDrift(r, &d, now); code != OK {
		d.Code, d.Detail = code, detail
		return d
	}

	// 7. DPoP replay: the proof's jti must be new.
	if proofChecked {
		if code, detail := e.checkDPoPReplay(ctx, r, pol, &proof); code != OK {
			d.Code, d.Detail = code, detail
			return d
		}
	}
	d.Allow, d.Code = true, OK
	return d
}

// scopeBit addresses one interned scope in a bitset.
type scopeBit struct {
	word int
	mask uint64
}

// scopeView is a token's granted scopes as a bitset over one policy's
// interned scopes. It is computed once per (token, policy) and cached on the
// verified token.
type scopeView struct {
	pol  *Policy
	bits []uint64
}

func (p *Policy) scopeBitOf(name string) (scopeBit, bool) {
	i, ok := p.scopeIndex[name]
	if !ok {
		return scopeBit{}, false
	}
	return scopeBit{word: i >> 6, mask: 1 << (uint(i) & 63)}, true
}

// scopeBits returns the token's granted scopes as a bitset over pol's
// interned scopes, computing it on the first use with this policy.
func (vt *verifiedToken) scopeBits(pol *Policy) []uint64 {
	if v := vt.view.Load(); v != nil && v.pol == pol {
		return v.bits
	}
	b := make([]uint64, (len(pol.scopeNames)+63)/64)
	for _, s := range vt.Token.Scopes {
		if sb, ok := pol.scopeBitOf(s); ok {
			b[sb.word] |= sb.mask
		}
	}
	pol.expandImplied(b)
	vt.view.Store(&scopeView{pol: pol, bits: b})
	return b
}

func has(granted []uint64, b scopeBit) bool {
	return b.word < len(granted) && granted[b.word]&b.mask != 0
}

// satisfiedBy reports whether granted satisfies the route's requirement and
// which required scopes (bit i = i-th of all_of then any_of) were present.
func (r *Route) satisfiedBy(granted []uint64) (used uint64, ok bool) {
	ok = true
	for i, b := range r.allOf {
		if has(granted, b) {
			used |= 1 << i
		} else {
			ok = false
		}
	}
	if len(r.anyOf) > 0 {
		anyOK := false
		for i, b := range r.anyOf {
			if has(granted, b) {
				used |= 1 << (len(r.allOf) + i)
				anyOK = true
			}
		}
		ok = ok && anyOK
	}
	return used, ok
}

func (r *Route) describeRequirement() string {
	var parts []string
	if len(r.AllOf) > 0 {
		parts = append(parts, "all of ["+strings.Join(r.AllOf, " ")+"]")
	}
	if len(r.AnyOf) > 0 {
		parts = append(parts, "any of ["+strings.Join(r.AnyOf, " ")+"]")
	}
	if len(parts) == 0 {
		return "a valid token (no scope)"
	}
	return strings.Join(parts, " and ")
}

const detailMethodOverride = "the request carries X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override naming another method than its own: an upstream honouring it would run a method that was not authorized; send the request with that method, or have the proxy remove the header"

const detailBadMethod = "the request method is not an HTTP token (RFC 9110 section 9.1: letters, digits and !#$%&'*+-.^_`|~, at most 64 bytes)"

// isMethodToken reports whether m is an RFC 9110 token of at most 64 bytes.
func isMethodToken(m string) bool {
	if len(m) > 64 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !tchar[m[i]] {
			return false
		}
	}
	return true
}

// tchar marks the bytes of an RFC 9110 token.
var tchar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
