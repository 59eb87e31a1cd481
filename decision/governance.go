package decision

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/decision/suggest"
)

// Scope governance.
//
// A policy may declare a scope catalog (scopes:), segments, registered clients
// with their grants, and drift settings. All of it is optional: a policy with
// none of it decides exactly as before. Once a catalog exists:
//
//   - routes may require only catalog scopes;
//   - `implies` is compiled into a transitive closure, and a token's scope
//     bitset (computed once per token and policy, engine.go) is expanded by
//     it, so orders:write satisfies a route that requires orders:read;
//   - a retired scope grants nothing; when only retired scopes could have
//     satisfied a route the deny says scope_retired instead of
//     insufficient_scope;
//   - a deprecated scope still grants, and decisions report its use.
//
// Segments partition scopes by purpose. Clients and their grants are compiled
// into one bitset per client and grant phase (the phases are the intervals
// between grant expiries), so the drift check is a map lookup for the client
// plus one lookup per token scope: O(scopes in the token), whatever the
// number of clients, and allocation-free when there is no drift.

// scopeStatus is the lifecycle state of a catalog scope.
type scopeStatus uint8

const (
	statusActive scopeStatus = iota
	statusDeprecated
	statusRetired
)

var statusNames = [...]string{statusActive: "active", statusDeprecated: "deprecated", statusRetired: "retired"}

// driftMode is what drift detection does; the order matters: the strictest
// applicable mode wins.
type driftMode uint8

const (
	modeUnset driftMode = iota
	modeOff
	modeMonitor
	modeEnforce
)

// maxSegments bounds the segments of a policy, so that a token's segments
// fit in one machine word.
const maxSegments = 64

// noExpiry is the expiry of a grant without expires_at.
const noExpiry = math.MaxInt64

// policyGovernance is the governance part of a compiled Policy (embedded).
type policyGovernance struct {
	// gov is nil when the policy has no catalog, segments, clients or drift
	// settings.
	gov *governance
}

// routeGovernance is the governance part of a compiled Route (embedded).
type routeGovernance struct {
	// smart is set on SMART on FHIR routes (smart.go).
	smart *smartRoute
}

// decisionGovernance is what governance adds to a Decision: drift found on
// the token, and the SMART restrictions the upstream must apply. It holds
// no per-decision allocation: drift reports are shared, immutable and
// cached, and SMART hints are indexes into the token's scopes.
type decisionGovernance struct {
	drift *driftInfo
	// smartQuery has bit i set when the query restriction of the token's
	// i-th scope applies (the upstream enforces any one of them).
	smartQuery uint64
	// smartPatient is set when the upstream must restrict the request to
	// the token's patient.
	smartPatient bool
	// smartDone records that checkSMART ran for this decision.
	smartDone bool
	// smartUsed has bit i set when the token's i-th scope granted the
	// SMART request (Decision.ScopesUsed).
	smartUsed uint64
	// smartMissing is what a SMART insufficient_scope deny names: the
	// SMART scopes that would grant the request, space-separated.
	smartMissing string
}

// catalogScope is one compiled catalog entry.
type catalogScope struct {
	name    string
	spec    *ScopeSpec
	line    int
	index   int // interned index
	status  scopeStatus
	segment int // -1 when the scope is in no segment
	sunset  time.Time
	// implies are the direct implications; closure is every scope implied
	// transitively (not the scope itself), as a bitset and as sorted names.
	implies      []*catalogScope
	closure      []uint64
	closureNames []string
}

// governance is the compiled governance of a policy.
type governance struct {
	// catalog is nil when the policy declares no scopes.
	catalog map[string]*catalogScope
	order   []*catalogScope
	// implying are the non-retired scopes that imply others.
	implying []*catalogScope
	// retired is the bitset of retired scopes, nil when there are none.
	retired []uint64
	// anyDeprecated is set when some catalog scope is deprecated, so that
	// callers skip DeprecatedScopesUsed otherwise.
	anyDeprecated bool

	segNames  []string
	segOwner  []string
	segScopes [][]string
	segIndex  map[string]int
	scopeSeg  map[string]int
	// segOf is the segment of each interned scope, by index, -1 for none.
	segOf []int8

	// Drift detection.
	drift        bool
	defaultMode  driftMode
	unregistered driftMode
	segMode      [maxSegments]driftMode
	clients      map[string]*clientGrants
	// lastUnregistered caches the report of the last token of an
	// unregistered client, so a repeated token allocates nothing.
	lastUnregistered atomic.Pointer[driftInfo]
}

// clientGrants is one registered client, compiled.
type clientGrants struct {
	id   string
	mode driftMode
	// phases are the client's active grants between expiries, in time
	// order; the last phase lasts forever.
	phases []grantPhase
	// together are the segment groups the client may hold in one token.
	together []uint64
	// last caches the client's last drift report, so a client that keeps
	// drifting the same way allocates nothing.
	last atomic.Pointer[driftInfo]

	grants []compiledGrant // compile-time only
}

