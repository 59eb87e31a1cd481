package decision

import (
	"math/bits"
	"slices"
	"strings"
	"time"
)

// Drift detection: at decision time, after the route's scopes and
// constraints passed, the token's scopes are compared with what its client
// was approved to hold. Drift is
//
//   - a scope the client holds no active grant for (never granted, grant
//     expired, or not in the catalog at all);
//   - a token whose scopes touch several segments that the client is not
//     approved to hold together (segments_together);
//   - a token of a client that is not registered.
//
// In enforce mode the request is denied with scope_drift, naming the extra
// scopes; in monitor mode it is allowed and the decision carries the report
// (Decision.Drift) for audit and metrics. The check costs one map lookup for
// the client and one per token scope, and allocates nothing unless the token
// drifts in a way not seen just before.

// driftInfo is the drift found on one token: immutable once published, and
// shared by every decision that finds the same drift.
type driftInfo struct {
	client       string
	unregistered bool
	// scopes are every scope of the token the drift involves, in token
	// order: extra ones and those in straddled segments (the cache key).
	scopes []string
	// extra are the scopes the client holds no active grant for (every
	// scope, for an unregistered client), in token order.
	extra []string
	// straddled are the token's scopes in the straddled segments, in
	// token order: granted or not, they are not approved together.
	straddled []string
	// expired are the scopes of extra that an expired grant used to cover.
	expired []string
	// segments are the straddled segments (0 when none).
	segments uint64
	segNames []string
	enforced bool
	detail   string
	// tok is the token the report was made for (unregistered clients).
	tok *Token
}

// checkDrift compares the token's scopes with its client's grants.
func (e *Engine) checkDrift(r *Request, d *Decision, now time.Time) (Code, string) {
	pol := d.Policy
	if pol == nil || pol.gov == nil || !pol.gov.drift || d.Token == nil {
		return OK, ""
	}
	g := pol.gov
	tok := d.Token
	nowN := now.UnixNano()
	var info *driftInfo
	if m := tok.drift.Load(); m != nil && m.pol == pol && (m.c == nil || m.c.phaseAt(nowN) == m.phase) {
		info = m.info
	} else if c := g.clients[tok.ClientID]; c != nil {
		phase := c.phaseAt(nowN)
		info = g.clientDrift(pol, c, tok, nowN)
		tok.drift.Store(&driftMemo{pol: pol, c: c, phase: phase, info: info})
	} else {
		info = g.unregisteredDrift(tok)
		tok.drift.Store(&driftMemo{pol: pol, info: info})
	}
	if info == nil {
		return OK, ""
	}
	d.gov.drift = info
	if info.enforced {
		r.Trace.add("drift", "fail", info.detail)
		return ScopeDrift, info.detail
	}
	if r.Trace != nil {
		r.Trace.add("drift", "pass", "monitored: "+info.detail)
	}
	return OK, ""
}

// driftMemo is the drift of one token under one policy while its client's
// grants are in one phase (nil info: none). clientDrift depends on nothing
// else, so the memo spares a cached token the client lookup and a lookup
// per scope.
type driftMemo struct {
	pol   *Policy
	c     *clientGrants // nil: the client is not registered
	phase int
	info  *driftInfo
}

// active returns the client's grant bitset in force at nowN.
func (c *clientGrants) active(nowN int64) []uint64 {
	return c.phases[c.phaseAt(nowN)].bits
}

// phaseAt returns the index of the grant phase in force at nowN.
func (c *clientGrants) phaseAt(nowN int64) int {
	i := 0
	for nowN >= c.phases[i].until { // the last phase never ends
		i++
	}
	return i
}

// approvedTogether reports whether one of the client's segments_together
// groups holds every segment of segs.
func (c *clientGrants) approvedTogether(segs uint64) bool {
	for _, grp := range c.together {
		if segs&^grp == 0 {
			return true
		}
	}
	return false
}

