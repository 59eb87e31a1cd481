package lint

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/internal/yamlpos"
	"github.com/scopegate/scopegate/decision/suggest"
)

// DefaultNamePattern is the naming convention checked when none is given:
// lower-case words joined by ':' (orders:read, admin:all, orders:read:own),
// which also admits the single-word OpenID Connect scopes.
const DefaultNamePattern = `^[a-z][a-z0-9_-]*(:[a-z0-9_-]+)*$`

// DefaultExpiryWarning is how far ahead a grant's expiry is announced.
const DefaultExpiryWarning = 30 * 24 * time.Hour

// Options configure the checks.
type Options struct {
	// NamePattern is the naming convention of scope names. Empty means
	// DefaultNamePattern, whose violations are warnings; a pattern given
	// explicitly makes them errors.
	NamePattern string
	// ExpiryWarning is how soon an expiring grant is reported; 0 means
	// DefaultExpiryWarning, negative turns the warning off.
	ExpiryWarning time.Duration
	// AllowWildcards accepts wildcard scopes in a prod policy;
	// AllowedWildcards accepts just these.
	AllowWildcards   bool
	AllowedWildcards []string
	// Now is the time grants and sunsets are judged at; zero means now.
	Now time.Time
	// OpenAPI, when set, also checks the policy against that OpenAPI 3
	// document (see CheckOpenAPI).
	OpenAPI     string
	OpenAPIOpts OpenAPIOptions
}

// Result is what lint found.
type Result struct {
	// Policy is the compiled policy, nil when it does not load.
	Policy *decision.Policy
	// Problems are the errors, then the warnings, each group in file and
	// line order.
	Problems []decision.Problem
	// Notes say what lint did not check, formatted for printing, e.g. that
	// a jwks_url is not fetched. They are neither errors nor warnings.
	Notes []string
	// Observers are the routes in shadow mode that some request reaches,
	// in file order: they decide nothing, and record what they would have
	// answered (the documented rollout of a stricter route).
	Observers []Observer
}

// Observer is a route in shadow mode and the enforced routes that answer
// the requests it observes.
type Observer struct {
	Route string
	Line  int
	// Observes are the enforced routes' names, sorted; "" stands for no
	// route (the policy's default answers).
	Observes []string
}

// Errors counts the problems that are not warnings.
func (r *Result) Errors() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Warning {
			n++
		}
	}
	return n
}

// smartContextScopes are the SMART App Launch scopes that are not resource
// scopes; they are exempt from the naming convention.
var smartContextScopes = []string{"launch", "launch/patient", "launch/encounter", "fhirUser", "online_access", "offline_access", "openid", "profile"}

// oidcScopes are the standard OpenID Connect scopes, exempt from the naming
// convention.
var oidcScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// File lints the policy file at path.
func File(path string, opts Options) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Result{Problems: []decision.Problem{decision.ReadProblem(path, err)}}, nil
	}
	return Lint(data, path, opts)
}

// Lint lints a policy from its text; filename names it in findings and
// resolves relative jwks_file paths. The error is for bad options (an
// invalid name pattern, an unreadable OpenAPI document).
func Lint(data []byte, filename string, opts Options) (*Result, error) {
	pattern, strict := opts.NamePattern, true
	if pattern == "" {
		pattern, strict = DefaultNamePattern, false
	}
	nameRE, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid name pattern %q: %v", pattern, err)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.ExpiryWarning == 0 {
		opts.ExpiryWarning = DefaultExpiryWarning
	}
	var openapi []byte
	if opts.OpenAPI != "" {
		openapi, err = os.ReadFile(opts.OpenAPI)
		if err != nil {
			return nil, fmt.Errorf("cannot read the OpenAPI document %s: %s", opts.OpenAPI, decision.ReadCause(err))
		}
	}

	res := &Result{}
	// The loading path of every command: a policy (or jwks_file) that serve
	// refuses fails here with the same message.
	pol, err := decision.Load(data, filename, decision.CompileOptions{})
	var le *decision.LoadError
	switch {
	case errors.As(err, &le):
		res.Problems = le.Problems
		res.sort()
		return res, nil
	case err != nil:
		res.Problems = []decision.Problem{{File: filename, Message: err.Error()}}
		return res, nil
	}
	res.Policy = pol
	res.Notes = urlNotes(pol, filename)
	l := &linter{
		pol:    pol,
		pf:     pol.File,
		file:   filename,
		li:     yamlpos.Parse(data),
		opts:   opts,
		nameRE: nameRE,
		strict: strict,
	}
	l.compileWarnings()
	l.names()
	l.owners()
	l.unusedScopes()
	l.unknownScopes()
	l.segmentOverlap()
	l.shadowed()
	l.grants()
	l.sunsets()
	res.Problems = l.probs
	res.Observers = l.observers
	if openapi != nil {
		res.Problems = append(res.Problems, CheckOpenAPI(pol, openapi, opts.OpenAPI, opts.OpenAPIOpts)...)
	}
	res.sort()
	return res, nil
}