// grantPhase is the set of scopes a client holds until until (Unix ns).
type grantPhase struct {
	until int64
	bits  []uint64
}

type compiledGrant struct {
	scopes  []string // the scope, or the segment's scopes
	expires int64
}

func setIndex(b []uint64, i int) { b[i>>6] |= 1 << (uint(i) & 63) }

func hasIndex(b []uint64, i int) bool {
	return i>>6 < len(b) && b[i>>6]&(1<<(uint(i)&63)) != 0
}

// orInto ORs src into dst, up to the shorter length.
func orInto(dst, src []uint64) {
	for i := range min(len(dst), len(src)) {
		dst[i] |= src[i]
	}
}

// ---- Compiling ----

// governance compiles the catalog, segments, clients, drift settings and
// SMART routes, and checks routes against them.
func (c *compiler) governance(pf *PolicyFile, pol *Policy) {
	c.smartRoutes(pf, pol)
	if len(pf.Scopes) == 0 && len(pf.Segments) == 0 && len(pf.Clients) == 0 && pf.Drift == nil {
		for _, r := range pol.Routes {
			if pf.Routes[r.Index].CrossSegment != "" {
				c.warnf(c.li.line("routes", r.Index, "cross_segment"), indexed("routes", r.Index)+".cross_segment", "the policy declares no segments, so cross_segment has no effect; remove it")
			}
		}
		return
	}
	g := &governance{segIndex: map[string]int{}, scopeSeg: map[string]int{}}
	c.catalog(pf, pol, g)
	c.segments(pf, pol, g)
	c.driftSettings(pf, g)
	c.governRoutes(pf, pol, g)
	c.clients(pf, pol, g)
	c.finishGovernance(pol, g)
	pol.gov = g
}

func (c *compiler) warnf(line int, field, format string, args ...any) {
	c.probs = append(c.probs, Problem{File: c.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...), Warning: true})
}

// didYouMean returns "; did you mean %q?" for the closest catalog scope.
func (g *governance) didYouMean(name string) string {
	if g.catalog == nil {
		return ""
	}
	names := make([]string, 0, len(g.order))
	for _, s := range g.order {
		names = append(names, s.name)
	}
	return suggest.DidYouMean(name, names)
}

func (c *compiler) validScopeName(line int, field, s string) bool {
	switch {
	case s == "":
		c.errorf(line, field, "empty scope name")
		return false
	case strings.ContainsAny(s, " \t\r\n\"\\"):
		c.errorf(line, field, "scope %q contains whitespace, a quote or a backslash; scopes are single tokens (RFC 6749 §3.3)", s)
		return false
	}
	return true
}

// parseGovDate reads YYYY-MM-DD (00:00 UTC of that day) or an RFC 3339 time.
func parseGovDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid date %q: write YYYY-MM-DD (e.g. 2027-01-31) or an RFC 3339 time (e.g. 2027-01-31T18:00:00Z)", s)
}