// segmentOf returns the segment of interned scope i, or -1.
func (g *governance) segmentOf(i int) int {
	if i < len(g.segOf) {
		return int(g.segOf[i])
	}
	return -1
}

// modeFor is the mode of drift on a scope of segment seg (-1: none).
func (g *governance) modeFor(c *clientGrants, seg int) driftMode {
	m := c.mode
	if seg >= 0 && g.segMode[seg] > m {
		m = g.segMode[seg]
	}
	return m
}

// straddleMode is the mode of a straddle of segs: the strictest of the
// client's and of the segments'.
func (g *governance) straddleMode(c *clientGrants, segs uint64) driftMode {
	m := c.mode
	for s := segs; s != 0; s &= s - 1 {
		if sm := g.segMode[bits.TrailingZeros64(s)]; sm > m {
			m = sm
		}
	}
	return m
}

// clientDrift returns the drift of a registered client's token, or nil.
// The first pass allocates nothing; only drift reaches report.
func (g *governance) clientDrift(pol *Policy, c *clientGrants, tok *Token, nowN int64) *driftInfo {
	grants := c.active(nowN)
	var segs uint64
	mode := modeUnset
	for _, s := range tok.Scopes {
		i, known := pol.scopeIndex[s]
		seg := -1
		if known {
			if seg = g.segmentOf(i); seg >= 0 {
				segs |= 1 << seg
			}
			if hasIndex(grants, i) {
				continue
			}
		}
		if m := g.modeFor(c, seg); m > mode {
			mode = m
		}
	}
	var straddle uint64
	if segs&(segs-1) != 0 && !c.approvedTogether(segs) {
		if m := g.straddleMode(c, segs); m > modeOff {
			straddle = segs
			mode = max(mode, m)
		}
	}
	if mode <= modeOff {
		return nil
	}
	return g.report(pol, c, tok, grants, straddle, mode == modeEnforce)
}

// appendExtras appends the drifting scopes of tok (those whose mode is at
// least monitor) to dst, in token order.
func (g *governance) appendExtras(dst []string, pol *Policy, c *clientGrants, tok *Token, grants []uint64, straddle uint64) []string {
	for _, s := range tok.Scopes {
		i, known := pol.scopeIndex[s]
		seg := -1
		if known {
			seg = g.segmentOf(i)
		}
		switch {
		case !known || !hasIndex(grants, i):
			if g.modeFor(c, seg) <= modeOff && (seg < 0 || straddle&(1<<seg) == 0) {
				continue
			}
		case seg < 0 || straddle&(1<<seg) == 0:
			continue
		}
		dst = append(dst, s)
	}
	return dst
}

// report returns the drift report for tok, reusing the client's last one
// when it describes the same drift.
func (g *governance) report(pol *Policy, c *clientGrants, tok *Token, grants []uint64, straddle uint64, enforced bool) *driftInfo {
	var buf [16]string
	extra := g.appendExtras(buf[:0], pol, c, tok, grants, straddle)
	if last := c.last.Load(); last != nil && last.enforced == enforced && last.segments == straddle && slices.Equal(last.scopes, extra) {
		return last
	}
	info := &driftInfo{client: c.id, scopes: slices.Clone(extra), segments: straddle, enforced: enforced}
	first := c.phases[0].bits
	for _, s := range info.scopes {
		i, known := pol.scopeIndex[s]
		if known && straddle != 0 {
			if seg := g.segmentOf(i); seg >= 0 && straddle&(1<<seg) != 0 {
				info.straddled = append(info.straddled, s)
			}
		}
		if known && hasIndex(grants, i) {
			continue // listed for the straddle only
		}
		if known && g.modeFor(c, g.segmentOf(i)) <= modeOff {
			continue // listed for the straddle only
		}
		info.extra = append(info.extra, s)
		if known && hasIndex(first, i) {
			info.expired = append(info.expired, s)
		}
	}
	missing := info.extra
	for s := straddle; s != 0; s &= s - 1 {
		info.segNames = append(info.segNames, g.segNames[bits.TrailingZeros64(s)])
	}
	var b strings.Builder
	b.WriteString("client " + untrusted(c.id))
	if len(missing) > 0 {
		b.WriteString(" holds no active grant for " + quoteScopes(missing))
		if len(info.expired) > 0 {
			b.WriteString(" (expired: " + quoteScopes(info.expired) + ")")
		}
	}
	if straddle != 0 {
		if len(missing) > 0 {
			b.WriteString(", and")
		}
		b.WriteString(" carries scopes of segments " + strings.Join(info.segNames, " and ") + " in one token, which it is not approved to hold together (segments_together)")
	}
	info.detail = b.String()
	c.last.Store(info)
	return info
}

