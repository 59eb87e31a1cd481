package decision

import (
	"context"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// Narrowed revocations and staleness, checked in the scopes step.
//
// A revocation narrowed to a scope or to a catalog segment takes those
// scopes away from the token: they, and what they imply, no longer count.
// The token keeps every other scope, so a route it still satisfies is
// allowed; a route it would have satisfied but for the revoked scopes is
// denied with revoked (not insufficient_scope: the client must learn that
// asking for the scope again will not help). A revocation narrowed to a
// path prefix refuses the token on that prefix only.
//
// Staleness: when the revocations in force were last synchronized longer
// ago than Options.RevocationStaleAfter, a route that requires a high-risk
// scope denies with revocation_stale; the others keep deciding with the
// last list.

// revokedScopesWords is how many words of scope bits the narrowed check
// keeps on the stack: 256 interned scopes. Larger policies allocate, on the
// rare path where a narrowed revocation applies to the token.
const revokedScopesWords = 4

type revokedScopesBuf [revokedScopesWords]uint64

// checkRevokedScopes runs in the scopes step, before the route's
// requirement is checked against granted. It returns the granted bitset to
// check (granted itself, or a copy in buf without the revoked scopes), or a
// deny: revocation_stale, or revoked for a path-prefix revocation or for a
// requirement only the revoked scopes would meet.
func (e *Engine) checkRevokedScopes(pol *Policy, d *Decision, granted []uint64, now time.Time, buf *revokedScopesBuf) ([]uint64, Code, string) {
	rs := e.revocations.Load()
	if rs == nil {
		return granted, OK, ""
	}
	if e.revStaleAfter > 0 && e.revocationsStale(now) && routeHighRisk(pol, d.Route) {
		return granted, RevocationStale, detailRevocationStale
	}
	if rs.nNarrow == 0 || d.Token == nil {
		return granted, OK, ""
	}
	var c candidates
	rs.candidatesFor(d.Token, &c)
	var scopedKind RevocationKind
	for _, l := range c {
		for _, r := range l {
			if r.Whole() || !r.ActiveAt(now) || !r.covers(d.Token) {
				continue
			}
			if p, ok := r.PathPrefix(); ok {
				if pathUnder(d.Path, p, pol.Paths.CaseInsensitive) {
					return granted, Revoked, pathDetail(r.Kind)
				}
				continue
			}
			if scopedKind == 0 {
				scopedKind = r.Kind
			}
		}
	}
	if scopedKind == 0 {
		return granted, OK, ""
	}
	masked := maskRevoked(pol, d.Token, &c, now, granted, buf)
	if d.Route != nil {
		if _, ok := d.Route.satisfiedBy(granted); ok {
			if _, ok := d.Route.satisfiedBy(masked); !ok {
				return masked, Revoked, scopeDetail(scopedKind)
			}
		}
	}
	return masked, OK, ""
}

func (e *Engine) revocationsStale(now time.Time) bool {
	synced := e.revSynced.Load()
	return synced == 0 || now.UnixNano()-synced > int64(e.revStaleAfter)
}

func pathDetail(k RevocationKind) string {
	switch k {
	case RevokeSubject:
		return detailSubjectPathRevoked
	case RevokeClient:
		return detailClientPathRevoked
	case RevokeSession:
		return detailSessionPathRevoked
	case RevokeDevice:
		return detailDevicePathRevoked
	}
	return detailTokenPathRevoked
}

func scopeDetail(k RevocationKind) string {
	switch k {
	case RevokeSubject:
		return detailSubjectScopeRevoked
	case RevokeClient:
		return detailClientScopeRevoked
	case RevokeSession:
		return detailSessionScopeRevoked
	case RevokeDevice:
		return detailDeviceScopeRevoked
	}
	return detailTokenScopeRevoked
}

// pathUnder reports whether the normalized path is prefix or below it.
func pathUnder(path, prefix string, caseInsensitive bool) bool {
	if len(path) < len(prefix) {
		return false
	}
	head := path[:len(prefix)]
	if head != prefix && (!caseInsensitive || !strings.EqualFold(head, prefix)) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// maskRevoked returns the token's granted bitset rebuilt without the
// scopes its narrowed revocations take away: the token's scopes minus the
// revoked ones, expanded by implications, minus the revoked ones again (a
// scope the token holds through a revoked scope's implication goes with
// it; one it also holds in its own right stays).
func maskRevoked(pol *Policy, tok *Token, c *candidates, now time.Time, granted []uint64, buf *revokedScopesBuf) []uint64 {
	var b []uint64
	if len(granted) <= len(buf) {
		b = buf[:len(granted)]
		clear(b)
	} else {
		b = make([]uint64, len(granted))
	}
	for _, s := range tok.Scopes {
		i, ok := pol.scopeIndex[s]
		if !ok || scopeRevoked(pol, tok, c, now, s, i) {
			continue
		}
		setIndex(b, i)
	}
	pol.expandImplied(b)
	for w, word := range b {
		for word != 0 {
			i := w<<6 + bits.TrailingZeros64(word)
			word &= word - 1
			if scopeRevoked(pol, tok, c, now, pol.scopeNames[i], i) {
				b[w] &^= 1 << (uint(i) & 63)
			}
		}
	}
	return b
}

// scopeRevoked reports whether a narrowed revocation among c takes scope
// name (interned at index i, or -1) away: it names the scope, or the
// catalog segment the scope belongs to.
func scopeRevoked(pol *Policy, tok *Token, c *candidates, now time.Time, name string, i int) bool {
	for _, l := range c {
		for _, r := range l {
			if r.Whole() || !r.ActiveAt(now) || !r.covers(tok) {
				continue
			}
			if r.Scope != "" {
				if r.Scope == name {
					return true
				}
				continue
			}
			if _, isPath := r.PathPrefix(); !isPath && r.Segment == segmentOfScope(pol, i) {
				return true
			}
		}
	}
	return false
}

// segmentOfScope returns the catalog segment of the scope interned at i,
// or "" when it has none.
func segmentOfScope(pol *Policy, i int) string {
	g := pol.gov
	if g == nil || i < 0 || i >= len(g.segOf) || g.segOf[i] < 0 {
		return ""
	}
	return g.segNames[g.segOf[i]]
}

// routeHighRisk reports whether route requires a high-risk scope: one the
// catalog marks risk: high, or any scope of a segment that holds such a
// scope (the segment is then high-risk as a whole). It runs only when the
// revocations are stale.
func routeHighRisk(pol *Policy, route *Route) bool {
	if route == nil || pol.gov == nil || pol.gov.catalog == nil {
		return false
	}
	g := pol.gov
	for _, list := range [2][]string{route.AllOf, route.AnyOf} {
		for _, s := range list {
			cs := g.catalog[s]
			if cs == nil {
				continue
			}
			if cs.spec.Risk == "high" {
				return true
			}
			if cs.segment >= 0 {
				for _, o := range g.order {
					if o.segment == cs.segment && o.spec.Risk == "high" {
						return true
					}
				}
			}
		}
	}
	return false
}

// Authenticate verifies a bearer token presented to one of scopegate's own
// endpoints (the admin API) and requires it to carry scope. The token is
// verified like any other, against the policy's issuers (so it must come
// from one of them and name one of their audiences), and the revocations
// in force apply: outright ones, and narrowed ones that take scope away.
// No route is involved. authorization is the raw header value, "Bearer
// <token>". The Token returned is shared and must not be modified.
func (e *Engine) Authenticate(ctx context.Context, authorization, scope string) (*Token, Code, string) {
	pol := e.policy.Load()
	if pol == nil {
		return nil, Internal, "no policy is loaded"
	}
	count := 1
	if authorization == "" {
		count = 0
	}
	raw, code, detail := extractBearer(authorization, count, e.maxToken)
	if code != OK {
		return nil, code, detail
	}
	now := e.clock()
	vt, code, detail := e.verifier.verify(ctx, raw, pol, now)
	if code != OK {
		return nil, code, detail
	}
	tok := &vt.Token
	if code, detail := e.checkRevoked(pol, tok, now); code != OK {
		return nil, code, detail
	}
	idx := -1
	if i, ok := pol.scopeIndex[scope]; ok {
		idx = i
		if !hasIndex(vt.scopeBits(pol), i) {
			return nil, InsufficientScope, "the token lacks the scope " + scope
		}
	} else if !slices.Contains(tok.Scopes, scope) {
		return nil, InsufficientScope, "the token lacks the scope " + scope
	}
	if rs := e.revocations.Load(); rs != nil && rs.nNarrow > 0 {
		var c candidates
		rs.candidatesFor(tok, &c)
		if scopeRevoked(pol, tok, &c, now, scope, idx) {
			for _, l := range c {
				for _, r := range l {
					if !r.Whole() && r.ActiveAt(now) && r.covers(tok) {
						return nil, Revoked, scopeDetail(r.Kind)
					}
				}
			}
		}
	}
	return tok, OK, ""
}