func (c *compiler) catalog(pf *PolicyFile, pol *Policy, g *governance) {
	if len(pf.Scopes) == 0 {
		return
	}
	g.catalog = make(map[string]*catalogScope, len(pf.Scopes))
	for i := range pf.Scopes {
		sp := &pf.Scopes[i]
		field := indexed("scopes", i)
		line := c.li.line("scopes", i)
		nameLine := c.li.line("scopes", i, "name")
		if !c.validScopeName(nameLine, field+".name", sp.Name) {
			continue
		}
		if prev, dup := g.catalog[sp.Name]; dup {
			c.errorf(nameLine, field+".name", "scope %q is already declared on line %d; declare each scope once", sp.Name, prev.line)
			continue
		}
		cs := &catalogScope{name: sp.Name, spec: sp, line: line, segment: -1}
		pol.intern(sp.Name)
		cs.index = pol.scopeIndex[sp.Name]
		switch sp.Status {
		case "", "active":
			cs.status = statusActive
		case "deprecated":
			cs.status = statusDeprecated
			g.anyDeprecated = true
		case "retired":
			cs.status = statusRetired
		default:
			c.errorf(c.li.line("scopes", i, "status"), field+".status", "unknown status %q; use active, deprecated or retired", sp.Status)
		}
		switch sp.Risk {
		case "", "low", "medium", "high":
		default:
			c.errorf(c.li.line("scopes", i, "risk"), field+".risk", "unknown risk %q; use low, medium or high", sp.Risk)
		}
		if sp.Sunset != "" {
			t, err := parseGovDate(sp.Sunset)
			if err != nil {
				c.errorf(c.li.line("scopes", i, "sunset"), field+".sunset", "%v", err)
			}
			cs.sunset = t
		}
		if sp.Description == "" {
			c.warnf(line, field+".description", "scope %q has no description; write the consent text a user would read", sp.Name)
		}
		if sp.Owner == "" {
			c.warnf(line, field+".owner", "scope %q has no owner; name the team that approves its grants", sp.Name)
		}
		g.catalog[sp.Name] = cs
		g.order = append(g.order, cs)
	}

	// Second pass: references between catalog entries.
	for i := range pf.Scopes {
		sp := &pf.Scopes[i]
		cs := g.catalog[sp.Name]
		if cs == nil || cs.spec != sp {
			continue
		}
		field := indexed("scopes", i)
		if sp.Replacement != "" {
			rl := c.li.line("scopes", i, "replacement")
			switch r := g.catalog[sp.Replacement]; {
			case cs.status == statusActive:
				c.errorf(rl, field+".replacement", "scope %q is active; only a deprecated or retired scope has a replacement (set status: deprecated)", sp.Name)
			case r == nil:
				c.errorf(rl, field+".replacement", "replacement %q is not in the scope catalog%s", sp.Replacement, g.didYouMean(sp.Replacement))
			case r == cs:
				c.errorf(rl, field+".replacement", "scope %q cannot replace itself", sp.Name)
			case r.status == statusRetired:
				c.errorf(rl, field+".replacement", "replacement %q is itself retired; name an active scope", sp.Replacement)
			}
		}
		switch {
		case cs.status == statusActive && sp.Sunset != "":
			c.errorf(c.li.line("scopes", i, "sunset"), field+".sunset", "scope %q is active; a sunset applies to a deprecated scope (set status: deprecated)", sp.Name)
		case cs.status == statusDeprecated && sp.Replacement == "":
			c.warnf(c.li.line("scopes", i, "status"), field+".replacement", "deprecated scope %q names no replacement; name the scope clients should move to", sp.Name)
		}
		if cs.status == statusDeprecated && sp.Sunset == "" {
			c.warnf(c.li.line("scopes", i, "status"), field+".sunset", "deprecated scope %q has no sunset date; set one (YYYY-MM-DD)", sp.Name)
		}
		seen := map[string]bool{}
		for j, name := range sp.Implies {
			jl := c.li.line("scopes", i, "implies", j)
			jf := indexed(field+".implies", j)
			t := g.catalog[name]
			switch {
			case t == nil:
				c.errorf(jl, jf, "scope %q implies %q, which is not in the scope catalog%s", sp.Name, name, g.didYouMean(name))
			case t == cs:
				c.errorf(jl, jf, "scope %q implies itself; remove it from implies", sp.Name)
			case seen[name]:
				c.errorf(jl, jf, "%q is listed twice in implies", name)
			default:
				seen[name] = true
				cs.implies = append(cs.implies, t)
				if t.status == statusRetired && cs.status != statusRetired {
					c.warnf(jl, jf, "scope %q implies retired scope %q, which grants nothing; remove the implication", sp.Name, name)
				}
			}
		}
	}
	c.implyCycles(g)
}

// implyCycles reports every cycle of implies (each once) and drops the
// edges that close them, so the closure below always terminates.
func (c *compiler) implyCycles(g *governance) {
	const (
		white = iota
		grey
		black
	)
	color := make(map[*catalogScope]int, len(g.order))
	var stack []*catalogScope
	var visit func(s *catalogScope)
	visit = func(s *catalogScope) {
		color[s] = grey
		stack = append(stack, s)
		kept := s.implies[:0]
		for _, t := range s.implies {
			switch color[t] {
			case grey:
				start := slices.Index(stack, t)
				names := make([]string, 0, len(stack)-start+1)
				for _, x := range stack[start:] {
					names = append(names, x.name)
				}
				names = append(names, t.name)
				c.errorf(s.line, "scopes", "implies forms a cycle: %s; implications must only go one way (e.g. orders:write implies orders:read)", strings.Join(names, " → "))
				continue
			case white:
				visit(t)
			}
			kept = append(kept, t)
		}
		s.implies = kept
		stack = stack[:len(stack)-1]
		color[s] = black
	}
	for _, s := range g.order {
		if color[s] == white {
			visit(s)
		}
	}
}

