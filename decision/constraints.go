package decision

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision/suggest"
)

// Contextual constraints: the `when` blocks of routes and of catalog scopes,
// routes' owner rules, catalog scopes' token lifetime bounds and RFC 8705
// certificate binding. Everything is compiled at load (CIDRs to sorted
// prefixes, zones loaded once, windows and claim conditions typed, deny
// messages prebuilt), so that a decision that passes every constraint, with
// a cached token and a cached ownership answer, allocates nothing.
//
// checkConstraints runs the checks in a fixed order, each over every
// constraint set that applies (the route's `when` first, then the `when` of
// each scope that satisfied the route, in the route's require order):
//
//	source_ip, environment, time, claims, token lifetime and age,
//	certificate binding, step-up, then ownership (the only lookup).
//
// Checking by kind rather than by set means a request from the wrong
// network is told so before it is sent to re-authenticate, and the one
// check that leaves the process runs only when everything else allowed.

// OwnershipStore answers ownership lookups: the owners of the resource
// identified by key in the named lookup. found is false when the resource
// does not exist. Owners must honour ctx's deadline; Decide cuts off a call
// that does not.
type OwnershipStore interface {
	Owners(ctx context.Context, lookup, key string) (owners []string, found bool, err error)
}

// CachedOwnershipStore is an OwnershipStore that keeps answers in memory
// (the caching layer in front of a backend). Decide asks CachedOwners first
// and, on a hit, derives no deadline context and starts no goroutine, so a
// decision with a cached ownership answer allocates nothing. CachedOwners
// must not block or do I/O.
type CachedOwnershipStore interface {
	OwnershipStore
	CachedOwners(lookup, key string) (owners []string, found, hit bool)
}

// routeConstraints are a route's compiled constraints (embedded in Route).
type routeConstraints struct {
	// conWhen is the route's own `when`, or nil.
	conWhen *whenSet
	// conScopes are the `when` sets of the route's required scopes; each
	// applies when its bit is set in the decision's used scopes.
	conScopes []scopeWhen
	conOwner  *ownerRule
	// conActive is false when the route has none of the above.
	conActive bool
}

// scopeWhen is a scope's `when`, with the bit of that scope among the
// route's required scopes (all_of, then any_of).
type scopeWhen struct {
	mask uint64
	set  *whenSet
}

// policyConstraints are a policy's compiled constraint settings (embedded
// in Policy).
type policyConstraints struct {
	conProxies trustedProxies
	// conLimits are the catalog's max_lifetime / max_age, by scope name;
	// they bound every token that carries the scope.
	conLimits map[string]*scopeLimit
	conCerts  *certCache
}

// scopeLimit is a catalog scope's bound on the tokens that carry it.
type scopeLimit struct {
	maxLifetime, maxAge       time.Duration
	hasLifetime, hasAge       bool
	detailLifetime, detailAge string
	detailNoIat               string
}

// whenSet is one compiled `when` block.
type whenSet struct {
	// who names the block in messages: "route refund", "scope orders:write".
	who string
	// shadow sets (of scopes in mode shadow) are evaluated and traced,
	// never enforced.
	shadow    bool
	appliesIn []string

	ip *ipRule

	envIn, envNotIn                             []string
	detailEnvIn, detailEnvNotIn, detailEnvUnset string

	within, notWithin []*window
	detailOutside     string
	detailInside      []string // per notWithin window

	claims []claimCond

	maxLifetime, maxAge       time.Duration
	hasLifetime, hasAge       bool
	detailLifetime, detailAge string
	detailNoIat               string

	certBound          bool
	detailCertRequired string

	stepUp *stepUp
}

// appliesTo reports whether the block is enforced in env. An unknown
// environment enforces it (fail closed).
func (s *whenSet) appliesTo(env string) bool {
	return len(s.appliesIn) == 0 || env == "" || slices.Contains(s.appliesIn, env)
}

// deny records a failing constraint of s and reports whether it is
// enforced (s is not in shadow mode).
func (s *whenSet) deny(tr *Trace, check, detail string) bool {
	if s.shadow {
		if tr != nil {
			tr.add(check, "shadow", detail+" (the scope is in shadow mode: not enforced)")
		}
		return false
	}
	tr.add(check, "fail", detail)
	return true
}

// stepUp is a compiled step_up requirement.
type stepUp struct {
	acr, amr, amrAll []string
	maxAge           time.Duration
	hasMaxAge        bool
	// acrValues and maxAgeSec are the RFC 9470 challenge parameters.
	acrValues string
	maxAgeSec int

	detailACR, detailAMR, detailAMRAll, detailAge string
}

