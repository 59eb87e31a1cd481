package policytest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
)

// matrixSubject is the subject of matrix tokens whose matrix.token sets
// none; without owners data it owns every resource.
const matrixSubject = "matrix-user"

// matrixClient is the client_id of matrix tokens when neither
// matrix.token nor the registered clients supply one.
const matrixClient = "matrix-client"

// noScope labels the matrix column of a token without any scope.
const noScope = "(no scope)"

// MatrixScopes returns the scopes a matrix tries by default: the catalog
// in declaration order, or, without a catalog, every scope a route names
// in the order routes name them.
func MatrixScopes(pol *decision.Policy) []string {
	var out []string
	if pol.HasScopeCatalog() {
		for _, s := range pol.CatalogScopes() {
			out = append(out, s.Name)
		}
		return out
	}
	for _, r := range pol.Routes {
		for _, s := range append(slices.Clone(r.AllOf), r.AnyOf...) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Held returns the scopes a token carrying only scope holds for pol: the
// scope and everything it implies, without retired scopes (which grant
// nothing). An empty scope holds nothing.
func Held(pol *decision.Policy, scope string) map[string]bool {
	held := map[string]bool{}
	if scope == "" {
		return held
	}
	info, inCatalog := pol.ScopeInfo(scope)
	if inCatalog && info.Status == "retired" {
		return held
	}
	held[scope] = true
	for _, s := range info.Implies {
		if si, ok := pol.ScopeInfo(s); ok && si.Status == "retired" {
			continue
		}
		held[s] = true
	}
	return held
}

// Satisfies reports whether a token holding held meets route's scope
// requirement (all of all_of, and one of any_of when it is not empty).
func Satisfies(route *decision.Route, held map[string]bool) bool {
	for _, s := range route.AllOf {
		if !held[s] {
			return false
		}
	}
	if len(route.AnyOf) == 0 {
		return true
	}
	for _, s := range route.AnyOf {
		if held[s] {
			return true
		}
	}
	return false
}

// ExpectedFor is what a token carrying only scope (none for "") gets from
// route's scope check: allowed, or denied with insufficient_scope, or with
// scope_retired when the scope is retired but would otherwise satisfy the
// route.
func ExpectedFor(pol *decision.Policy, route *decision.Route, scope string) (allow bool, reason decision.Code) {
	if Satisfies(route, Held(pol, scope)) {
		return true, decision.OK
	}
	if info, ok := pol.ScopeInfo(scope); ok && info.Status == "retired" {
		all := map[string]bool{scope: true}
		for _, s := range info.Implies {
			all[s] = true
		}
		if Satisfies(route, all) {
			return false, decision.ScopeRetired
		}
	}
	return false, decision.InsufficientScope
}

// ExamplePath fills route's template with params (by name; default
// "example") and checks that the compiled route table sends method on that
// path to route, trying other values when a more specific route would win.
func ExamplePath(pol *decision.Policy, route *decision.Route, method string, params map[string]string) (string, error) {
	base := func(name string) string {
		if v, ok := params[name]; ok && v != "" {
			return v
		}
		return "example"
	}
	var segs []string
	if route.Template != "/" {
		segs = strings.Split(strings.TrimPrefix(route.Template, "/"), "/")
	}
	for attempt := range 10 {
		var b strings.Builder
		for _, seg := range segs {
			b.WriteByte('/')
			if len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' {
				name := strings.TrimSuffix(seg[1:len(seg)-1], "...")
				v := base(name)
				if _, fixed := params[name]; attempt > 0 && !fixed {
					v = fmt.Sprintf("%s-%d", v, attempt)
				}
				b.WriteString(v)
				continue
			}
			b.WriteString(seg)
		}
		path := b.String()
		if path == "" {
			path = "/"
		}
		if got, _ := pol.MatchRoute(method, path); got == route {
			return path, nil
		}
		if len(route.ParamNames) == 0 {
			break
		}
	}
	return "", fmt.Errorf("no path built from %s %s reaches route %s (a more specific route wins); set matrix.params to values that reach it", method, route.Template, route.Name)
}

// GrantedClient returns the first registered client that holds an active
// grant of scope at t (for "", the first registered client), or "" when
// none does. Generated tokens name it so that drift detection does not
// decide in the scope's place.
func GrantedClient(pol *decision.Policy, scope string, t time.Time) string {
	if pol.File == nil {
		return ""
	}
	for _, cl := range pol.File.Clients {
		held, _ := pol.ClientScopes(cl.ClientID, t)
		if scope == "" || slices.Contains(held, scope) {
			return cl.ClientID
		}
	}
	return ""
}

// matrixCases generates the cases of f's matrix, and failed results for
// what cannot be generated.
func (r *Runner) matrixCases(f *File) ([]Case, []Result) {
	m := f.Matrix
	pol := r.pol
	var cases []Case
	var errs []Result
	fail := func(name, msg string) {
		errs = append(errs, Result{File: f.Path, Line: m.line, Name: name, Matrix: true, Error: msg})
	}
	for _, name := range m.Routes {
		if !slices.ContainsFunc(pol.Routes, func(rt *decision.Route) bool { return rt.Name == name }) {
			fail("matrix.routes", fmt.Sprintf("route %q is not in the policy", name))
		}
	}
	scopes := m.Scopes
	if len(scopes) == 0 {
		scopes = MatrixScopes(pol)
	}
	scopes = append([]string{""}, scopes...)
	tmpl := TokenSpec{}
	if m.Token != nil {
		tmpl = *m.Token
	}
	if tmpl.Sub == "" {
		tmpl.Sub = matrixSubject
	}
	owners := m.Owners
	now := r.defaultNow()
	switch {
	case m.Now != "":
		now, _ = parseNow(m.Now)
	case !f.now.IsZero():
		now = f.now
	}
	// Without a client_id, each scope's token names a registered client
	// granted that scope, so that drift detection does not decide.
	clientFor := func(scope string) string {
		if tmpl.ClientID != "" {
			return tmpl.ClientID
		}
		if c := GrantedClient(pol, scope, now); c != "" {
			return c
		}
		return matrixClient
	}
	for _, route := range pol.Routes {
		// Shadow routes answer nothing, so there is no enforced answer to
		// expect of them; cases of their own cover them.
		if route.Public || route.IsSMART() || route.Shadow {
			continue
		}
		if len(m.Routes) > 0 && !slices.Contains(m.Routes, route.Name) {
			continue
		}
		methods := route.Methods
		if len(methods) == 0 {
			methods = []string{"GET"}
		}
		for _, method := range methods {
			path, err := ExamplePath(pol, route, method, m.Params)
			if err != nil {
				fail("matrix: "+route.Name, err.Error())
				continue
			}
			for _, s := range scopes {
				tok := tmpl
				tok.Scope = nil
				tok.ClientID = clientFor(s)
				label := noScope
				if s != "" {
					tok.Scope = StringList{s}
					label = s
				}
				allow, reason := ExpectedFor(pol, route, s)
				c := Case{
					Name:    fmt.Sprintf("matrix: %s %s (%s) with %s", method, path, route.Name, label),
					Request: m.Request,
					Token:   &tok,
					Now:     m.Now,
					Owners:  owners,
					Expect:  Expect{Allow: &allow, Reason: reason.String(), Route: route.Name},
					Line:    m.line,

					matrixRoute: route.Name,
					matrixScope: s,
				}
				c.Request.Method, c.Request.Path = method, path
				c.now = now
				if owners == nil {
					c.AllOwnedBy = tok.Sub
				}
				cases = append(cases, c)
			}
		}
	}
	return cases, errs
}