func (c *compiler) segments(pf *PolicyFile, pol *Policy, g *governance) {
	addSeg := func(name, owner string) int {
		g.segIndex[name] = len(g.segNames)
		g.segNames = append(g.segNames, name)
		g.segOwner = append(g.segOwner, owner)
		g.segScopes = append(g.segScopes, nil)
		return len(g.segNames) - 1
	}
	tooMany := false
	for i := range pf.Segments {
		sp := &pf.Segments[i]
		field := indexed("segments", i)
		line := c.li.line("segments", i)
		switch {
		case sp.Name == "":
			c.errorf(line, field+".name", "every segment needs a name, e.g. billing")
			continue
		case strings.ContainsAny(sp.Name, " \t\r\n"):
			c.errorf(c.li.line("segments", i, "name"), field+".name", "segment name %q contains whitespace; use a single word such as analytics-read", sp.Name)
			continue
		}
		if _, dup := g.segIndex[sp.Name]; dup {
			c.errorf(c.li.line("segments", i, "name"), field+".name", "segment %q is declared twice; declare each segment once", sp.Name)
			continue
		}
		if len(g.segNames) == maxSegments {
			if !tooMany {
				c.errorf(line, field, "a policy may declare at most %d segments; merge segments that serve the same purpose", maxSegments)
				tooMany = true
			}
			continue
		}
		if sp.Owner == "" {
			c.warnf(line, field+".owner", "segment %q has no owner; name the team accountable for it", sp.Name)
		}
		idx := addSeg(sp.Name, sp.Owner)
		for j, s := range sp.Scopes {
			jl := c.li.line("segments", i, "scopes", j)
			jf := indexed(field+".scopes", j)
			if !c.validScopeName(jl, jf, s) {
				continue
			}
			if g.catalog != nil && g.catalog[s] == nil {
				c.errorf(jl, jf, "segment %q lists %q, which is not in the scope catalog%s", sp.Name, s, g.didYouMean(s))
				continue
			}
			if prev, in := g.scopeSeg[s]; in {
				if prev == idx {
					c.errorf(jl, jf, "scope %q is listed twice in segment %q", s, sp.Name)
				} else {
					c.errorf(jl, jf, "scope %q is in segments %q and %q; segments do not overlap: keep it in one", s, g.segNames[prev], sp.Name)
				}
				continue
			}
			pol.intern(s)
			g.scopeSeg[s] = idx
			g.segScopes[idx] = append(g.segScopes[idx], s)
		}
	}
	// Catalog entries may name their segment themselves.
	for i := range pf.Scopes {
		sp := &pf.Scopes[i]
		cs := g.catalog[sp.Name]
		if sp.Segment == "" || cs == nil || cs.spec != sp {
			continue
		}
		sl := c.li.line("scopes", i, "segment")
		sf := indexed("scopes", i) + ".segment"
		idx, ok := g.segIndex[sp.Segment]
		if !ok {
			if strings.ContainsAny(sp.Segment, " \t\r\n") {
				c.errorf(sl, sf, "segment name %q contains whitespace; use a single word such as analytics-read", sp.Segment)
				continue
			}
			if len(g.segNames) == maxSegments {
				c.errorf(sl, sf, "a policy may declare at most %d segments; merge segments that serve the same purpose", maxSegments)
				continue
			}
			idx = addSeg(sp.Segment, "")
			if len(pf.Segments) > 0 {
				c.warnf(sl, sf, "segment %q is not declared under segments, so it has no owner; add {name: %s, owner: ...}", sp.Segment, sp.Segment)
			}
		}
		if prev, in := g.scopeSeg[sp.Name]; in {
			if prev != idx {
				c.errorf(sl, sf, "scope %q says segment %q but segment %q lists it; a scope belongs to one segment: make them agree", sp.Name, sp.Segment, g.segNames[prev])
			}
			continue
		}
		g.scopeSeg[sp.Name] = idx
		g.segScopes[idx] = append(g.segScopes[idx], sp.Name)
	}
	for name, idx := range g.scopeSeg {
		if cs := g.catalog[name]; cs != nil {
			cs.segment = idx
		}
	}
}

func parseDriftMode(s string) (driftMode, bool) {
	switch s {
	case "":
		return modeUnset, true
	case "off":
		return modeOff, true
	case "monitor":
		return modeMonitor, true
	case "enforce":
		return modeEnforce, true
	}
	return modeUnset, false
}