func (s *stepUp) check(tok *Token, now time.Time) string {
	if len(s.acr) > 0 && !slices.Contains(s.acr, tok.ACR) {
		return s.detailACR
	}
	if len(s.amr) > 0 {
		found := false
		for _, m := range s.amr {
			if slices.Contains(tok.AMR, m) {
				found = true
				break
			}
		}
		if !found {
			return s.detailAMR
		}
	}
	for _, m := range s.amrAll {
		if !slices.Contains(tok.AMR, m) {
			return s.detailAMRAll
		}
	}
	if s.hasMaxAge && (tok.AuthTime().IsZero() || now.Sub(tok.AuthTime()) > s.maxAge) {
		return s.detailAge
	}
	return ""
}

func (s *stepUp) owns(detail string) bool {
	return detail != "" && (detail == s.detailACR || detail == s.detailAMR || detail == s.detailAMRAll || detail == s.detailAge)
}

// StepUp returns the parameters of the RFC 9470 challenge of an
// insufficient_user_authentication deny: the acr values (space-separated,
// "" when the requirement names none) and the max_age in seconds (-1 when
// none) of the requirement that failed, so that the client can ask its
// authorization server for exactly that. ok is false for any other
// decision. It allocates nothing.
func (d *Decision) StepUp() (acrValues string, maxAge int, ok bool) {
	if d.Code != InsufficientUserAuthentication || d.Route == nil {
		return "", -1, false
	}
	if w := d.Route.conWhen; w != nil && w.stepUp != nil && w.stepUp.owns(d.Detail) {
		return w.stepUp.acrValues, w.stepUp.maxAgeSec, true
	}
	for i := range d.Route.conScopes {
		if su := d.Route.conScopes[i].set.stepUp; su != nil && su.owns(d.Detail) {
			return su.acrValues, su.maxAgeSec, true
		}
	}
	return "", -1, false
}

// Messages of certificate-binding denies that do not depend on the rule.
const (
	detailCertMissing  = "the token is bound to a client certificate (cnf.x5t#S256) but the request presents none"
	detailCertMismatch = "the token is bound to another client certificate than the one the request presents (cnf.x5t#S256)"
	detailCertInvalid  = "the token is bound to a client certificate (cnf.x5t#S256) but the one the request presents cannot be read"
)

// maxSets is the most constraint sets that can apply to one decision: the
// route's and one per required scope.
const maxSets = 1 + 64

// checkConstraints runs the contextual constraints of the matched route
// and of the scopes that satisfied it; see the order above.
func (e *Engine) checkConstraints(ctx context.Context, r *Request, d *Decision, now time.Time) (Code, string) {
	route, pol, tok := d.Route, d.Policy, d.Token
	if route == nil || pol == nil || tok == nil {
		return OK, ""
	}
	if !route.conActive && len(pol.conLimits) == 0 && tok.CnfX5tS256 == "" {
		return OK, ""
	}
	tr := r.Trace
	env := r.Environment
	if env == "" {
		env = pol.Environment
	}
	var buf [maxSets]*whenSet
	sets := buf[:0]
	shadowed := false
	if w := route.conWhen; w != nil && w.appliesTo(env) {
		sets = append(sets, w)
	}
	for i := range route.conScopes {
		if sw := &route.conScopes[i]; d.used&sw.mask != 0 && sw.set.appliesTo(env) {
			sets = append(sets, sw.set)
			shadowed = shadowed || sw.set.shadow
		}
	}

	if code, detail := checkSets(sets, pol, r, tok, env, now, tr); code != OK {
		return code, detail
	}
	if code, detail := e.checkAssurance(sets, tok, now, tr); code != OK {
		return code, detail
	}
	if shadowed {
		// Scopes in shadow mode: would their rules deny if enforced? The
		// answer is recorded (metrics, audit), never enforced.
		var copies [maxSets]whenSet
		for i, s := range sets {
			if s.shadow {
				copies[i] = *s
				copies[i].shadow = false
				sets[i] = &copies[i]
			}
		}
		if code, _ := checkSets(sets, pol, r, tok, env, now, nil); code != OK {
			d.Shadow = ShadowOutcome{Route: route, Code: code, Scopes: true}
		}
	}
	if o := route.conOwner; o != nil {
		return e.checkOwner(ctx, o, d, tr)
	}
	return OK, ""
}

