package decision

import (
	"strings"
	"sync"
	"sync/atomic"
)

// What an insufficient_scope deny names.
//
// A deny names what the token lacks, not the whole requirement: every
// scope of all_of the token does not carry, and, when the token carries
// none of any_of, the any_of alternatives (no single one of them is
// missing: any one would do). The reason detail says it in words, the
// WWW-Authenticate challenge's scope attribute (RFC 6750 §3: "the scope
// necessary to access the requested resource") lists the same scopes, and
// Decision.MissingScopes returns them for the audit record and the replies.
//
// Which scopes are missing depends on the token, so the texts cannot all
// be built at compile time; each route memoizes them per missing set (a
// bitset over its all_of then any_of scopes), so a repeated deny allocates
// nothing. The memo is bounded: a route with many scopes cannot be made to
// hold 2^n texts.

// maxMissingMemo bounds the missing sets a route remembers texts for.
const maxMissingMemo = 64

// missingText is what a deny with one missing set says.
type missingText struct {
	detail string
	// scope is the challenge's scope attribute: the missing scopes,
	// space-separated.
	scope string
}

// missingMemo holds a route's texts per missing set, copied on write.
type missingMemo struct {
	m  atomic.Pointer[map[uint64]missingText]
	mu sync.Mutex
}

// missingMask returns the route's required scopes (bit i = i-th of all_of
// then any_of) that a token whose satisfied scopes are used lacks.
func (r *Route) missingMask(used uint64) uint64 {
	var mask uint64
	for i := range r.allOf {
		if used&(1<<i) == 0 {
			mask |= 1 << i
		}
	}
	n := len(r.allOf)
	if len(r.anyOf) > 0 {
		anyBits := (uint64(1)<<len(r.anyOf) - 1) << n
		if len(r.anyOf)+n == 64 {
			anyBits = ^uint64(0) << n
		}
		if used&anyBits == 0 {
			mask |= anyBits
		}
	}
	return mask
}

// missing returns the texts of an insufficient_scope deny on r for a token
// whose satisfied scopes are used.
func (r *Route) missing(pol *Policy, used uint64) missingText {
	mask := r.missingMask(used)
	memo := r.missingMemo
	if memo != nil {
		if m := memo.m.Load(); m != nil {
			if t, ok := (*m)[mask]; ok {
				return t
			}
		}
	}
	t := r.buildMissing(pol, mask)
	if memo == nil {
		return t
	}
	memo.mu.Lock()
	defer memo.mu.Unlock()
	cur := memo.m.Load()
	if cur != nil {
		if have, ok := (*cur)[mask]; ok {
			return have
		}
		if len(*cur) >= maxMissingMemo {
			return t
		}
	}
	next := make(map[uint64]missingText, 1+len(deref(cur)))
	for k, v := range deref(cur) {
		next[k] = v
	}
	next[mask] = t
	memo.m.Store(&next)
	return t
}

// retired reports whether the catalog retired scope s.
func (p *Policy) retired(s string) bool {
	if p == nil || p.gov == nil {
		return false
	}
	cs := p.gov.catalog[s]
	return cs != nil && cs.status == statusRetired
}

func deref(m *map[uint64]missingText) map[uint64]missingText {
	if m == nil {
		return nil
	}
	return *m
}

// buildMissing builds the texts for one missing set. An any_of
// alternative that the catalog retired is not named (it grants nothing),
// unless every alternative is retired.
func (r *Route) buildMissing(pol *Policy, mask uint64) missingText {
	var all, alts []string
	for i, s := range r.AllOf {
		if mask&(1<<i) != 0 {
			all = append(all, s)
		}
	}
	if n := len(r.AllOf); len(r.AnyOf) > 0 && mask&(1<<n) != 0 {
		for _, s := range r.AnyOf {
			if !pol.retired(s) {
				alts = append(alts, s)
			}
		}
		if len(alts) == 0 {
			alts = r.AnyOf
		}
	}
	var what string
	switch {
	case len(all) == 1 && len(alts) > 0:
		what = scopesPhrase(all) + " and one of " + listPhrase(alts, "or")
	case len(all) > 1 && len(alts) > 0:
		what = scopesPhrase(all) + ", and one of " + listPhrase(alts, "or")
	case len(all) > 0:
		what = scopesPhrase(all)
	case len(alts) == 1:
		what = "scope " + alts[0]
	case len(alts) > 1:
		what = "one of the scopes " + listPhrase(alts, "or")
	default:
		// Cannot happen for a deny (the requirement was not met), but a
		// text must never be empty: name the requirement.
		what = "the scopes " + r.describeRequirement()
	}
	return missingText{
		detail: "the token lacks " + what + ", which route " + r.Name + " requires",
		scope:  strings.Join(append(all[:len(all):len(all)], alts...), " "),
	}
}

// scopesPhrase is "scope a" or "scopes a and b".
func scopesPhrase(s []string) string {
	if len(s) == 1 {
		return "scope " + s[0]
	}
	return "scopes " + listPhrase(s, "and")
}

// listPhrase is "a", "a and b" or "a, b and c".
func listPhrase(s []string, conj string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " " + conj + " " + s[len(s)-1]
}

// MissingScopes returns the scopes an insufficient_scope or scope_retired
// deny names: the route's all_of scopes the token lacks and, when it
// carries none of any_of, the any_of alternatives (any one of them would
// do); on a SMART route, the SMART scopes that would grant the request.
// It is nil for every other decision. It allocates; call it off the hot
// path (audit, replies).
func (d *Decision) MissingScopes() []string {
	if s := d.ChallengeScope(); s != "" {
		return strings.Fields(s)
	}
	return nil
}

// ChallengeScope returns the scope attribute of the deny's RFC 6750
// challenge: MissingScopes, space-separated, or "" when the deny's
// challenge carries none. Once a route's texts are memoized it does not
// allocate.
func (d *Decision) ChallengeScope() string {
	if d.Allow || d.Code.Challenge() != ChallengeInsufficientScope {
		return ""
	}
	if d.gov.smartDone && d.Code == InsufficientScope {
		// The route's own requirement was met; the SMART scopes were not.
		return d.gov.smartMissing
	}
	if d.Route == nil {
		return ""
	}
	return d.Route.missing(d.Policy, d.used).scope
}