func (c *compiler) driftSettings(pf *PolicyFile, g *governance) {
	g.defaultMode = modeMonitor
	g.drift = len(pf.Clients) > 0 || pf.Drift != nil
	ds := pf.Drift
	if ds == nil {
		g.unregistered = modeMonitor
		return
	}
	if m, ok := parseDriftMode(ds.DefaultMode); !ok {
		c.errorf(c.li.line("drift", "default_mode"), "drift.default_mode", "unknown mode %q; use enforce, monitor or off", ds.DefaultMode)
	} else if m != modeUnset {
		g.defaultMode = m
	}
	g.unregistered = g.defaultMode
	switch ds.UnregisteredClients {
	case "":
	case "deny":
		g.unregistered = modeEnforce
	case "monitor":
		g.unregistered = modeMonitor
	case "allow":
		g.unregistered = modeOff
	default:
		c.errorf(c.li.line("drift", "unregistered_clients"), "drift.unregistered_clients", "unknown value %q; use deny, monitor or allow", ds.UnregisteredClients)
	}
	segs := make([]string, 0, len(ds.SegmentModes))
	for s := range ds.SegmentModes {
		segs = append(segs, s)
	}
	sort.Strings(segs)
	for _, s := range segs {
		line := c.li.line("drift", "segment_modes", s)
		field := "drift.segment_modes." + s
		idx, ok := g.segIndex[s]
		if !ok {
			msg := suggest.DidYouMean(s, g.segNames)
			c.errorf(line, field, "%q is not a segment%s", s, msg)
			continue
		}
		m, ok := parseDriftMode(ds.SegmentModes[s])
		if !ok || m == modeUnset {
			c.errorf(line, field, "unknown mode %q; use enforce, monitor or off", ds.SegmentModes[s])
			continue
		}
		g.segMode[idx] = m
	}
}

// governRoutes checks every route's requirement against the catalog and
// the segments.
func (c *compiler) governRoutes(pf *PolicyFile, pol *Policy, g *governance) {
	for _, r := range pol.Routes {
		i := r.Index
		spec := &pf.Routes[i]
		field := indexed("routes", i)
		okScopes := true
		if g.catalog != nil && spec.Require != nil {
			for _, part := range [...]struct {
				key  string
				list []string
			}{{"all_of", spec.Require.AllOf}, {"any_of", spec.Require.AnyOf}} {
				retired := 0
				for j, s := range part.list {
					if s == "" {
						continue
					}
					jl := c.li.line("routes", i, "require", part.key, j)
					jf := indexed(field+".require."+part.key, j)
					cs := g.catalog[s]
					switch {
					case cs == nil:
						c.errorf(jl, jf, "route %q requires %q, which is not in the scope catalog%s; routes may require only catalog scopes (add it under scopes)", r.Name, s, g.didYouMean(s))
						okScopes = false
					case cs.status == statusRetired:
						retired++
						repl := ""
						if cs.spec.Replacement != "" {
							repl = fmt.Sprintf(" (its replacement is %q)", cs.spec.Replacement)
						}
						if part.key == "all_of" {
							c.errorf(jl, jf, "route %q requires retired scope %q in all_of, so it can never allow%s", r.Name, s, repl)
						} else {
							c.warnf(jl, jf, "route %q accepts retired scope %q, which grants nothing%s; remove it", r.Name, s, repl)
						}
					}
				}
				if part.key == "any_of" && retired > 0 && retired == len(part.list) {
					c.errorf(c.li.line("routes", i, "require", "any_of"), field+".require.any_of", "every scope of route %q's any_of is retired, so it can never allow; require their replacements", r.Name)
				}
			}
		}
		if !okScopes {
			continue
		}
		c.crossSegment(spec, r, field, g)
	}
}

// crossSegment rejects a route whose requirement can only be met by a token
// that holds scopes of several segments, unless the route says why.
func (c *compiler) crossSegment(spec *RouteSpec, r *Route, field string, g *governance) {
	segOf := func(s string) int {
		if idx, ok := g.scopeSeg[s]; ok {
			return idx
		}
		return -1
	}
	var base uint64
	for _, s := range r.AllOf {
		if idx := segOf(s); idx >= 0 {
			base |= 1 << idx
		}
	}
	crossing := uint64(0)
	if bits.OnesCount64(base) > 1 {
		crossing = base
	}
	for _, s := range r.AnyOf {
		set := base
		if idx := segOf(s); idx >= 0 {
			set |= 1 << idx
		}
		if bits.OnesCount64(set) > 1 {
			crossing |= set
		}
	}
	if crossing != 0 && spec.CrossSegment == "" {
		var parts []string
		for idx := range g.segNames {
			if crossing&(1<<idx) == 0 {
				continue
			}
			var in []string
			for _, s := range append(append([]string{}, r.AllOf...), r.AnyOf...) {
				if segOf(s) == idx {
					in = append(in, s)
				}
			}
			parts = append(parts, fmt.Sprintf("%s (%s)", g.segNames[idx], strings.Join(in, ", ")))
		}
		c.errorf(c.li.line("routes", r.Index, "require"), field+".require", "route %q requires scopes of segments %s; a route serves one purpose: split it, or approve the combination with cross_segment: \"<why>\"", r.Name, strings.Join(parts, " and "))
	}
	if crossing == 0 && spec.CrossSegment != "" {
		c.warnf(c.li.line("routes", r.Index, "cross_segment"), field+".cross_segment", "route %q requires scopes of one segment at most, so cross_segment has no effect; remove it", r.Name)
	}
}