// checkSets runs the request-only checks of the applicable when blocks, in
// their fixed order.
func checkSets(sets []*whenSet, pol *Policy, r *Request, tok *Token, env string, now time.Time, tr *Trace) (Code, string) {
	if code, detail := checkSourceIP(sets, pol, r, tr); code != OK {
		return code, detail
	}
	if code, detail := checkEnvironment(sets, env, tr); code != OK {
		return code, detail
	}
	if code, detail := checkTime(sets, now, tr); code != OK {
		return code, detail
	}
	if code, detail := checkClaims(sets, tok, tr); code != OK {
		return code, detail
	}
	if code, detail := checkLifetime(sets, pol, tok, now, tr); code != OK {
		return code, detail
	}
	if code, detail := checkCertificate(sets, pol, tok, r.ClientCertificate, tr); code != OK {
		return code, detail
	}
	if code, detail := checkStepUp(sets, tok, now, tr); code != OK {
		return code, detail
	}
	return OK, ""
}

func checkSourceIP(sets []*whenSet, pol *Policy, r *Request, tr *Trace) (Code, string) {
	var addr netip.Addr
	var known, resolved, ran bool
	var hops int
	for _, s := range sets {
		if s.ip == nil {
			continue
		}
		if !resolved {
			addr, known, hops = pol.conProxies.clientAddr(r.SourceIP, r.ForwardedFor)
			resolved = true
		}
		ran = true
		if detail := s.ip.check(addr, known); detail != "" && s.deny(tr, "source_ip", detail) {
			return SourceIPNotAllowed, detail
		}
	}
	if ran && tr != nil {
		tr.add("source_ip", "pass", "client "+addr.String()+" ("+strconv.Itoa(hops)+" trusted proxy hops)")
	}
	return OK, ""
}

func checkEnvironment(sets []*whenSet, env string, tr *Trace) (Code, string) {
	ran := false
	for _, s := range sets {
		if len(s.envIn) == 0 && len(s.envNotIn) == 0 {
			continue
		}
		ran = true
		detail := ""
		switch {
		case env == "":
			detail = s.detailEnvUnset
		case len(s.envIn) > 0 && !slices.Contains(s.envIn, env):
			detail = s.detailEnvIn
		case slices.Contains(s.envNotIn, env):
			detail = s.detailEnvNotIn
		}
		if detail != "" && s.deny(tr, "environment", detail) {
			return EnvironmentNotAllowed, detail
		}
	}
	if ran && tr != nil {
		tr.add("environment", "pass", "environment "+env)
	}
	return OK, ""
}

func checkTime(sets []*whenSet, now time.Time, tr *Trace) (Code, string) {
	ran := false
	for _, s := range sets {
		if len(s.within) == 0 && len(s.notWithin) == 0 {
			continue
		}
		ran = true
		if len(s.within) > 0 {
			in := false
			for _, w := range s.within {
				if w.contains(now) {
					in = true
					break
				}
			}
			if !in && s.deny(tr, "time", s.detailOutside) {
				return OutsideTimeWindow, s.detailOutside
			}
		}
		for j, w := range s.notWithin {
			if w.contains(now) && s.deny(tr, "time", s.detailInside[j]) {
				return OutsideTimeWindow, s.detailInside[j]
			}
		}
	}
	if ran && tr != nil {
		tr.add("time", "pass", "at "+now.UTC().Format(time.RFC3339))
	}
	return OK, ""
}

func checkClaims(sets []*whenSet, tok *Token, tr *Trace) (Code, string) {
	n := 0
	for _, s := range sets {
		for i := range s.claims {
			n++
			c := &s.claims[i]
			if !c.holds(tok.Claims()) && s.deny(tr, "claims", c.detail) {
				return ClaimConditionFailed, c.detail
			}
		}
	}
	if n > 0 && tr != nil {
		tr.add("claims", "pass", strconv.Itoa(n)+" claim condition(s) hold")
	}
	return OK, ""
}

