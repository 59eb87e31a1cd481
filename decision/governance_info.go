package decision

import (
	"slices"
	"time"
)

// Read-only views of a compiled policy for the governance tools (lint,
// policy tests, diff, the generated catalog, explain). They allocate and are
// never on the decision path; they exist so those tools read the same
// compiled facts the engine decides with (segment membership, implication
// closures, grant phases, the route table) instead of re-deriving them from
// the YAML and drifting from it.

// SegmentInfo is one segment as compiled.
type SegmentInfo struct {
	Name        string
	Owner       string
	Description string
	// Scopes are the segment's scopes, from its own list and from catalog
	// entries that name it, in that order.
	Scopes []string
}

// Segments returns the policy's segments in declaration order (segments
// only named by catalog entries come last), or none.
func (p *Policy) Segments() []SegmentInfo {
	if p == nil || p.gov == nil {
		return nil
	}
	g := p.gov
	out := make([]SegmentInfo, len(g.segNames))
	for i, name := range g.segNames {
		out[i] = SegmentInfo{Name: name, Owner: g.segOwner[i], Scopes: slices.Clone(g.segScopes[i])}
		if p.File != nil {
			for _, s := range p.File.Segments {
				if s.Name == name {
					out[i].Description = s.Description
					break
				}
			}
		}
	}
	return out
}

// SegmentOf returns the segment of scope name, or "" when it is in none.
func (p *Policy) SegmentOf(name string) string {
	if p == nil || p.gov == nil {
		return ""
	}
	if i, ok := p.gov.scopeSeg[name]; ok {
		return p.gov.segNames[i]
	}
	return ""
}

// CatalogScopes returns every catalog scope in declaration order, or none
// when the policy has no catalog.
func (p *Policy) CatalogScopes() []ScopeInfo {
	if !p.HasScopeCatalog() {
		return nil
	}
	out := make([]ScopeInfo, 0, len(p.gov.order))
	for _, cs := range p.gov.order {
		info, _ := p.ScopeInfo(cs.name)
		out = append(out, info)
	}
	return out
}

// GrantInfo is one grant of a registered client that covers a scope, and
// how it covers it.
type GrantInfo struct {
	ClientID string
	Grant    GrantSpec
	// Via is "scope" (the grant names the scope), "segment" (the grant
	// names the scope's segment) or "implies" (a granted scope implies it).
	Via string
	// From is the granted scope that implies the scope, when Via is
	// "implies".
	From string
	// ApprovedAt and ExpiresAt are zero when the grant does not set them.
	ApprovedAt time.Time
	ExpiresAt  time.Time
}

// ActiveAt reports whether the grant still counts at t.
func (g GrantInfo) ActiveAt(t time.Time) bool { return g.ExpiresAt.IsZero() || t.Before(g.ExpiresAt) }

// GrantsCovering returns the grants of client clientID that cover scope,
// directly, through its segment or through a granted scope that implies
// it, expired ones included (check ActiveAt). Grants of retired scopes
// cover nothing and are left out.
func (p *Policy) GrantsCovering(clientID, scope string) []GrantInfo {
	if p == nil || p.gov == nil || p.File == nil {
		return nil
	}
	g := p.gov
	retired := func(s string) bool {
		cs := g.catalog[s]
		return cs != nil && cs.status == statusRetired
	}
	if retired(scope) {
		return nil
	}
	implies := func(from string) bool {
		cs := g.catalog[from]
		return cs != nil && slices.Contains(cs.closureNames, scope)
	}
	var out []GrantInfo
	for i := range p.File.Clients {
		cl := &p.File.Clients[i]
		if cl.ClientID != clientID {
			continue
		}
		for _, gs := range cl.Grants {
			gi := GrantInfo{ClientID: clientID, Grant: gs}
			switch {
			case gs.Scope != "" && gs.Segment != "":
				continue
			case gs.Scope == scope:
				gi.Via = "scope"
			case gs.Scope != "" && !retired(gs.Scope) && implies(gs.Scope):
				gi.Via, gi.From = "implies", gs.Scope
			case gs.Segment != "":
				idx, ok := g.segIndex[gs.Segment]
				if !ok {
					continue
				}
				for _, s := range g.segScopes[idx] {
					if s == scope {
						gi.Via = "segment"
						break
					}
					if !retired(s) && implies(s) && gi.Via == "" {
						gi.Via, gi.From = "implies", s
					}
				}
			}
			if gi.Via == "" {
				continue
			}
			if gs.ApprovedAt != "" {
				gi.ApprovedAt, _ = parseGovDate(gs.ApprovedAt)
			}
			if gs.ExpiresAt != "" {
				gi.ExpiresAt, _ = parseGovDate(gs.ExpiresAt)
			}
			out = append(out, gi)
		}
	}
	return out
}

// ClientScopes returns the scopes registered client clientID holds an
// active grant for at t, implications and segment grants expanded and
// retired scopes removed, sorted; ok is false when the client is not
// registered.
func (p *Policy) ClientScopes(clientID string, t time.Time) (scopes []string, ok bool) {
	if p == nil || p.gov == nil {
		return nil, false
	}
	c := p.gov.clients[clientID]
	if c == nil {
		return nil, false
	}
	b := c.active(t.UnixNano())
	for i, name := range p.scopeNames {
		if hasIndex(b, i) {
			scopes = append(scopes, name)
		}
	}
	slices.Sort(scopes)
	return scopes, true
}

// MatchRoute returns the route that would decide a request for method on
// path (normalized first, as Decide does), and whether some route matched
// the path at all. It lets tools ask the compiled route table which route
// wins, instead of re-implementing the specificity rule.
func (p *Policy) MatchRoute(method, path string) (r *Route, pathMatched bool) {
	if p == nil || p.router == nil {
		return nil, false
	}
	norm, _, ok := normalizePath(path, &p.Paths)
	if !ok {
		return nil, false
	}
	var params Params
	return p.router.match(method, norm, &params)
}

// KnowsScope reports whether the policy declares scope name: in its
// catalog when it has one, else in a route, grant or implication. Metrics
// use it to keep scopes an identity provider invents out of their labels.
func (p *Policy) KnowsScope(name string) bool {
	if p == nil {
		return false
	}
	if p.HasScopeCatalog() {
		_, ok := p.gov.catalog[name]
		return ok
	}
	_, ok := p.scopeIndex[name]
	return ok
}

// MatchShadowRoute returns the route that would decide method and path if
// the routes in shadow mode were enforced too: a shadow route when one is
// the one that matches (its would-be decision is what Decision.Shadow
// records), else what MatchRoute returns.
func (p *Policy) MatchShadowRoute(method, path string) (r *Route, pathMatched bool) {
	if p == nil || p.shadowRouter == nil {
		return p.MatchRoute(method, path)
	}
	norm, _, ok := normalizePath(path, &p.Paths)
	if !ok {
		return nil, false
	}
	var params Params
	return p.shadowRouter.match(method, norm, &params)
}