func (c *compiler) clients(pf *PolicyFile, pol *Policy, g *governance) {
	g.clients = make(map[string]*clientGrants, len(pf.Clients))
	lines := make(map[string]int, len(pf.Clients))
	for i := range pf.Clients {
		c.pace.tick()
		cs := &pf.Clients[i]
		field := indexed("clients", i)
		line := c.li.line("clients", i)
		if cs.ClientID == "" {
			c.errorf(line, field+".client_id", "every client needs a client_id (the token's client_id or azp claim)")
			continue
		}
		if prev, dup := lines[cs.ClientID]; dup {
			c.errorf(c.li.line("clients", i, "client_id"), field+".client_id", "client %q is already registered on line %d; register each client once", cs.ClientID, prev)
			continue
		}
		lines[cs.ClientID] = line
		cg := &clientGrants{id: cs.ClientID, mode: g.defaultMode}
		m, ok := parseDriftMode(cs.Drift)
		switch {
		case !ok:
			c.errorf(c.li.line("clients", i, "drift"), field+".drift", "unknown mode %q; use enforce, monitor or off", cs.Drift)
		case m != modeUnset:
			cg.mode = m
		}
		for j := range cs.Grants {
			if gr, ok := c.grant(pol, g, cs, i, j); ok {
				cg.grants = append(cg.grants, gr)
			}
		}
		for j, group := range cs.SegmentsTogether {
			jl := c.li.line("clients", i, "segments_together", j)
			jf := indexed(field+".segments_together", j)
			var mask uint64
			for _, s := range group {
				idx, ok := g.segIndex[s]
				if !ok {
					msg := suggest.DidYouMean(s, g.segNames)
					c.errorf(jl, jf, "%q is not a segment%s", s, msg)
					continue
				}
				mask |= 1 << idx
			}
			if len(group) < 2 {
				c.errorf(jl, jf, "a group of segments_together needs at least two segments, e.g. [billing, profile-sensitive]")
				continue
			}
			cg.together = append(cg.together, mask)
		}
		g.clients[cs.ClientID] = cg
	}
}

// grant compiles clients[i].grants[j].
func (c *compiler) grant(pol *Policy, g *governance, cs *ClientSpec, i, j int) (compiledGrant, bool) {
	gs := &cs.Grants[j]
	field := indexed(indexed("clients", i)+".grants", j)
	line := c.li.line("clients", i, "grants", j)
	gr := compiledGrant{expires: noExpiry}
	ok := true
	switch {
	case gs.Scope != "" && gs.Segment != "":
		c.errorf(line, field, "a grant names a scope or a segment, not both; split it into two grants")
		return gr, false
	case gs.Scope == "" && gs.Segment == "":
		c.errorf(line, field, "a grant needs a scope (scope: orders:read) or a segment (segment: billing)")
		return gr, false
	case gs.Scope != "":
		sl := c.li.line("clients", i, "grants", j, "scope")
		if !c.validScopeName(sl, field+".scope", gs.Scope) {
			return gr, false
		}
		if g.catalog != nil {
			t := g.catalog[gs.Scope]
			if t == nil {
				c.errorf(sl, field+".scope", "client %q is granted %q, which is not in the scope catalog%s", cs.ClientID, gs.Scope, g.didYouMean(gs.Scope))
				return gr, false
			}
			if t.status == statusRetired {
				c.warnf(sl, field+".scope", "client %q is granted retired scope %q, which grants nothing; remove the grant", cs.ClientID, gs.Scope)
			}
		}
		pol.intern(gs.Scope)
		gr.scopes = []string{gs.Scope}
	default:
		idx, known := g.segIndex[gs.Segment]
		if !known {
			msg := suggest.DidYouMean(gs.Segment, g.segNames)
			c.errorf(c.li.line("clients", i, "grants", j, "segment"), field+".segment", "client %q is granted segment %q, which is not declared%s", cs.ClientID, gs.Segment, msg)
			return gr, false
		}
		gr.scopes = g.segScopes[idx]
	}
	var approved time.Time
	if gs.ApprovedAt != "" {
		t, err := parseGovDate(gs.ApprovedAt)
		if err != nil {
			c.errorf(c.li.line("clients", i, "grants", j, "approved_at"), field+".approved_at", "%v", err)
			ok = false
		}
		approved = t
	}
	if gs.ExpiresAt != "" {
		t, err := parseGovDate(gs.ExpiresAt)
		el := c.li.line("clients", i, "grants", j, "expires_at")
		switch {
		case err != nil:
			c.errorf(el, field+".expires_at", "%v", err)
			ok = false
		case !approved.IsZero() && !t.After(approved):
			c.errorf(el, field+".expires_at", "the grant expires (%s) before it was approved (%s); check the dates", gs.ExpiresAt, gs.ApprovedAt)
			ok = false
		default:
			gr.expires = t.UnixNano()
		}
	}
	if gs.ApprovedBy == "" || gs.Justification == "" {
		c.warnf(line, field, "the grant of %s to client %q has no approved_by or justification; record who approved it and why", grantLabel(gs), cs.ClientID)
	}
	return gr, ok
}