func checkLifetime(sets []*whenSet, pol *Policy, tok *Token, now time.Time, tr *Trace) (Code, string) {
	ran := false
	iat := tok.IssuedAt()
	noIat := iat.IsZero()
	lifetime := tok.Expiry().Sub(iat)
	age := now.Sub(iat)
	for _, s := range sets {
		if !s.hasLifetime && !s.hasAge {
			continue
		}
		ran = true
		detail := ""
		switch {
		case noIat:
			detail = s.detailNoIat
		case s.hasLifetime && lifetime > s.maxLifetime:
			detail = s.detailLifetime
		case s.hasAge && age > s.maxAge:
			detail = s.detailAge
		}
		if detail != "" && s.deny(tr, "token_lifetime", detail) {
			return TokenLifetimeExceedsScope, detail
		}
	}
	if len(pol.conLimits) > 0 {
		for _, sc := range tok.Scopes {
			lim := pol.conLimits[sc]
			if lim == nil {
				continue
			}
			ran = true
			switch {
			case noIat:
				tr.add("token_lifetime", "fail", lim.detailNoIat)
				return TokenLifetimeExceedsScope, lim.detailNoIat
			case lim.hasLifetime && lifetime > lim.maxLifetime:
				tr.add("token_lifetime", "fail", lim.detailLifetime)
				return TokenLifetimeExceedsScope, lim.detailLifetime
			case lim.hasAge && age > lim.maxAge:
				tr.add("token_lifetime", "fail", lim.detailAge)
				return TokenLifetimeExceedsScope, lim.detailAge
			}
		}
	}
	if ran && tr != nil {
		tr.add("token_lifetime", "pass", "lifetime "+lifetime.String()+", age "+age.String())
	}
	return OK, ""
}

func checkCertificate(sets []*whenSet, pol *Policy, tok *Token, cert string, tr *Trace) (Code, string) {
	if tok.CnfX5tS256 == "" {
		for _, s := range sets {
			if s.certBound && s.deny(tr, "certificate", s.detailCertRequired) {
				return CertificateBindingMismatch, s.detailCertRequired
			}
		}
		return OK, ""
	}
	// A bound token is always checked, whether or not a rule requires it.
	if strings.TrimSpace(cert) == "" {
		tr.add("certificate", "fail", detailCertMissing)
		return CertificateBindingMismatch, detailCertMissing
	}
	x5t, ok := pol.conCerts.thumbprintOrCompute(cert)
	if !ok {
		tr.add("certificate", "fail", detailCertInvalid)
		return CertificateBindingMismatch, detailCertInvalid
	}
	if !equalConstantTime(x5t, tok.CnfX5tS256) {
		tr.add("certificate", "fail", detailCertMismatch)
		return CertificateBindingMismatch, detailCertMismatch
	}
	tr.add("certificate", "pass", "the client certificate matches the token's cnf.x5t#S256")
	return OK, ""
}

func checkStepUp(sets []*whenSet, tok *Token, now time.Time, tr *Trace) (Code, string) {
	ran := false
	for _, s := range sets {
		if s.stepUp == nil {
			continue
		}
		ran = true
		if detail := s.stepUp.check(tok, now); detail != "" && s.deny(tr, "step_up", detail) {
			return InsufficientUserAuthentication, detail
		}
	}
	if ran && tr != nil {
		tr.add("step_up", "pass", "acr "+strconv.Quote(tok.ACR)+", amr ["+strings.Join(tok.AMR, " ")+"]")
	}
	return OK, ""
}

// thumbprintOrCompute is thumbprint, uncached on a nil cache (a Policy
// not built by Compile).
func (c *certCache) thumbprintOrCompute(cert string) (string, bool) {
	if c == nil {
		return certThumbprint(cert)
	}
	return c.thumbprint(cert)
}

// constraintNames are the named definitions when blocks refer to, and
// which of them are used.
type constraintNames struct {
	networks map[string][]netip.Prefix
	netUsed  map[string]bool
	windows  map[string]*window
	winUsed  map[string]bool
	lookups  map[string]*lookupConf
	usesEnv  bool
	envLine  int
	envField string
}