// unregisteredDrift returns the drift of a token whose client is not
// registered, or nil when unregistered clients are allowed.
func (g *governance) unregisteredDrift(tok *Token) *driftInfo {
	if g.unregistered <= modeOff {
		return nil
	}
	if last := g.lastUnregistered.Load(); last != nil && last.tok == tok {
		return last
	}
	info := &driftInfo{client: tok.ClientID, unregistered: true, scopes: tok.Scopes, extra: tok.Scopes, enforced: g.unregistered == modeEnforce, tok: tok}
	if tok.ClientID == "" {
		info.detail = "the token names no client (no client_id or azp claim), so its scopes match no registered client's grants"
	} else {
		info.detail = "client " + untrusted(tok.ClientID) + " is not registered under clients, so none of its scopes is granted"
	}
	g.lastUnregistered.Store(info)
	return info
}

// quoteScopes renders token-supplied scope names for a message.
func quoteScopes(list []string) string {
	const limit = 16
	parts := make([]string, 0, min(len(list), limit+1))
	for i, s := range list {
		if i == limit {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, untrusted(s))
	}
	return strings.Join(parts, ", ")
}

// Drift returns the scopes of the token that drift from its client's grants
// and whether the drift was only monitored (the request allowed) rather than
// enforced (denied with scope_drift). The scopes are both kinds together:
// scopes beyond the grants and scopes of straddled segments (DriftReport
// tells them apart). For a token of an unregistered client, extra is every
// scope of the token. extra is nil when the token does not drift. It allocates; call it off the hot path (audit, metrics).
func (d *Decision) Drift() (extra []string, monitored bool) {
	info := d.gov.drift
	if info == nil {
		return nil, false
	}
	return slices.Clone(info.scopes), !info.enforced
}

// DriftReport is the full drift found on a decision, for audit records.
type DriftReport struct {
	// Client is the token's client_id (or azp).
	Client string
	// Unregistered is set when the client is not in the policy's clients.
	Unregistered bool
	// Extra are the scopes the client holds no active grant for (never
	// granted, expired, or outside the catalog; every scope of an
	// unregistered client): the remedy is to add the grant, or to stop the
	// authorization server issuing the scope.
	Extra []string
	// Straddled are the token's scopes in Segments, granted or not: the
	// client holds them in one token without approval to combine those
	// segments. The remedy is to approve the combination in the client's
	// segments_together, or to split the client in two.
	Straddled []string
	// Expired are the scopes of Extra whose grant has expired.
	Expired []string
	// Segments are the segments the token straddles without approval.
	Segments []string
	// Enforced is set when the drift denied the request.
	Enforced bool
	// Message describes the drift for people.
	Message string
}

// DriftReport returns the drift found on the decision; ok is false when the
// token does not drift (or drift detection is off). It allocates.
func (d *Decision) DriftReport() (r DriftReport, ok bool) {
	info := d.gov.drift
	if info == nil {
		return DriftReport{}, false
	}
	return DriftReport{
		Client:       info.client,
		Unregistered: info.unregistered,
		Extra:        slices.Clone(info.extra),
		Straddled:    slices.Clone(info.straddled),
		Expired:      slices.Clone(info.expired),
		Segments:     slices.Clone(info.segNames),
		Enforced:     info.enforced,
		Message:      info.detail,
	}, true
}