func grantLabel(gs *GrantSpec) string {
	if gs.Scope != "" {
		return "scope " + gs.Scope
	}
	return "segment " + gs.Segment
}

// finishGovernance builds the bitsets once every scope is interned.
func (c *compiler) finishGovernance(pol *Policy, g *governance) {
	words := (len(pol.scopeNames) + 63) / 64
	var closure func(s *catalogScope) []uint64
	closure = func(s *catalogScope) []uint64 {
		if s.closure != nil {
			return s.closure
		}
		b := make([]uint64, words)
		s.closure = b // cycles were cut, so this is never read half-built
		for _, t := range s.implies {
			setIndex(b, t.index)
			orInto(b, closure(t))
		}
		return b
	}
	for _, s := range g.order {
		closure(s)
		// Only implied catalog scopes set a closure's bits, so its names are
		// those of its set bits (linear in the closure, not the catalog).
		for w, word := range s.closure {
			for word != 0 {
				s.closureNames = append(s.closureNames, pol.scopeNames[w<<6+bits.TrailingZeros64(word)])
				word &= word - 1
			}
		}
		sort.Strings(s.closureNames)
		if s.status == statusRetired {
			if g.retired == nil {
				g.retired = make([]uint64, words)
			}
			setIndex(g.retired, s.index)
		} else if len(s.implies) > 0 {
			g.implying = append(g.implying, s)
		}
	}
	g.segOf = make([]int8, len(pol.scopeNames))
	for i := range g.segOf {
		g.segOf[i] = -1
	}
	for name, idx := range g.scopeSeg {
		if i, ok := pol.scopeIndex[name]; ok {
			g.segOf[i] = int8(idx)
		}
	}
	for _, cg := range g.clients {
		cg.phases = g.phases(pol, cg.grants, words)
		cg.grants = nil
	}
}

// phases compiles a client's grants into one bitset per interval between
// grant expiries; grants are expanded by implications (a grant of
// orders:write also covers orders:read), retired scopes grant nothing.
func (g *governance) phases(pol *Policy, grants []compiledGrant, words int) []grantPhase {
	var ends []int64
	for _, gr := range grants {
		if gr.expires != noExpiry && !slices.Contains(ends, gr.expires) {
			ends = append(ends, gr.expires)
		}
	}
	slices.Sort(ends)
	ends = append(ends, noExpiry)
	out := make([]grantPhase, len(ends))
	from := int64(math.MinInt64)
	for k, until := range ends {
		b := make([]uint64, words)
		for _, gr := range grants {
			if gr.expires <= from {
				continue // expired before this phase
			}
			for _, s := range gr.scopes {
				i, ok := pol.scopeIndex[s]
				if !ok {
					continue
				}
				setIndex(b, i)
				if cs := g.catalog[s]; cs != nil {
					orInto(b, cs.closure)
				}
			}
		}
		if g.retired != nil {
			for w := range min(len(b), len(g.retired)) {
				b[w] &^= g.retired[w]
			}
		}
		out[k] = grantPhase{until: until, bits: b}
		from = until
	}
	return out
}

// ---- Deciding ----

// expandImplied expands a token's scope bitset b (over the policy's
// interned scopes) by the catalog's implications and removes retired
// scopes, which grant nothing. It runs once per (token, policy), when the
// bitset is built and cached. Without a catalog it does nothing.
func (p *Policy) expandImplied(b []uint64) {
	g := p.gov
	if g == nil || g.catalog == nil {
		return
	}
	if g.retired != nil {
		for w := range min(len(b), len(g.retired)) {
			b[w] &^= g.retired[w]
		}
	}
	if len(g.implying) > 0 {
		// Closures are transitive, so a bit an earlier closure added only
		// adds what is already there: the order does not matter.
		for _, s := range g.implying {
			if hasIndex(b, s.index) {
				orInto(b, s.closure)
			}
		}
		if g.retired != nil {
			for w := range min(len(b), len(g.retired)) {
				b[w] &^= g.retired[w]
			}
		}
	}
}

// retiredExplains reports whether the token would have satisfied route but
// for retired scopes: the deny is then scope_retired, not
// insufficient_scope, so that the client learns the scope it uses is gone.
// It runs on the deny path only and allocates.
func (p *Policy) retiredExplains(route *Route, tok *Token) bool {
	_, ok := p.retiredFor(route, tok)
	return ok
}