// constraints compiles every constraint of the policy file into pol and
// its routes. Problems carry their line and the fix.
func (c *compiler) constraints(pf *PolicyFile, pol *Policy) {
	pol.conCerts = newCertCache()
	n := &constraintNames{netUsed: map[string]bool{}, winUsed: map[string]bool{}}
	n.networks = c.compileNetworks(pf)
	n.windows = map[string]*window{}
	for _, name := range sortedKeys(pf.Windows) {
		n.windows[name] = c.compileWindow(name, pf.Windows[name])
	}
	n.lookups = c.compileLookups(pf)
	c.compileProxies(pf, pol, n)

	// The scope catalog: token bounds, and `when` blocks by scope name.
	scopeSets := map[string]*whenSet{}
	for k := range pf.Scopes {
		sp := &pf.Scopes[k]
		if sp.Name == "" {
			continue // the catalog's own checks report it
		}
		if _, dup := scopeSets[sp.Name]; dup {
			continue
		}
		c.scopeLimit(sp, k, pol)
		if sp.When != nil {
			base := []any{"scopes", k, "when"}
			field := indexed("scopes", k) + ".when"
			set := c.compileWhen(sp.When, "scope "+sp.Name, base, field, n)
			if set != nil {
				set.shadow = sp.Mode == "shadow"
				scopeSets[sp.Name] = set
			}
		}
	}

	byIndex := make(map[int]*Route, len(pol.Routes))
	for _, r := range pol.Routes {
		byIndex[r.Index] = r
	}
	for i := range pf.Routes {
		c.pace.tick()
		spec := &pf.Routes[i]
		r := byIndex[i]
		name := spec.Name
		if spec.Public && (spec.When != nil || spec.Owner != nil) {
			c.errorf(c.li.line("routes", i, "public"), indexed("routes", i)+".public", "a public route is allowed before any token or constraint is checked, so its when/owner would never apply; remove public (and require a token) or remove when/owner")
			continue
		}
		var set *whenSet
		if spec.When != nil {
			set = c.compileWhen(spec.When, "route "+name, []any{"routes", i, "when"}, indexed("routes", i)+".when", n)
		}
		var owner *ownerRule
		if spec.Owner != nil {
			_, params, err := parseTemplate(spec.Match.Path)
			owner = c.compileOwner(spec.Owner, i, name, params, err == nil, n.lookups)
		}
		if sm := spec.SMART; sm != nil && sm.PatientLookup != "" {
			if lk := n.lookups[sm.PatientLookup]; lk != nil {
				lk.used = true // by the SMART rules, which report a missing one
			}
		}
		if r == nil {
			continue
		}
		r.conWhen, r.conOwner = set, owner
		bit := 0
		for _, list := range [][]string{r.AllOf, r.AnyOf} {
			for _, s := range list {
				if ss := scopeSets[s]; ss != nil && bit < 64 {
					r.conScopes = append(r.conScopes, scopeWhen{mask: 1 << bit, set: ss})
				}
				bit++
			}
		}
		r.conActive = r.conWhen != nil || r.conOwner != nil || len(r.conScopes) > 0
	}

	// Unused definitions are probably typos elsewhere.
	for _, name := range sortedKeys(pf.Networks) {
		if !n.netUsed[name] {
			c.constraintWarnf(c.li.line("networks", name), conField("networks", name), "network %q is not used by any source_ip or trusted_proxies entry", name)
		}
	}
	for _, name := range sortedKeys(pf.Windows) {
		if !n.winUsed[name] {
			c.constraintWarnf(c.li.line("windows", name), conField("windows", name), "window %q is not used by any time constraint", name)
		}
	}
	for _, name := range sortedKeys(pf.Lookups) {
		if lk := n.lookups[name]; lk != nil && !lk.used {
			c.constraintWarnf(c.li.line("lookups", name), conField("lookups", name), "lookup %q is not used by any owner rule or smart.patient_lookup", name)
		}
	}
	if n.usesEnv && pf.Environment == "" {
		c.constraintWarnf(n.envLine, n.envField, "environment rules need the request's environment: set environment at the top of the policy (the default) or send context_extensions.environment from Envoy; a request whose environment is unknown fails every environment rule")
	}
}

func (c *compiler) constraintWarnf(line int, field, format string, args ...any) {
	c.probs = append(c.probs, Problem{File: c.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...), Warning: true})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := mapKeys(m)
	slices.Sort(keys)
	return keys
}

// conPath returns base followed by more, in a new slice.
func conPath(base []any, more ...any) []any {
	out := make([]any, 0, len(base)+len(more))
	return append(append(out, base...), more...)
}

// compileNetworks compiles the named network sets.
func (c *compiler) compileNetworks(pf *PolicyFile) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, name := range sortedKeys(pf.Networks) {
		field := conField("networks", name)
		if looksLikeAddress(name) || !validSetName(name) {
			c.errorf(c.li.line("networks", name), field, "network name %q must be a plain name (letters, digits, '-', '_'), not an address, so it cannot be mistaken for one in allow/deny lists", name)
			continue
		}
		list := pf.Networks[name]
		if len(list) == 0 {
			c.errorf(c.li.line("networks", name), field, "network %q lists no CIDRs; add some, e.g. [10.0.0.0/8]", name)
			continue
		}
		ps := make([]netip.Prefix, 0, len(list))
		for j, s := range list {
			p, err := parsePrefixEntry(s)
			if err != nil {
				if _, isSet := pf.Networks[s]; isSet && err == errNotAddress {
					err = fmt.Errorf("%q is a network name; a network lists CIDRs, not other networks: copy its CIDRs here", s)
				}
				c.errorf(c.li.line("networks", name, j), indexed(field, j), "%s", err)
				continue
			}
			ps = append(ps, p)
		}
		out[name] = ps
	}
	return out
}

