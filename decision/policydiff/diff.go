// Package policydiff compares two versions of a policy and reports what
// the change does to access, not to the YAML: scopes added, removed,
// retired or re-segmented; routes whose requirement became weaker or
// stronger; clients that gain or lose scopes; issuers, constraints and
// drift settings that let more or fewer requests through. Each change is
// judged WIDER (some request that was denied is allowed now), NARROWER or
// NEUTRAL, so a reviewer, or a CI gate, sees the privilege change. It is
// what `scopegate diff` runs.
//
// Both policies are compiled as the server compiles them, so a change the
// loader would refuse is reported as a load error, never diffed; key sets
// are not read. Requirements are compared on tokens, with each policy's own
// implications and retirements: for two requirements the package looks for
// a witness token one accepts and the other refuses, among the
// requirements' alternatives and every single catalog scope. A witness
// found is real; a change that only multi-scope tokens formed through
// implications could reveal may be judged NEUTRAL.
package policydiff

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/policytest"
)

// Verdict says what a change does to access.
type Verdict string

// The verdicts.
const (
	// Wider: some request that was denied is (or may be) allowed now.
	Wider Verdict = "WIDER"
	// Narrower: some request that was allowed is denied now, and none the
	// other way.
	Narrower Verdict = "NARROWER"
	// Neutral: the change does not alter any decision (documentation,
	// ownership, an equivalent rewrite).
	Neutral Verdict = "NEUTRAL"
)

// Change is one change to access.
type Change struct {
	// Kind is scope, segment, route, client, issuer, drift or policy.
	Kind string `json:"kind"`
	// Op is added, removed or changed.
	Op string `json:"op"`
	// Subject names what changed: a scope, a route, a client id...
	Subject string  `json:"subject"`
	Verdict Verdict `json:"verdict"`
	// Detail says what changed, in terms of access.
	Detail string `json:"detail"`
	// Old and New are the text before and after, for a change of text
	// (a scope's description); empty otherwise.
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
}

// Diff is every change from Old to New.
type Diff struct {
	Old     string   `json:"old"`
	New     string   `json:"new"`
	Changes []Change `json:"changes"`
}

// Count returns how many changes have verdict v.
func (d *Diff) Count(v Verdict) int {
	n := 0
	for _, c := range d.Changes {
		if c.Verdict == v {
			n++
		}
	}
	return n
}

// Wider reports whether any change widens access.
func (d *Diff) Wider() bool { return d.Count(Wider) > 0 }

// Load loads a policy file for diffing, as every command does
// (decision.LoadFile: a broken jwks_file fails here as in serve).
func Load(path string) (*decision.Policy, error) {
	return decision.LoadFile(path, decision.CompileOptions{})
}

// Compare reports the changes from old to new; grants are judged as they
// stand at at.
func Compare(old, new *decision.Policy, at time.Time) *Diff {
	d := &differ{a: old, b: new, at: at}
	d.scopes()
	d.segments()
	d.routes()
	d.clients()
	d.drift()
	d.issuers()
	d.policyLevel()
	return &Diff{Old: old.Source, New: new.Source, Changes: d.out}
}

type differ struct {
	a, b *decision.Policy
	at   time.Time
	out  []Change
}

func (d *differ) add(kind, op, subject string, v Verdict, format string, args ...any) {
	d.out = append(d.out, Change{Kind: kind, Op: op, Subject: subject, Verdict: v, Detail: fmt.Sprintf(format, args...)})
}

// ---- scopes and segments ----

func scopeSpecs(p *decision.Policy) map[string]*decision.ScopeSpec {
	out := map[string]*decision.ScopeSpec{}
	for i := range p.File.Scopes {
		out[p.File.Scopes[i].Name] = &p.File.Scopes[i]
	}
	return out
}