// retiredDetail is the message of a scope_retired deny: which retired
// scopes the token carries and their replacements.
func (p *Policy) retiredDetail(route *Route, tok *Token) string {
	used, ok := p.retiredFor(route, tok)
	if !ok {
		return ""
	}
	parts := make([]string, 0, len(used))
	for _, s := range used {
		if s.spec.Replacement != "" {
			parts = append(parts, s.name+" (replaced by "+s.spec.Replacement+")")
		} else {
			parts = append(parts, s.name)
		}
	}
	return "route " + route.Name + " would be satisfied only by retired scope(s) " + strings.Join(parts, ", ") + ", which grant nothing; request the replacement"
}

// retiredFor returns the retired scopes of tok when, counted as active,
// they would satisfy route.
func (p *Policy) retiredFor(route *Route, tok *Token) ([]*catalogScope, bool) {
	g := p.gov
	if g == nil || g.retired == nil || route == nil || tok == nil {
		return nil, false
	}
	// Most denies carry no retired scope: find out without allocating.
	anyRetired := false
	for _, s := range tok.Scopes {
		if cs := g.catalog[s]; cs != nil && cs.status == statusRetired {
			anyRetired = true
			break
		}
	}
	if !anyRetired {
		return nil, false
	}
	b := make([]uint64, (len(p.scopeNames)+63)/64)
	var retired []*catalogScope
	for _, s := range tok.Scopes {
		i, ok := p.scopeIndex[s]
		if !ok {
			continue
		}
		setIndex(b, i)
		if cs := g.catalog[s]; cs != nil && cs.status == statusRetired {
			retired = append(retired, cs)
		}
	}
	for _, cs := range g.order {
		if hasIndex(b, cs.index) {
			orInto(b, cs.closure)
		}
	}
	if _, ok := route.satisfiedBy(b); !ok {
		return nil, false
	}
	return retired, true
}

// DeprecatedScopesUsed returns the deprecated catalog scopes of the token
// that helped satisfy the route, directly or through implies, so audit and
// metrics can show who still depends on a scope before its sunset. It
// allocates; call it off the hot path.
func (d *Decision) DeprecatedScopesUsed() []string {
	if d.Policy == nil || d.Policy.gov == nil || !d.Policy.gov.anyDeprecated || d.Token == nil || d.Route == nil {
		return nil
	}
	g := d.Policy.gov
	var out []string
	for _, s := range d.Token.Scopes {
		cs := g.catalog[s]
		if cs == nil || cs.status != statusDeprecated {
			continue
		}
		if d.scopeHelped(cs) {
			out = append(out, s)
		}
	}
	return out
}

// scopeHelped reports whether cs is, or implies, a scope that satisfied the
// route (or, on a SMART route, is a SMART scope of the token).
func (d *Decision) scopeHelped(cs *catalogScope) bool {
	if d.Route.smart != nil {
		found := false
		d.smartScopesUsed(func(s string) bool {
			found = s == cs.name
			return !found
		})
		return found
	}
	i := 0
	for _, list := range [2][]string{d.Route.AllOf, d.Route.AnyOf} {
		for _, s := range list {
			if d.used&(1<<i) != 0 {
				if s == cs.name {
					return true
				}
				if j, ok := d.Policy.scopeIndex[s]; ok && hasIndex(cs.closure, j) {
					return true
				}
			}
			i++
		}
	}
	return false
}

// ScopeInfo is one catalog scope as compiled, for audit, lint and reports.
type ScopeInfo struct {
	Name        string
	Description string
	Owner       string
	Segment     string
	Risk        string
	// Status is active, deprecated or retired.
	Status      string
	Replacement string
	// Sunset is the zero time when the scope has none.
	Sunset time.Time
	// Implies is every scope the scope implies, transitively, sorted.
	Implies []string
}

// ScopeInfo returns the catalog entry of scope name; ok is false when the
// policy has no catalog or the scope is not in it.
func (p *Policy) ScopeInfo(name string) (info ScopeInfo, ok bool) {
	if p == nil || p.gov == nil || p.gov.catalog == nil {
		return ScopeInfo{}, false
	}
	g := p.gov
	cs := g.catalog[name]
	if cs == nil {
		return ScopeInfo{}, false
	}
	info = ScopeInfo{
		Name:        cs.name,
		Description: cs.spec.Description,
		Owner:       cs.spec.Owner,
		Risk:        cs.spec.Risk,
		Status:      statusNames[cs.status],
		Replacement: cs.spec.Replacement,
		Sunset:      cs.sunset,
		Implies:     slices.Clone(cs.closureNames),
	}
	if cs.segment >= 0 {
		info.Segment = g.segNames[cs.segment]
	}
	return info, true
}

// HasScopeCatalog reports whether the policy declares a scope catalog, so
// that routes may require only catalog scopes.
func (p *Policy) HasScopeCatalog() bool {
	return p != nil && p.gov != nil && p.gov.catalog != nil
}