var errNotAddress = fmt.Errorf("not an address")

// parsePrefixEntry parses one CIDR or address entry; host bits set under
// the mask are an error, since the intent is unclear.
func parsePrefixEntry(s string) (netip.Prefix, error) {
	p, ok := parseCIDROrAddr(strings.TrimSpace(s))
	if !ok {
		if looksLikeAddress(s) {
			return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR or address; write it like 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32", s)
		}
		return netip.Prefix{}, errNotAddress
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has bits set past its /%d mask; write %s for the network (or /%d for the single address)", s, p.Bits(), m, p.Addr().BitLen())
	}
	return p, nil
}

func validSetName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// resolvePrefixes resolves a list of CIDRs, addresses and network names.
func (c *compiler) resolvePrefixes(list []string, base []any, field string, n *constraintNames) ([]netip.Prefix, bool) {
	var out []netip.Prefix
	ok := true
	for j, s := range list {
		line := c.li.line(conPath(base, j)...)
		f := indexed(field, j)
		p, err := parsePrefixEntry(s)
		if err == nil {
			out = append(out, p)
			continue
		}
		if err != errNotAddress {
			c.errorf(line, f, "%s", err)
			ok = false
			continue
		}
		ps, known := n.networks[s]
		if !known {
			msg := fmt.Sprintf("%q is neither a CIDR nor a network name; declare it under networks, or write a CIDR such as 10.0.0.0/8", s)
			if sug := suggest.Closest(s, mapKeys(n.networks)); sug != "" {
				msg = fmt.Sprintf("no network named %q; did you mean %q?", s, sug)
			}
			c.errorf(line, f, "%s", msg)
			ok = false
			continue
		}
		n.netUsed[s] = true
		out = append(out, ps...)
	}
	return out, ok
}

func (c *compiler) compileProxies(pf *PolicyFile, pol *Policy, n *constraintNames) {
	tp := pf.TrustedProxies
	if tp == nil {
		return
	}
	ok := true
	if tp.Hops < 0 {
		c.errorf(c.li.line("trusted_proxies", "hops"), "trusted_proxies.hops", "hops must be 0 or more (the most proxies walked from the right of x-forwarded-for)")
		ok = false
	}
	ps, pok := c.resolvePrefixes(tp.CIDRs, []any{"trusted_proxies", "cidrs"}, "trusted_proxies.cidrs", n)
	if !pok {
		ok = false
	}
	if ok && tp.Hops == 0 && len(ps) == 0 {
		c.errorf(c.li.line("trusted_proxies"), "trusted_proxies", "trusted_proxies trusts nobody: set hops (how many proxies append to x-forwarded-for), cidrs (their addresses), or both")
		ok = false
	}
	if !ok {
		return
	}
	pol.conProxies = trustedProxies{enabled: true, hops: tp.Hops, cidrs: newPrefixSet(ps), hasCIDRs: len(ps) > 0}
}

// scopeLimit compiles a catalog scope's max_lifetime and max_age.
func (c *compiler) scopeLimit(sp *ScopeSpec, k int, pol *Policy) {
	if sp.MaxLifetime == nil && sp.MaxAge == nil {
		return
	}
	lim := &scopeLimit{}
	who := "scope " + sp.Name
	if d := sp.MaxLifetime; d != nil {
		if d.Duration <= 0 {
			c.errorf(c.li.line("scopes", k, "max_lifetime"), indexed("scopes", k)+".max_lifetime", "max_lifetime must be more than 0, e.g. \"1h\"")
			return
		}
		lim.maxLifetime, lim.hasLifetime = d.Duration, true
		lim.detailLifetime = "the token lives longer (exp - iat) than " + who + " allows (" + fmtDuration(d.Duration) + ")"
	}
	if d := sp.MaxAge; d != nil {
		if d.Duration <= 0 {
			c.errorf(c.li.line("scopes", k, "max_age"), indexed("scopes", k)+".max_age", "max_age must be more than 0, e.g. \"30m\"")
			return
		}
		lim.maxAge, lim.hasAge = d.Duration, true
		lim.detailAge = "the token is older (now - iat) than " + who + " allows (" + fmtDuration(d.Duration) + ")"
	}
	lim.detailNoIat = "the token has no iat, so its lifetime cannot be bounded as " + who + " requires"
	if pol.conLimits == nil {
		pol.conLimits = map[string]*scopeLimit{}
	}
	pol.conLimits[sp.Name] = lim
}