func (d *differ) scopes() {
	oldInfo := map[string]decision.ScopeInfo{}
	for _, s := range d.a.CatalogScopes() {
		oldInfo[s.Name] = s
	}
	newInfo := map[string]decision.ScopeInfo{}
	for _, s := range d.b.CatalogScopes() {
		newInfo[s.Name] = s
	}
	oldSpec, newSpec := scopeSpecs(d.a), scopeSpecs(d.b)
	for _, s := range d.b.CatalogScopes() {
		o, ok := oldInfo[s.Name]
		if !ok {
			d.add("scope", "added", s.Name, Neutral, "added to the catalog%s", describeScope(s))
			continue
		}
		if o.Status != s.Status {
			v := Neutral
			switch {
			case s.Status == "retired":
				v = Narrower
			case o.Status == "retired":
				v = Wider
			}
			extra := ""
			if s.Status == "deprecated" {
				if s.Replacement != "" {
					extra += ", replacement " + s.Replacement
				}
				if !s.Sunset.IsZero() {
					extra += ", sunset " + s.Sunset.Format(time.DateOnly)
				}
			}
			d.add("scope", "changed", s.Name, v, "status %s → %s%s", o.Status, s.Status, extra)
		} else if s.Status == "deprecated" && !o.Sunset.Equal(s.Sunset) {
			d.add("scope", "changed", s.Name, Neutral, "sunset %s → %s", dateOr(o.Sunset), dateOr(s.Sunset))
		}
		if o.Segment != s.Segment {
			d.add("scope", "changed", s.Name, Neutral, "re-segmented: %s → %s (segment grants follow; see clients)", orNone(o.Segment), orNone(s.Segment))
		}
		if o.Risk != s.Risk {
			d.add("scope", "changed", s.Name, Neutral, "risk %s → %s", orNone(o.Risk), orNone(s.Risk))
		}
		if o.Owner != s.Owner {
			d.add("scope", "changed", s.Name, Neutral, "owner %s → %s", orNone(o.Owner), orNone(s.Owner))
		}
		if o.Description != s.Description {
			// The text users consent to: no decision changes, but a
			// reviewer must see it.
			d.add("scope", "changed", s.Name, Neutral, "description %q → %q (the text shown to users at consent)", o.Description, s.Description)
			last := &d.out[len(d.out)-1]
			last.Old, last.New = o.Description, s.Description
		}
		gained, lost := setDiff(o.Implies, s.Implies)
		if len(gained) > 0 {
			d.add("scope", "changed", s.Name, Wider, "now implies %s: a token with %s reaches what those open", strings.Join(gained, ", "), s.Name)
		}
		if len(lost) > 0 {
			d.add("scope", "changed", s.Name, Narrower, "no longer implies %s", strings.Join(lost, ", "))
		}
		sa, sb := oldSpec[s.Name], newSpec[s.Name]
		d.durationLimit("scope", s.Name, "max_lifetime", sa.MaxLifetime, sb.MaxLifetime)
		d.durationLimit("scope", s.Name, "max_age", sa.MaxAge, sb.MaxAge)
		d.when("scope", s.Name, sa.When, sb.When)
		d.mode("scope", s.Name, sa.Mode, sb.Mode)
	}
	for _, s := range d.a.CatalogScopes() {
		if _, ok := newInfo[s.Name]; !ok {
			d.add("scope", "removed", s.Name, Neutral, "removed from the catalog%s", describeScope(s))
		}
	}
}