// sort puts errors before warnings, each in file and line order.
func (r *Result) sort() {
	slices.SortStableFunc(r.Problems, func(a, b decision.Problem) int {
		if a.Warning != b.Warning {
			if a.Warning {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
}

// urlNotes notes every jwks_url: lint reads jwks_files but fetches no
// URL, so a key set behind one is checked only when the server fetches it.
func urlNotes(pol *decision.Policy, filename string) []string {
	var notes []string
	for i, spec := range pol.File.Issuers {
		iss := pol.Issuers[spec.Issuer]
		if iss == nil || spec.JWKSURL == "" {
			continue
		}
		notes = append(notes, fmt.Sprintf("%s:%d: note: issuers[%d].jwks_url: %s is not fetched offline; serve fetches it in the background and stays NOT_SERVING until it answers with a valid key set",
			filename, iss.Line, i, spec.JWKSURL))
	}
	return notes
}

type linter struct {
	pol    *decision.Policy
	pf     *decision.PolicyFile
	file   string
	li     *yamlpos.Index
	opts   Options
	nameRE *regexp.Regexp
	strict bool
	probs  []decision.Problem
	// observers are the shadow routes found by shadowed.
	observers []Observer
}

func (l *linter) add(warning bool, line int, field, format string, args ...any) {
	l.probs = append(l.probs, decision.Problem{File: l.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...), Warning: warning})
}

func (l *linter) errorf(line int, field, format string, args ...any) {
	l.add(false, line, field, format, args...)
}

func (l *linter) warnf(line int, field, format string, args ...any) {
	l.add(true, line, field, format, args...)
}

var ownerField = regexp.MustCompile(`^(scopes|segments)\[\d+\]\.owner$`)

// compileWarnings keeps the loader's warnings, except those lint reports
// as errors itself (missing owners).
func (l *linter) compileWarnings() {
	for _, p := range l.pol.Warnings {
		if ownerField.MatchString(p.Field) {
			continue
		}
		l.probs = append(l.probs, p)
	}
}

// scopeUse is one place a scope name is written in the policy.
type scopeUse struct {
	name  string
	line  int
	field string
}

// scopeNames lists every scope name written in the policy, once each, at
// its first place.
func (l *linter) scopeNames() []scopeUse {
	var out []scopeUse
	seen := map[string]bool{}
	add := func(name string, field string, path ...any) {
		if name == "" || seen[name] {
			return
		}
		seen[name] = true
		out = append(out, scopeUse{name: name, line: l.li.Line(path...), field: field})
	}
	for i, s := range l.pf.Scopes {
		add(s.Name, fmt.Sprintf("scopes[%d].name", i), "scopes", i, "name")
		for j, t := range s.Implies {
			add(t, fmt.Sprintf("scopes[%d].implies[%d]", i, j), "scopes", i, "implies", j)
		}
	}
	for i, r := range l.pf.Routes {
		if r.Require == nil {
			continue
		}
		for j, s := range r.Require.AllOf {
			add(s, fmt.Sprintf("routes[%d].require.all_of[%d]", i, j), "routes", i, "require", "all_of", j)
		}
		for j, s := range r.Require.AnyOf {
			add(s, fmt.Sprintf("routes[%d].require.any_of[%d]", i, j), "routes", i, "require", "any_of", j)
		}
	}
	for i, sg := range l.pf.Segments {
		for j, s := range sg.Scopes {
			add(s, fmt.Sprintf("segments[%d].scopes[%d]", i, j), "segments", i, "scopes", j)
		}
	}
	for i, c := range l.pf.Clients {
		for j, g := range c.Grants {
			add(g.Scope, fmt.Sprintf("clients[%d].grants[%d].scope", i, j), "clients", i, "grants", j, "scope")
		}
	}
	return out
}

func isProd(env string) bool {
	switch strings.ToLower(env) {
	case "prod", "production", "prd":
		return true
	}
	return false
}

// names checks every scope name: SMART scopes against the SMART grammar,
// wildcards against the environment, the rest against the naming
// convention.
func (l *linter) names() {
	prod := isProd(l.pf.Environment)
	for _, u := range l.scopeNames() {
		s := u.name
		if strings.Contains(s, "*") {
			allowed := l.opts.AllowWildcards || slices.Contains(l.opts.AllowedWildcards, s)
			switch {
			case prod && !allowed:
				l.errorf(u.line, u.field, "wildcard scope %q in a policy for environment %s: a wildcard grants whatever it will match tomorrow; name the scopes, or allow it explicitly (--allow-wildcard %s)", s, l.pf.Environment, s)
			case !prod && !allowed:
				l.warnf(u.line, u.field, "wildcard scope %q: it grants whatever it will match tomorrow; it is refused in a prod policy unless allowed explicitly", s)
			}
		}
		if isSMARTResource(s) {
			if _, err := decision.ParseSMARTScope(s); err != nil {
				l.errorf(u.line, u.field, "%v; a malformed SMART scope grants nothing", err)
			}
			continue
		}
		if slices.Contains(smartContextScopes, s) || slices.Contains(oidcScopes, s) || strings.Contains(s, "*") {
			continue
		}
		if !l.nameRE.MatchString(s) {
			msg := fmt.Sprintf("scope %q does not follow the naming convention %s", s, l.nameRE.String())
			if !l.strict {
				msg += " (lower-case resource:action, e.g. orders:read)"
			}
			l.add(!l.strict, u.line, u.field, "%s", msg)
		}
	}
}

func isSMARTResource(s string) bool {
	return strings.HasPrefix(s, "patient/") || strings.HasPrefix(s, "user/") || strings.HasPrefix(s, "system/")
}

// owners requires an owner on every catalog scope and segment, and warns
// about clients without one.
func (l *linter) owners() {
	for i, s := range l.pf.Scopes {
		if strings.TrimSpace(s.Owner) == "" && s.Name != "" {
			l.errorf(l.li.Line("scopes", i), fmt.Sprintf("scopes[%d].owner", i), "scope %q has no owner; name the team that approves its grants (owner: team-...)", s.Name)
		}
	}
	for i, s := range l.pf.Segments {
		if strings.TrimSpace(s.Owner) == "" && s.Name != "" {
			l.errorf(l.li.Line("segments", i), fmt.Sprintf("segments[%d].owner", i), "segment %q has no owner; name the team accountable for it", s.Name)
		}
	}
	for i, c := range l.pf.Clients {
		if strings.TrimSpace(c.Owner) == "" && c.ClientID != "" {
			l.warnf(l.li.Line("clients", i), fmt.Sprintf("clients[%d].owner", i), "client %q has no owner; name the team responsible for it", c.ClientID)
		}
	}
}

// routeScopes are the scopes some non-SMART route requires.
func (l *linter) routeScopes() map[string]bool {
	out := map[string]bool{}
	for _, r := range l.pol.Routes {
		for _, s := range r.AllOf {
			out[s] = true
		}
		for _, s := range r.AnyOf {
			out[s] = true
		}
	}
	return out
}

// unusedScopes warns about catalog scopes that open no route.
func (l *linter) unusedScopes() {
	required := l.routeScopes()
	smart := slices.ContainsFunc(l.pol.Routes, (*decision.Route).IsSMART)
	for i, s := range l.pol.CatalogScopes() {
		if s.Status == "retired" || smart && isSMARTResource(s.Name) {
			continue
		}
		used := required[s.Name]
		for _, t := range s.Implies {
			used = used || required[t]
		}
		if !used {
			l.warnf(l.li.Line("scopes", i), fmt.Sprintf("scopes[%d]", i), "catalog scope %q opens no route: no route requires it or a scope it implies; remove it, or retire it (status: retired)", s.Name)
		}
	}
}

// unknownScopes looks for routes requiring scopes nothing else declares.
// With a catalog the loader already refuses them; without one, lint warns
// about scopes that no client is granted and about names one edit away
// from another (orders:read and order:read).
func (l *linter) unknownScopes() {
	if l.pol.HasScopeCatalog() {
		l.lookAlikes(l.scopeNames())
		return
	}
	granted := map[string]bool{}
	for _, c := range l.pf.Clients {
		for _, g := range c.Grants {
			granted[g.Scope] = true
		}
	}
	for _, sg := range l.pol.Segments() {
		for _, s := range sg.Scopes {
			granted[s] = true
		}
	}
	names := l.scopeNames()
	if len(l.pf.Clients) > 0 || len(l.pf.Segments) > 0 {
		for i, r := range l.pol.Routes {
			for _, s := range append(slices.Clone(r.AllOf), r.AnyOf...) {
				if !granted[s] {
					l.warnf(l.pol.Routes[i].Line, fmt.Sprintf("routes[%d].require", r.Index), "route %q requires %q, which no client is granted and no segment lists; declare it (scopes:) or fix its name", r.Name, s)
				}
			}
		}
	} else if len(names) > 0 {
		l.warnf(l.li.Line("routes"), "scopes", "the policy has no scope catalog, so a misspelt scope cannot be told from a new one; declare every scope under scopes:")
	}
	l.lookAlikes(names)
}

// lookAlikes warns about scope names equal but for case, or one edit
// apart (orders:read and order:read). Without a catalog they are likely
// misspellings; inside one, twins two teams declared. Names linked by
// replacement or implies (orders:v1 → orders:v2) are meant to be related.
func (l *linter) lookAlikes(names []scopeUse) {
	related := map[[2]string]bool{}
	for _, s := range l.pol.CatalogScopes() {
		for _, t := range append(slices.Clone(s.Implies), s.Replacement) {
			if t != "" {
				related[[2]string{s.Name, t}], related[[2]string{t, s.Name}] = true, true
			}
		}
	}
	catalog := l.pol.HasScopeCatalog()
	for i, a := range names {
		for _, b := range names[:i] {
			if a.name == b.name || related[[2]string{a.name, b.name}] {
				continue
			}
			if !strings.EqualFold(a.name, b.name) && !(len(a.name) >= 6 && len(b.name) >= 6 && suggest.Distance(a.name, b.name) == 1) {
				continue
			}
			if !catalog {
				l.warnf(a.line, a.field, "scope %q looks like a misspelling of %q (line %d)", a.name, b.name, b.line)
				continue
			}
			how := "differ by one character"
			if strings.EqualFold(a.name, b.name) {
				how = "differ only in case"
			}
			l.warnf(a.line, a.field, "catalog scopes %q and %q (line %d) %s: clients and teams will confuse them; if they are one scope, keep one and mark the other deprecated with replacement, else rename one so the two are told apart", a.name, b.name, b.line, how)
		}
	}
}

// segmentOverlap warns about segments that overlap through implies: a
// scope of one segment implying a scope of another means a grant of the
// first also grants part of the second.
func (l *linter) segmentOverlap() {
	for i, s := range l.pol.CatalogScopes() {
		if s.Segment == "" || s.Status == "retired" {
			continue
		}
		for _, t := range s.Implies {
			seg := l.pol.SegmentOf(t)
			if seg != "" && seg != s.Segment {
				l.warnf(l.li.Line("scopes", i, "implies"), fmt.Sprintf("scopes[%d].implies", i), "segments %s and %s overlap: %s (segment %s) implies %s (segment %s), so holding %s grants part of %s; move one of the scopes, or drop the implication", s.Segment, seg, s.Name, s.Segment, t, seg, s.Segment, seg)
			}
		}
	}
}

func (l *linter) shadowed() {
	for _, rep := range shadowedRoutes(l.pol) {
		r := rep.route
		field := fmt.Sprintf("routes[%d]", r.Index)
		if r.Shadow && !rep.all {
			obs := slices.Clone(rep.observes)
			slices.Sort(obs)
			l.observers = append(l.observers, Observer{Route: r.Name, Line: r.Line, Observes: obs})
		}
		if r.Shadow && len(rep.methods) == 0 && !rep.all {
			continue
		}
		if rep.all && r.Shadow {
			l.errorf(r.Line, field, "shadow route %q can never observe a request: even with the shadow routes enforced, every request its path and methods match is decided by a more specific route; remove it or change its path", r.Name)
			continue
		}
		if rep.all {
			l.errorf(r.Line, field, "route %q can never match: every request its path and methods match is decided by a more specific route; remove it or change its path", r.Name)
			continue
		}
		l.errorf(r.Line, field+".match.methods", "route %q never decides %s: more specific routes decide every such request; remove %s from its methods", r.Name, strings.Join(rep.methods, ", "), strings.Join(rep.methods, ", "))
	}
}

func parseDate(s string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// grants reports grants that expired or expire soon.
func (l *linter) grants() {
	now := l.opts.Now
	for i, c := range l.pf.Clients {
		for j, g := range c.Grants {
			if g.ExpiresAt == "" {
				continue
			}
			t, ok := parseDate(g.ExpiresAt)
			if !ok {
				continue
			}
			what := "scope " + g.Scope
			if g.Segment != "" {
				what = "segment " + g.Segment
			}
			line := l.li.Line("clients", i, "grants", j, "expires_at")
			field := fmt.Sprintf("clients[%d].grants[%d].expires_at", i, j)
			switch {
			case !now.Before(t):
				l.warnf(line, field, "the grant of %s to client %q expired on %s and no longer counts; remove it, or renew it with a new approval", what, c.ClientID, g.ExpiresAt)
			case l.opts.ExpiryWarning > 0 && t.Sub(now) <= l.opts.ExpiryWarning:
				days := int(math.Ceil(t.Sub(now).Hours() / 24))
				l.warnf(line, field, "the grant of %s to client %q expires on %s (within %d days); renew it or plan its end", what, c.ClientID, g.ExpiresAt, days)
			}
		}
	}
}

// sunsets reports deprecated scopes past their sunset: an error while a
// route still requires one, a warning while a client is still granted one.
func (l *linter) sunsets() {
	now := l.opts.Now
	for i, s := range l.pol.CatalogScopes() {
		if s.Status != "deprecated" || s.Sunset.IsZero() || now.Before(s.Sunset) {
			continue
		}
		date := s.Sunset.Format(time.DateOnly)
		repl := ""
		if s.Replacement != "" {
			repl = " (its replacement is " + s.Replacement + ")"
		}
		required := false
		for _, r := range l.pol.Routes {
			if slices.Contains(r.AllOf, s.Name) || slices.Contains(r.AnyOf, s.Name) {
				required = true
				l.errorf(r.Line, fmt.Sprintf("routes[%d].require", r.Index), "route %q still requires %q, deprecated with a sunset on %s that has passed%s; require the replacement", r.Name, s.Name, date, repl)
			}
		}
		granted := false
		for j, c := range l.pf.Clients {
			for k, g := range c.Grants {
				if g.Scope == s.Name {
					granted = true
					l.warnf(l.li.Line("clients", j, "grants", k), fmt.Sprintf("clients[%d].grants[%d]", j, k), "client %q is still granted %q, whose sunset (%s) has passed%s", c.ClientID, s.Name, date, repl)
				}
			}
		}
		if !required && !granted {
			l.warnf(l.li.Line("scopes", i, "status"), fmt.Sprintf("scopes[%d].status", i), "scope %q passed its sunset (%s); retire it (status: retired)", s.Name, date)
		}
	}
}