// compileWhen compiles one when block; who names it in messages.
func (c *compiler) compileWhen(spec *WhenSpec, who string, base []any, field string, n *constraintNames) *whenSet {
	s := &whenSet{who: who}
	ok := true
	empty := true
	line := func(more ...any) int { return c.li.line(conPath(base, more...)...) }

	if len(spec.AppliesIn) > 0 {
		s.appliesIn = c.envList(spec.AppliesIn, conPath(base, "applies_in"), field+".applies_in", &ok)
		n.noteEnv(line("applies_in"), field+".applies_in")
	}

	if ip := spec.SourceIP; ip != nil {
		empty = false
		if len(ip.Allow) == 0 && len(ip.Deny) == 0 {
			c.errorf(line("source_ip"), field+".source_ip", "source_ip needs allow, deny or both, e.g. {allow: [corp, 10.0.0.0/8]}")
			ok = false
		}
		allow, ok1 := c.resolvePrefixes(ip.Allow, conPath(base, "source_ip", "allow"), field+".source_ip.allow", n)
		deny, ok2 := c.resolvePrefixes(ip.Deny, conPath(base, "source_ip", "deny"), field+".source_ip.deny", n)
		ok = ok && ok1 && ok2
		s.ip = &ipRule{allow: newPrefixSet(allow), deny: newPrefixSet(deny), hasAllow: len(ip.Allow) > 0}
		s.ip.detailDenied = who + ": the client address is in a denied network (" + strings.Join(ip.Deny, ", ") + ")"
		s.ip.detailNotAllowed = who + ": the client address is not in an allowed network (" + strings.Join(ip.Allow, ", ") + ")"
		s.ip.detailUnknown = who + ": the client address is unknown (no peer address, or x-forwarded-for does not reach past the trusted proxies)"
	}

	if len(spec.Environments) > 0 || len(spec.NotEnvironments) > 0 {
		empty = false
		n.noteEnv(line("environments"), field+".environments")
		s.envIn = c.envList(spec.Environments, conPath(base, "environments"), field+".environments", &ok)
		s.envNotIn = c.envList(spec.NotEnvironments, conPath(base, "not_environments"), field+".not_environments", &ok)
		for _, e := range s.envIn {
			if slices.Contains(s.envNotIn, e) {
				c.errorf(line("not_environments"), field+".not_environments", "environment %q is both allowed and excluded; keep it in one list", e)
				ok = false
			}
		}
		s.detailEnvIn = who + ": allowed only in environment(s) " + strings.Join(s.envIn, ", ")
		s.detailEnvNotIn = who + ": not allowed in environment(s) " + strings.Join(s.envNotIn, ", ")
		s.detailEnvUnset = who + ": the request's environment is unknown (set environment in the policy, or context_extensions.environment)"
	}

	if t := spec.Time; t != nil {
		empty = false
		if len(t.Within) == 0 && len(t.NotWithin) == 0 {
			c.errorf(line("time"), field+".time", "time needs within, not_within or both, naming windows, e.g. {within: [business-hours]}")
			ok = false
		}
		s.within = c.windowList(t.Within, conPath(base, "time", "within"), field+".time.within", n, &ok)
		s.notWithin = c.windowList(t.NotWithin, conPath(base, "time", "not_within"), field+".time.not_within", n, &ok)
		s.detailOutside = who + ": allowed only within " + strings.Join(t.Within, " or ")
		for _, name := range t.NotWithin {
			s.detailInside = append(s.detailInside, who+": not allowed within "+name)
		}
	}

	for j := range spec.Claims {
		empty = false
		cc, cok := c.compileClaimCond(&spec.Claims[j], who, conPath(base, "claims", j), indexed(field+".claims", j))
		if !cok {
			ok = false
			continue
		}
		s.claims = append(s.claims, cc)
	}

	if d := spec.MaxTokenLifetime; d != nil {
		empty = false
		if d.Duration <= 0 {
			c.errorf(line("max_token_lifetime"), field+".max_token_lifetime", "max_token_lifetime must be more than 0, e.g. \"1h\"")
			ok = false
		}
		s.maxLifetime, s.hasLifetime = d.Duration, true
		s.detailLifetime = who + ": the token lives longer (exp - iat) than " + fmtDuration(d.Duration)
	}
	if d := spec.MaxTokenAge; d != nil {
		empty = false
		if d.Duration <= 0 {
			c.errorf(line("max_token_age"), field+".max_token_age", "max_token_age must be more than 0, e.g. \"30m\"")
			ok = false
		}
		s.maxAge, s.hasAge = d.Duration, true
		s.detailAge = who + ": the token is older (now - iat) than " + fmtDuration(d.Duration)
	}
	s.detailNoIat = who + ": the token has no iat, so its lifetime and age cannot be bounded"

	if spec.CertificateBound {
		empty = false
		s.certBound = true
		s.detailCertRequired = who + ": requires a certificate-bound token (cnf.x5t#S256, RFC 8705)"
	}

	if su := spec.StepUp; su != nil {
		empty = false
		s.stepUp = c.compileStepUp(su, who, conPath(base, "step_up"), field+".step_up", &ok)
	}

	if empty && ok {
		c.errorf(line(), field, "the when block sets no constraint; remove it or add source_ip, environments, time, claims, step_up, max_token_lifetime, max_token_age or certificate_bound")
		ok = false
	}
	if !ok {
		return nil
	}
	return s
}