func describeScope(s decision.ScopeInfo) string {
	var parts []string
	if s.Segment != "" {
		parts = append(parts, "segment "+s.Segment)
	}
	if s.Risk != "" {
		parts = append(parts, "risk "+s.Risk)
	}
	if s.Status != "" && s.Status != "active" {
		parts = append(parts, s.Status)
	}
	if len(s.Implies) > 0 {
		parts = append(parts, "implies "+strings.Join(s.Implies, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func (d *differ) segments() {
	oldSeg := map[string]decision.SegmentInfo{}
	for _, s := range d.a.Segments() {
		oldSeg[s.Name] = s
	}
	newSeg := map[string]bool{}
	for _, s := range d.b.Segments() {
		newSeg[s.Name] = true
		o, ok := oldSeg[s.Name]
		if !ok {
			d.add("segment", "added", s.Name, Neutral, "segment added with %s", listOrNone(s.Scopes))
			continue
		}
		if o.Owner != s.Owner {
			d.add("segment", "changed", s.Name, Neutral, "owner %s → %s", orNone(o.Owner), orNone(s.Owner))
		}
	}
	for _, s := range d.a.Segments() {
		if !newSeg[s.Name] {
			d.add("segment", "removed", s.Name, Neutral, "segment removed (it held %s)", listOrNone(s.Scopes))
		}
	}
}

// ---- routes ----

func routeByName(p *decision.Policy) map[string]*decision.Route {
	out := map[string]*decision.Route{}
	for _, r := range p.Routes {
		out[r.Name] = r
	}
	return out
}

func routeLabel(r *decision.Route) string {
	m := "*"
	if len(r.Methods) > 0 {
		m = strings.Join(r.Methods, "|")
	}
	return m + " " + r.Template
}

func (d *differ) routes() {
	oldR, newR := routeByName(d.a), routeByName(d.b)
	for _, r := range d.b.Routes {
		o := oldR[r.Name]
		if o == nil {
			d.addedRoute(r)
			continue
		}
		d.changedRoute(o, r)
	}
	for _, o := range d.a.Routes {
		if newR[o.Name] == nil {
			d.removedRoute(o)
		}
	}
}

// probe returns a request (method, path) route r decides in p.
func probe(p *decision.Policy, r *decision.Route) (method, path string, ok bool) {
	methods := r.Methods
	if len(methods) == 0 {
		methods = []string{"GET"}
	}
	for _, m := range methods {
		if path, err := policytest.ExamplePath(p, r, m, nil); err == nil {
			return m, path, true
		}
	}
	return "", "", false
}

func (d *differ) addedRoute(r *decision.Route) {
	subject := r.Name + " (" + routeLabel(r) + ")"
	m, path, ok := probe(d.b, r)
	var before *decision.Route
	if ok {
		before, _ = d.a.MatchRoute(m, path)
	}
	switch {
	case !ok:
		d.add("route", "added", subject, Wider, "new route; it needs %s", describeRequirement(d.b, r))
		return
	case before == nil:
		d.add("route", "added", subject, Wider, "new route: %s %s, denied before, now needs %s", m, path, describeRequirement(d.b, r))
		return
	}
	v, why := compareRequirement(d.a, before, d.b, r)
	d.add("route", "added", subject, v, "new route takes %s %s from route %s: %s → %s%s", m, path, before.Name, describeRequirement(d.a, before), describeRequirement(d.b, r), why)
}

func (d *differ) removedRoute(o *decision.Route) {
	subject := o.Name + " (" + routeLabel(o) + ")"
	m, path, ok := probe(d.a, o)
	var after *decision.Route
	if ok {
		after, _ = d.b.MatchRoute(m, path)
	}
	switch {
	case !ok:
		d.add("route", "removed", subject, Narrower, "route removed; it needed %s", describeRequirement(d.a, o))
		return
	case after == nil:
		d.add("route", "removed", subject, Narrower, "route removed: %s %s, which needed %s, is denied now", m, path, describeRequirement(d.a, o))
		return
	}
	v, why := compareRequirement(d.a, o, d.b, after)
	d.add("route", "removed", subject, v, "route removed: %s %s falls to route %s: %s → %s%s", m, path, after.Name, describeRequirement(d.a, o), describeRequirement(d.b, after), why)
}

func (d *differ) changedRoute(o, r *decision.Route) {
	subject := r.Name
	if o.Template != r.Template {
		d.add("route", "changed", subject, Wider, "path %s → %s: requests to %s are decided by other routes now (review)", o.Template, r.Template, r.Template)
	}
	switch {
	case len(o.Methods) > 0 && len(r.Methods) == 0:
		d.add("route", "changed", subject, Wider, "methods %s → every method", strings.Join(o.Methods, ", "))
	case len(o.Methods) == 0 && len(r.Methods) > 0:
		d.add("route", "changed", subject, Narrower, "methods every method → %s", strings.Join(r.Methods, ", "))
	default:
		gained, lost := setDiff(o.Methods, r.Methods)
		if len(gained) > 0 {
			d.add("route", "changed", subject, Wider, "now also allows %s", strings.Join(gained, ", "))
		}
		if len(lost) > 0 {
			d.add("route", "changed", subject, Narrower, "no longer allows %s", strings.Join(lost, ", "))
		}
	}
	if v, why := compareRequirement(d.a, o, d.b, r); o.Public != r.Public || v != Neutral || !sameRequirement(o, r) {
		d.add("route", "changed", subject, v, "requirement %s → %s%s", describeRequirement(d.a, o), describeRequirement(d.b, r), why)
	}
	sa, sb := &d.a.File.Routes[o.Index], &d.b.File.Routes[r.Index]
	d.when("route", subject, sa.When, sb.When)
	switch {
	case sa.Owner == nil && sb.Owner != nil:
		d.add("route", "changed", subject, Narrower, "adds an owner rule (lookup %s, key %s)", sb.Owner.Lookup, sb.Owner.Key)
	case sa.Owner != nil && sb.Owner == nil:
		d.add("route", "changed", subject, Wider, "drops its owner rule (lookup %s): any holder of the scopes reaches every resource", sa.Owner.Lookup)
	case sa.Owner != nil && !reflect.DeepEqual(sa.Owner, sb.Owner):
		d.add("route", "changed", subject, Wider, "owner rule %s → %s (review)", flow(sa.Owner), flow(sb.Owner))
	}
	d.mode("route", subject, sa.Mode, sb.Mode)
	if (sa.SMART == nil) != (sb.SMART == nil) || sa.SMART != nil && !reflect.DeepEqual(sa.SMART, sb.SMART) {
		d.add("route", "changed", subject, Wider, "SMART settings %s → %s (review)", flow(sa.SMART), flow(sb.SMART))
	}
}

func sameRequirement(a, b *decision.Route) bool {
	return slices.Equal(sorted(a.AllOf), sorted(b.AllOf)) && slices.Equal(sorted(a.AnyOf), sorted(b.AnyOf))
}

func describeRequirement(p *decision.Policy, r *decision.Route) string {
	switch {
	case r.Public:
		return "public (no token)"
	case r.IsSMART():
		return "SMART scopes"
	case len(r.AllOf) == 0 && len(r.AnyOf) == 0:
		return "any valid token"
	}
	var parts []string
	if len(r.AllOf) > 0 {
		parts = append(parts, "all of ["+strings.Join(r.AllOf, " ")+"]")
	}
	if len(r.AnyOf) > 0 {
		parts = append(parts, "any of ["+strings.Join(r.AnyOf, " ")+"]")
	}
	return strings.Join(parts, " and ")
}

// compareRequirement judges route b of policy pb against route a of
// policy pa on tokens, and names a witness.
func compareRequirement(pa *decision.Policy, a *decision.Route, pb *decision.Policy, b *decision.Route) (Verdict, string) {
	switch {
	case a.Public && b.Public:
		return Neutral, ""
	case b.Public:
		return Wider, "; no token is needed now"
	case a.Public:
		return Narrower, "; a token is needed now"
	case a.IsSMART() || b.IsSMART():
		if a.IsSMART() && b.IsSMART() {
			return Neutral, ""
		}
		return Wider, " (SMART and scope requirements cannot be compared; review)"
	}
	var cands [][]string
	addCand := func(t []string) {
		t = sorted(t)
		if !slices.ContainsFunc(cands, func(c []string) bool { return slices.Equal(c, t) }) {
			cands = append(cands, t)
		}
	}
	addCand(nil)
	for _, alt := range alternatives(a) {
		addCand(alt)
	}
	for _, alt := range alternatives(b) {
		addCand(alt)
	}
	for _, p := range []*decision.Policy{pa, pb} {
		for _, s := range policytest.MatrixScopes(p) {
			addCand([]string{s})
		}
	}
	var wider, narrower []string
	for _, t := range cands {
		accA := policytest.Satisfies(a, heldAll(pa, t))
		accB := policytest.Satisfies(b, heldAll(pb, t))
		switch {
		case accB && !accA && wider == nil:
			wider = t
		case accA && !accB && narrower == nil:
			narrower = t
		}
	}
	switch {
	case wider != nil && narrower != nil:
		return Wider, fmt.Sprintf("; a token with only %s is allowed now, one with only %s is refused now", tokenLabel(wider), tokenLabel(narrower))
	case wider != nil:
		return Wider, fmt.Sprintf("; a token with only %s is allowed now", tokenLabel(wider))
	case narrower != nil:
		return Narrower, fmt.Sprintf("; a token with only %s is refused now", tokenLabel(narrower))
	}
	return Neutral, ""
}

func tokenLabel(t []string) string {
	if len(t) == 0 {
		return "no scope"
	}
	return "[" + strings.Join(t, " ") + "]"
}

func alternatives(r *decision.Route) [][]string {
	if len(r.AnyOf) == 0 {
		return [][]string{slices.Clone(r.AllOf)}
	}
	var out [][]string
	for _, s := range r.AnyOf {
		out = append(out, append(slices.Clone(r.AllOf), s))
	}
	return out
}

func heldAll(p *decision.Policy, scopes []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range scopes {
		for k := range policytest.Held(p, s) {
			out[k] = true
		}
	}
	return out
}

// ---- constraints ----

// when compares two `when` blocks field by field: a constraint added
// narrows, one dropped widens, one changed is judged WIDER for review
// unless its direction is known (source_ip allow and deny lists).
func (d *differ) when(kind, subject string, a, b *decision.WhenSpec) {
	if reflect.DeepEqual(a, b) {
		return
	}
	var za, zb decision.WhenSpec
	if a == nil {
		a = &za
	}
	if b == nil {
		b = &zb
	}
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		fa, fb := va.Field(i), vb.Field(i)
		if reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			continue
		}
		switch {
		case fa.IsZero():
			d.add(kind, "changed", subject, Narrower, "adds constraint when.%s: %s", name, flow(fb.Interface()))
		case fb.IsZero():
			d.add(kind, "changed", subject, Wider, "drops constraint when.%s (was %s)", name, flow(fa.Interface()))
		case name == "source_ip":
			d.sourceIP(kind, subject, a.SourceIP, b.SourceIP)
		default:
			d.add(kind, "changed", subject, Wider, "changes constraint when.%s: %s → %s (review: may widen)", name, flow(fa.Interface()), flow(fb.Interface()))
		}
	}
}

func (d *differ) sourceIP(kind, subject string, a, b *decision.SourceIPSpec) {
	allowGained, allowLost := setDiff(a.Allow, b.Allow)
	denyGained, denyLost := setDiff(a.Deny, b.Deny)
	if len(allowGained) > 0 || len(denyLost) > 0 || len(a.Allow) > 0 && len(b.Allow) == 0 {
		d.add(kind, "changed", subject, Wider, "source_ip now allows %s%s", listOrNone(append(allowGained, denyLost...)), ternary(len(a.Allow) > 0 && len(b.Allow) == 0, " (allow list removed: every address)", ""))
	}
	if len(allowLost) > 0 && len(b.Allow) > 0 || len(denyGained) > 0 || len(a.Allow) == 0 && len(b.Allow) > 0 {
		d.add(kind, "changed", subject, Narrower, "source_ip no longer allows %s", listOrNone(append(allowLost, denyGained...)))
	}
}

func (d *differ) durationLimit(kind, subject, field string, a, b *decision.Duration) {
	switch {
	case a == nil && b == nil:
	case a == nil:
		d.add(kind, "changed", subject, Narrower, "adds %s %s", field, shortDuration(b.Duration))
	case b == nil:
		d.add(kind, "changed", subject, Wider, "drops %s (was %s)", field, shortDuration(a.Duration))
	case b.Duration > a.Duration:
		d.add(kind, "changed", subject, Wider, "%s %s → %s", field, shortDuration(a.Duration), shortDuration(b.Duration))
	case b.Duration < a.Duration:
		d.add(kind, "changed", subject, Narrower, "%s %s → %s", field, shortDuration(a.Duration), shortDuration(b.Duration))
	}
}

// shortDuration writes 1h, 15m, 1h30m rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (d *differ) mode(kind, subject, a, b string) {
	if a == "" {
		a = "enforce"
	}
	if b == "" {
		b = "enforce"
	}
	switch {
	case a == b:
	case b == "shadow":
		d.add(kind, "changed", subject, Wider, "mode %s → shadow: its rules are recorded, not enforced", a)
	default:
		d.add(kind, "changed", subject, Narrower, "mode %s → %s: its rules are enforced", a, b)
	}
}

// ---- clients and drift ----

func (d *differ) clients() {
	oldC := map[string]*decision.ClientSpec{}
	for i := range d.a.File.Clients {
		oldC[d.a.File.Clients[i].ClientID] = &d.a.File.Clients[i]
	}
	newC := map[string]bool{}
	for i := range d.b.File.Clients {
		c := &d.b.File.Clients[i]
		newC[c.ClientID] = true
		now, _ := d.b.ClientScopes(c.ClientID, d.at)
		o := oldC[c.ClientID]
		if o == nil {
			d.add("client", "added", c.ClientID, Wider, "registered, holding %s", listOrNone(now))
			continue
		}
		before, _ := d.a.ClientScopes(c.ClientID, d.at)
		gained, lost := setDiff(before, now)
		for _, s := range gained {
			d.add("client", "changed", c.ClientID, Wider, "gains %s%s", s, d.grantNote(c.ClientID, s))
		}
		for _, s := range lost {
			d.add("client", "changed", c.ClientID, Narrower, "loses %s", s)
		}
		d.grantExpiries(o, c)
		if ma, mb := driftRank(o.Drift, d.a), driftRank(c.Drift, d.b); ma != mb {
			v := Narrower
			if mb < ma {
				v = Wider
			}
			d.add("client", "changed", c.ClientID, v, "drift mode %s → %s", effMode(o.Drift, d.a), effMode(c.Drift, d.b))
		}
		ga, gb := groups(o.SegmentsTogether), groups(c.SegmentsTogether)
		gained, lost = setDiff(ga, gb)
		for _, g := range gained {
			d.add("client", "changed", c.ClientID, Wider, "may now hold segments %s in one token", g)
		}
		for _, g := range lost {
			d.add("client", "changed", c.ClientID, Narrower, "may no longer hold segments %s in one token", g)
		}
	}
	for _, o := range d.a.File.Clients {
		if !newC[o.ClientID] {
			before, _ := d.a.ClientScopes(o.ClientID, d.at)
			d.add("client", "removed", o.ClientID, Narrower, "unregistered; it held %s and is now an unregistered client (%s)", listOrNone(before), unregisteredMode(d.b))
		}
	}
}

// grantNote names the grant behind a scope a client gains.
func (d *differ) grantNote(client, scope string) string {
	gs := d.b.GrantsCovering(client, scope)
	if len(gs) == 0 {
		return ""
	}
	g := gs[0]
	var parts []string
	switch g.Via {
	case "segment":
		parts = append(parts, "through segment "+g.Grant.Segment)
	case "implies":
		parts = append(parts, "through "+g.From)
	}
	if g.Grant.ApprovedBy != "" {
		parts = append(parts, "approved by "+g.Grant.ApprovedBy)
	}
	if g.Grant.Justification != "" {
		parts = append(parts, fmt.Sprintf("%q", g.Grant.Justification))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func grantKey(g decision.GrantSpec) string {
	if g.Segment != "" {
		return "segment " + g.Segment
	}
	return "scope " + g.Scope
}

// grantExpiries reports grants that live longer or shorter than before.
func (d *differ) grantExpiries(a, b *decision.ClientSpec) {
	old := map[string]string{}
	for _, g := range a.Grants {
		old[grantKey(g)] = g.ExpiresAt
	}
	for _, g := range b.Grants {
		was, ok := old[grantKey(g)]
		if !ok || was == g.ExpiresAt {
			continue
		}
		ta, _ := parseDate(was)
		tb, _ := parseDate(g.ExpiresAt)
		switch {
		case g.ExpiresAt == "":
			d.add("client", "changed", b.ClientID, Wider, "grant of %s no longer expires (was %s)", grantKey(g), was)
		case was == "" || tb.Before(ta):
			d.add("client", "changed", b.ClientID, Narrower, "grant of %s expires %s (was %s)", grantKey(g), g.ExpiresAt, orNever(was))
		default:
			d.add("client", "changed", b.ClientID, Wider, "grant of %s extended to %s (was %s)", grantKey(g), g.ExpiresAt, was)
		}
	}
}

func parseDate(s string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// driftRank orders drift modes by strictness: off < monitor < enforce.
func driftRank(mode string, p *decision.Policy) int {
	return rankOf(effMode(mode, p))
}

func effMode(mode string, p *decision.Policy) string {
	if mode != "" {
		return mode
	}
	if p.File.Drift != nil && p.File.Drift.DefaultMode != "" {
		return p.File.Drift.DefaultMode
	}
	return "monitor"
}

func rankOf(mode string) int {
	switch mode {
	case "off", "allow":
		return 0
	case "monitor":
		return 1
	case "enforce", "deny":
		return 2
	}
	return 1
}

func unregisteredMode(p *decision.Policy) string {
	ds := p.File.Drift
	switch {
	case ds != nil && ds.UnregisteredClients != "":
		return ds.UnregisteredClients
	case len(p.File.Clients) == 0 && ds == nil:
		return "not checked"
	}
	switch effMode("", p) {
	case "enforce":
		return "deny"
	case "off":
		return "allow"
	}
	return "monitor"
}

func (d *differ) drift() {
	ma, mb := effMode("", d.a), effMode("", d.b)
	if rankOf(ma) != rankOf(mb) {
		v := Narrower
		if rankOf(mb) < rankOf(ma) {
			v = Wider
		}
		d.add("drift", "changed", "default_mode", v, "drift default mode %s → %s", ma, mb)
	}
	ua, ub := unregisteredMode(d.a), unregisteredMode(d.b)
	if ua != ub && !(ua == "not checked" && ub == "allow") && !(ua == "allow" && ub == "not checked") {
		ra, rb := rankOf(ua), rankOf(ub)
		if ua == "not checked" {
			ra = 0
		}
		if ub == "not checked" {
			rb = 0
		}
		v := Neutral
		switch {
		case rb < ra:
			v = Wider
		case rb > ra:
			v = Narrower
		}
		d.add("drift", "changed", "unregistered_clients", v, "tokens of unregistered clients: %s → %s", ua, ub)
	}
	segA, segB := map[string]string{}, map[string]string{}
	if d.a.File.Drift != nil {
		segA = d.a.File.Drift.SegmentModes
	}
	if d.b.File.Drift != nil {
		segB = d.b.File.Drift.SegmentModes
	}
	for _, s := range sortedKeys(segA, segB) {
		a, b := segA[s], segB[s]
		if a == b {
			continue
		}
		v := Narrower
		if rankOf(orDefault(b, "monitor")) < rankOf(orDefault(a, "monitor")) {
			v = Wider
		}
		d.add("drift", "changed", "segment_modes."+s, v, "drift mode of segment %s: %s → %s", s, orNone(a), orNone(b))
	}
}

// ---- issuers and the rest ----

func (d *differ) issuers() {
	oldI := map[string]*decision.IssuerSpec{}
	for i := range d.a.File.Issuers {
		oldI[d.a.File.Issuers[i].Issuer] = &d.a.File.Issuers[i]
	}
	seen := map[string]bool{}
	for i := range d.b.File.Issuers {
		b := &d.b.File.Issuers[i]
		seen[b.Issuer] = true
		a := oldI[b.Issuer]
		if a == nil {
			d.add("issuer", "added", b.Issuer, Wider, "tokens of this issuer are trusted now (audiences %s)", listOrNone(b.Audiences))
			continue
		}
		gained, lost := setDiff(a.Audiences, b.Audiences)
		if len(gained) > 0 {
			d.add("issuer", "changed", b.Issuer, Wider, "accepts audiences %s", strings.Join(gained, ", "))
		}
		if len(lost) > 0 {
			d.add("issuer", "changed", b.Issuer, Narrower, "no longer accepts audiences %s", strings.Join(lost, ", "))
		}
		gained, lost = setDiff(a.Algorithms, b.Algorithms)
		if len(gained) > 0 {
			d.add("issuer", "changed", b.Issuer, Wider, "accepts algorithms %s", strings.Join(gained, ", "))
		}
		if len(lost) > 0 {
			d.add("issuer", "changed", b.Issuer, Narrower, "no longer accepts algorithms %s", strings.Join(lost, ", "))
		}
		if a.RequireATJWT != b.RequireATJWT {
			v := Narrower
			if !b.RequireATJWT {
				v = Wider
			}
			d.add("issuer", "changed", b.Issuer, v, "require_at_jwt %v → %v", a.RequireATJWT, b.RequireATJWT)
		}
		if a.DeviceClaim != b.DeviceClaim {
			// Device revocations find tokens by this claim: without it, or
			// under another name, they may stop matching what they did.
			v := Wider
			if a.DeviceClaim == "" {
				v = Narrower
			}
			d.add("issuer", "changed", b.Issuer, v, "device_claim %s → %s: device revocations match tokens by it", orNone(a.DeviceClaim), orNone(b.DeviceClaim))
		}
		if sa, sb := skew(a), skew(b); sa != sb {
			v := Narrower
			if sb > sa {
				v = Wider
			}
			d.add("issuer", "changed", b.Issuer, v, "clock_skew %s → %s", shortDuration(sa), shortDuration(sb))
		}
		if ka, kb := keySource(a), keySource(b); ka != kb {
			d.add("issuer", "changed", b.Issuer, Wider, "key set %s → %s: tokens signed by other keys are trusted now (review)", orNone(ka), orNone(kb))
		}
		d.introspection(a, b)
	}
	for _, a := range d.a.File.Issuers {
		if !seen[a.Issuer] {
			d.add("issuer", "removed", a.Issuer, Narrower, "tokens of this issuer are no longer trusted")
		}
	}
}

// keySource names where an issuer's keys come from.
func keySource(s *decision.IssuerSpec) string {
	switch {
	case s.OpenIDConfigurationURL != "":
		return "discovery at " + s.OpenIDConfigurationURL
	case s.Discovery:
		return "discovery"
	}
	return s.JWKSFile + s.JWKSURL
}

// introspection compares the issuers' introspection blocks: accepting
// opaque tokens, or asking another endpoint or as another client, widens
// what is trusted.
func (d *differ) introspection(a, b *decision.IssuerSpec) {
	ia, ib := a.Introspection, b.Introspection
	switch {
	case ia == nil && ib == nil:
	case ia == nil:
		d.add("issuer", "changed", b.Issuer, Wider, "accepts opaque tokens by introspection at %s", orDiscovery(ib.Endpoint))
	case ib == nil:
		d.add("issuer", "changed", b.Issuer, Narrower, "no longer accepts opaque tokens (introspection removed)")
	default:
		if ia.Endpoint != ib.Endpoint || ia.ClientID != ib.ClientID {
			d.add("issuer", "changed", b.Issuer, Wider, "introspection at %s as %s → %s as %s: another server's answers are trusted now (review)",
				orDiscovery(ia.Endpoint), ia.ClientID, orDiscovery(ib.Endpoint), ib.ClientID)
		}
		if ia.TokenPrefix != ib.TokenPrefix {
			d.add("issuer", "changed", b.Issuer, Wider, "token_prefix %s → %s", orNone(ia.TokenPrefix), orNone(ib.TokenPrefix))
		}
	}
}

func orDiscovery(endpoint string) string {
	if endpoint == "" {
		return "the discovery document's endpoint"
	}
	return endpoint
}

func skew(s *decision.IssuerSpec) time.Duration {
	if s.ClockSkew != nil {
		return s.ClockSkew.Duration
	}
	return decision.DefaultClockSkew
}

func (d *differ) policyLevel() {
	pa, pb := d.a.File, d.b.File
	if pa.Environment != pb.Environment {
		d.add("policy", "changed", "environment", Neutral, "environment %s → %s (applies_in blocks follow it)", orNone(pa.Environment), orNone(pb.Environment))
	}
	if d.a.Paths.AllowSemicolon != d.b.Paths.AllowSemicolon {
		v := Narrower
		if d.b.Paths.AllowSemicolon {
			v = Wider
		}
		d.add("policy", "changed", "paths.allow_semicolon", v, "paths with ';' %s", ternary(d.b.Paths.AllowSemicolon, "are accepted now", "are refused now"))
	}
	if d.a.Paths.CaseInsensitive != d.b.Paths.CaseInsensitive {
		d.add("policy", "changed", "paths.case_insensitive", Wider, "literal segments match %s now (review: other spellings reach routes)", ternary(d.b.Paths.CaseInsensitive, "ignoring case", "case-sensitively"))
	}
	for _, name := range sortedKeys(pa.Networks, pb.Networks) {
		gained, lost := setDiff(pa.Networks[name], pb.Networks[name])
		if len(gained) > 0 {
			d.add("policy", "changed", "networks."+name, Wider, "network %s gains %s (review: where it is denied, this narrows)", name, strings.Join(gained, ", "))
		}
		if len(lost) > 0 {
			d.add("policy", "changed", "networks."+name, Narrower, "network %s loses %s (review: where it is denied, this widens)", name, strings.Join(lost, ", "))
		}
	}
	for _, name := range sortedKeys(pa.Windows, pb.Windows) {
		if !reflect.DeepEqual(pa.Windows[name], pb.Windows[name]) {
			d.add("policy", "changed", "windows."+name, Wider, "window %s: %s → %s (review: may widen)", name, flow(pa.Windows[name]), flow(pb.Windows[name]))
		}
	}
}

// ---- output ----

var kindOrder = []string{"scope", "segment", "route", "client", "drift", "issuer", "policy"}

var kindTitle = map[string]string{
	"scope": "Scopes", "segment": "Segments", "route": "Routes", "client": "Clients",
	"drift": "Drift", "issuer": "Issuers", "policy": "Policy",
}

var opMark = map[string]string{"added": "+", "removed": "-", "changed": "~"}

// WriteText prints the changes grouped by kind, each with its mark (+ - ~)
// and verdict, then a summary line.
func (d *Diff) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Access changes from %s to %s\n", d.Old, d.New)
	if len(d.Changes) == 0 {
		fmt.Fprintln(w, "\nno change to access")
	}
	for _, kind := range kindOrder {
		var group []Change
		for _, c := range d.Changes {
			if c.Kind == kind {
				group = append(group, c)
			}
		}
		if len(group) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", kindTitle[kind])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range group {
			fmt.Fprintf(tw, "  %s %s\t%s\t%s\n", opMark[c.Op], c.Subject, c.Verdict, c.Detail)
		}
		_ = tw.Flush()
	}
	fmt.Fprintf(w, "\n%d wider, %d narrower, %d neutral\n", d.Count(Wider), d.Count(Narrower), d.Count(Neutral))
}

// WriteJSON prints the diff as one JSON object, for bots.
func (d *Diff) WriteJSON(w io.Writer) error {
	out := struct {
		*Diff
		Summary map[string]int `json:"summary"`
	}{d, map[string]int{"wider": d.Count(Wider), "narrower": d.Count(Narrower), "neutral": d.Count(Neutral)}}
	if out.Changes == nil {
		out.Changes = []Change{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ---- helpers ----

func setDiff(a, b []string) (gained, lost []string) {
	for _, s := range b {
		if !slices.Contains(a, s) && !slices.Contains(gained, s) {
			gained = append(gained, s)
		}
	}
	for _, s := range a {
		if !slices.Contains(b, s) && !slices.Contains(lost, s) {
			lost = append(lost, s)
		}
	}
	return gained, lost
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func groups(gs [][]string) []string {
	var out []string
	for _, g := range gs {
		out = append(out, "["+strings.Join(sorted(g), ", ")+"]")
	}
	return out
}

func sortedKeys[V any](a, b map[string]V) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, cmp.Compare[string])
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dateOr(t time.Time) string {
	if t.IsZero() {
		return "(none)"
	}
	return t.Format(time.DateOnly)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "no scope"
	}
	return strings.Join(s, ", ")
}

func ternary(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

// flow renders a policy value as compact YAML, e.g. {allow: [corporate]},
// leaving out empty fields.
func flow(v any) string {
	if v == nil || reflect.ValueOf(v).Kind() == reflect.Pointer && reflect.ValueOf(v).IsNil() {
		return "(none)"
	}
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	prune(&n)
	setFlow(&n)
	b, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(string(b))
}

func prune(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := n.Content[i+1]
			prune(v)
			if v.Tag == "!!null" || (v.Kind == yaml.SequenceNode || v.Kind == yaml.MappingNode) && len(v.Content) == 0 ||
				v.Kind == yaml.ScalarNode && (v.Value == "" || v.Tag == "!!bool" && v.Value == "false" || v.Tag == "!!int" && v.Value == "0") {
				continue
			}
			kept = append(kept, n.Content[i], v)
		}
		n.Content = kept
		return
	}
	for _, c := range n.Content {
		prune(c)
	}
}

func setFlow(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	for _, c := range n.Content {
		setFlow(c)
	}
}