func (n *constraintNames) noteEnv(line int, field string) {
	if !n.usesEnv {
		n.usesEnv, n.envLine, n.envField = true, line, field
	}
}

func (c *compiler) envList(list []string, base []any, field string, ok *bool) []string {
	var out []string
	for j, e := range list {
		if e == "" || strings.ContainsAny(e, " \t\r\n") {
			c.errorf(c.li.line(conPath(base, j)...), indexed(field, j), "environment %q must be a single word such as prod or staging", e)
			*ok = false
			continue
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

func (c *compiler) windowList(list []string, base []any, field string, n *constraintNames, ok *bool) []*window {
	var out []*window
	for j, name := range list {
		w, known := n.windows[name]
		if !known {
			msg := fmt.Sprintf("no window named %q; declare it under windows, e.g. windows: {%s: {zone: Europe/Berlin, days: [sat, sun], from: \"02:00\", to: \"06:00\"}}", name, name)
			if sug := suggest.Closest(name, mapKeys(n.windows)); sug != "" {
				msg = fmt.Sprintf("no window named %q; did you mean %q?", name, sug)
			}
			c.errorf(c.li.line(conPath(base, j)...), indexed(field, j), "%s", msg)
			*ok = false
			continue
		}
		n.winUsed[name] = true
		if w == nil {
			*ok = false // the window's own problems are reported
			continue
		}
		out = append(out, w)
	}
	return out
}

func (c *compiler) compileStepUp(spec *StepUpSpec, who string, base []any, field string, ok *bool) *stepUp {
	su := &stepUp{maxAgeSec: -1}
	if len(spec.ACR) == 0 && len(spec.AMR) == 0 && len(spec.AMRAll) == 0 && spec.MaxAuthAge == nil {
		c.errorf(c.li.line(base...), field, "step_up needs acr, amr, amr_all or max_auth_age, e.g. {acr: [urn:example:mfa], max_auth_age: 15m}")
		*ok = false
	}
	words := func(list []string, key string) []string {
		var out []string
		for j, v := range list {
			if v == "" || strings.ContainsAny(v, " \t\r\n\"\\,") {
				c.errorf(c.li.line(conPath(base, key, j)...), fmt.Sprintf("%s.%s[%d]", field, key, j), "%q must be a single token without spaces, quotes, commas or backslashes (it is sent in a WWW-Authenticate challenge)", v)
				*ok = false
				continue
			}
			out = append(out, v)
		}
		return out
	}
	su.acr = words(spec.ACR, "acr")
	su.amr = words(spec.AMR, "amr")
	su.amrAll = words(spec.AMRAll, "amr_all")
	su.acrValues = strings.Join(su.acr, " ")
	su.detailACR = who + ": requires an authentication with acr " + strings.Join(su.acr, " or ")
	su.detailAMR = who + ": requires an authentication by one of the methods " + strings.Join(su.amr, ", ")
	su.detailAMRAll = who + ": requires an authentication by all of the methods " + strings.Join(su.amrAll, ", ")
	if d := spec.MaxAuthAge; d != nil {
		if d.Duration < time.Second {
			c.errorf(c.li.line(conPath(base, "max_auth_age")...), field+".max_auth_age", "max_auth_age must be at least 1s (it is sent as max_age in seconds), e.g. \"15m\"")
			*ok = false
		}
		su.maxAge, su.hasMaxAge = d.Duration, true
		su.maxAgeSec = int(d.Duration / time.Second)
		su.detailAge = who + ": requires an authentication within the last " + fmtDuration(d.Duration)
	}
	return su
}

// fmtDuration writes a duration the way a policy would: 1h, 30m, 1h30m, 90s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// conField appends a mapping key to a dotted field path, bracketing keys
// that are not plain words: windows.maintenance, networks["a b"].
func conField(path, key string) string {
	if !validSetName(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	return path + "." + key
}
