package lint

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision"
)

// The policy against the API's OpenAPI 3 document.
//
// Each operation (path + method) is sent through the compiled route table
// as a request would be: its path template with every {parameter} replaced
// by a value no route spells as a literal. Then:
//
//   - an operation no route decides is an error: a new endpoint shipped
//     without a scope (a public operation needs a public route);
//   - a route, or a method of a route, that no operation reaches is an
//     error: the policy opens something the API does not have (public
//     routes such as /healthz may be allowed with AllowExtraRoutes);
//   - the scopes the operation's security requirements declare must be
//     those its route requires.
//
// Security requirements map to requirements as OpenAPI defines them: the
// operation's security (else the document's) is a list of alternatives,
// any one of which suffices; within an alternative every scheme and every
// scope listed must hold. Only oauth2 and openIdConnect schemes carry
// scopes; another scheme (http bearer, apiKey) in an alternative asks for
// a credential without scopes. A route's all_of + any_of is the same
// shape: one alternative per any_of scope, each holding all of all_of and
// that scope (just all_of when any_of is empty). The two are compared as
// sets of alternatives after removing alternatives that contain another,
// scope names compared exactly (implications are not applied: the
// document should declare what the policy requires). An operation with
// security: [] or with no security at all, or with an empty alternative
// {} (authentication optional), is public.

// OpenAPIOptions configure CheckOpenAPI.
type OpenAPIOptions struct {
	// AllowExtraRoutes accepts public routes that no operation reaches
	// (health checks, metrics, a catch-all).
	AllowExtraRoutes bool
	// BasePath is prefixed to every OpenAPI path, for APIs served under a
	// prefix the document leaves to servers[].url (e.g. /v1).
	BasePath string
}

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

type operation struct {
	method   string // upper-case
	path     string // OpenAPI template
	id       string
	line     int
	security *security // nil: inherit
}

// security is a list of security requirements: alternatives of scope
// sets, and whether one alternative is the empty object {} (anonymous).
type security struct {
	alts      [][]string
	anonymous bool
}

// CheckOpenAPI compares the compiled policy with the OpenAPI 3.0/3.1
// document doc (YAML or JSON; filename names it in findings).
func CheckOpenAPI(pol *decision.Policy, doc []byte, filename string, opts OpenAPIOptions) []decision.Problem {
	var probs []decision.Problem
	add := func(file string, line int, field, format string, args ...any) {
		probs = append(probs, decision.Problem{File: file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil || len(root.Content) == 0 {
		msg := "empty document"
		if err != nil {
			msg = strings.TrimPrefix(err.Error(), "yaml: ")
		}
		add(filename, 0, "", "cannot read the OpenAPI document: %s", msg)
		return probs
	}
	top := deref(root.Content[0])
	if top.Kind != yaml.MappingNode {
		add(filename, top.Line, "", "an OpenAPI document is a mapping with openapi, info and paths")
		return probs
	}
	if v := get(top, "openapi"); v == nil || !strings.HasPrefix(v.Value, "3.") {
		line := top.Line
		if v != nil {
			line = v.Line
		}
		add(filename, line, "openapi", "only OpenAPI 3.0 and 3.1 documents are supported (openapi: 3.0.3 or 3.1.0)")
		return probs
	}

	schemes := map[string]string{} // name → type
	if comp := get(top, "components"); comp != nil {
		if ss := get(comp, "securitySchemes"); ss != nil && ss.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(ss.Content); i += 2 {
				typ := ""
				if t := get(ss.Content[i+1], "type"); t != nil {
					typ = t.Value
				}
				schemes[ss.Content[i].Value] = typ
			}
		}
	}
	readSecurity := func(n *yaml.Node, where string) *security {
		if n == nil {
			return nil
		}
		n = deref(n)
		sec := &security{}
		if n.Kind != yaml.SequenceNode {
			add(filename, n.Line, where+".security", "security must be a list of requirement objects, e.g. [{oauth: [orders:read]}]")
			return sec
		}
		for _, req := range n.Content {
			req = deref(req)
			alt := []string{}
			if req.Kind != yaml.MappingNode {
				add(filename, req.Line, where+".security", "each security requirement is a mapping of scheme name to scopes")
				continue
			}
			if len(req.Content) == 0 {
				sec.anonymous = true
			}
			for i := 0; i+1 < len(req.Content); i += 2 {
				name := req.Content[i].Value
				typ, ok := schemes[name]
				if !ok {
					add(filename, req.Content[i].Line, where+".security", "security scheme %q is not declared under components.securitySchemes", name)
					continue
				}
				if typ != "oauth2" && typ != "openIdConnect" {
					continue
				}
				for _, s := range deref(req.Content[i+1]).Content {
					if !slices.Contains(alt, s.Value) {
						alt = append(alt, s.Value)
					}
				}
			}
			sec.alts = append(sec.alts, alt)
		}
		return sec
	}
	global := readSecurity(get(top, "security"), "")

	var ops []operation
	if paths := get(top, "paths"); paths != nil && paths.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(paths.Content); i += 2 {
			p, item := paths.Content[i].Value, deref(paths.Content[i+1])
			if item.Kind != yaml.MappingNode {
				continue
			}
			if ref := get(item, "$ref"); ref != nil {
				add(filename, ref.Line, "paths."+p, "path items with $ref are not followed; write the operations inline")
				continue
			}
			for j := 0; j+1 < len(item.Content); j += 2 {
				m := item.Content[j].Value
				if !slices.Contains(openAPIMethods, m) {
					continue
				}
				opNode := deref(item.Content[j+1])
				op := operation{method: strings.ToUpper(m), path: p, line: item.Content[j].Line}
				if id := get(opNode, "operationId"); id != nil {
					op.id = id.Value
				}
				op.security = readSecurity(get(opNode, "security"), "paths."+p+"."+m)
				ops = append(ops, op)
			}
		}
	}
	if len(ops) == 0 {
		add(filename, top.Line, "paths", "the OpenAPI document has no operations")
		return probs
	}

	lits := literalSet(pol)
	type hit struct{ methods map[string]bool }
	hits := map[*decision.Route]*hit{}
	for _, op := range ops {
		sec := op.security
		if sec == nil {
			sec = global
		}
		label := op.method + " " + op.path
		if op.id != "" {
			label += " (" + op.id + ")"
		}
		public := sec == nil || len(sec.alts) == 0 || sec.anonymous
		reqPath := strings.TrimSuffix(opts.BasePath, "/") + fillOpenAPIPath(op.path, lits)
		route, pathMatched := pol.MatchRoute(op.method, reqPath)
		// A shadow route observes the operations it would decide: they
		// count as reached, but its stricter requirement is its purpose,
		// so it is not held to the document's.
		if sh, _ := pol.MatchShadowRoute(op.method, reqPath); sh != nil && sh.Shadow {
			if hits[sh] == nil {
				hits[sh] = &hit{methods: map[string]bool{}}
			}
			hits[sh].methods[op.method] = true
		}
		if route == nil {
			why := "no route matches its path"
			if pathMatched {
				why = "a route matches its path but not the method " + op.method
			}
			fix := "add a route requiring its scopes"
			if public {
				fix = "add a public route (public: true)"
			}
			add(filename, op.line, "", "operation %s is not covered by the policy: %s; %s", label, why, fix)
			continue
		}
		h := hits[route]
		if h == nil {
			h = &hit{methods: map[string]bool{}}
			hits[route] = h
		}
		h.methods[op.method] = true
		switch {
		case route.IsSMART():
			// A SMART route is decided by the token's SMART scopes against
			// the FHIR interaction, not by a fixed requirement.
		case public && !route.Public:
			add(filename, op.line, "", "operation %s is public in the OpenAPI document, but route %q requires %s", label, route.Name, describeAlts(routeAlts(route)))
		case !public && route.Public:
			add(filename, op.line, "", "operation %s requires %s in the OpenAPI document, but route %q is public", label, describeAlts(sec.alts), route.Name)
		case !public:
			want, got := minimize(sec.alts), minimize(routeAlts(route))
			if !sameAlts(want, got) {
				add(filename, op.line, "", "operation %s: the OpenAPI document requires %s, route %q requires %s; make them agree", label, describeAlts(want), route.Name, describeAlts(got))
			}
		}
	}
	for _, r := range pol.Routes {
		if r.Public && opts.AllowExtraRoutes {
			continue
		}
		field := fmt.Sprintf("routes[%d]", r.Index)
		h := hits[r]
		if h == nil {
			hint := ""
			if r.Public {
				hint = " (allow public routes such as health checks with --allow-extra-routes)"
			}
			add(pol.Source, r.Line, field, "route %q (%s) reaches no operation of the OpenAPI document %s: remove it, or document the operation%s", r.Name, r.Template, filename, hint)
			continue
		}
		var missing []string
		for _, m := range r.Methods {
			if !h.methods[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			add(pol.Source, r.Line, field+".match.methods", "route %q allows %s, but no such operation of the OpenAPI document reaches it; remove the method(s) or document the operation(s)", r.Name, strings.Join(missing, ", "))
		}
	}
	return probs
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 32; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

func get(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return deref(n.Content[i+1])
		}
	}
	return nil
}

// literalSet is every literal segment of the policy's templates.
func literalSet(pol *decision.Policy) map[string]bool {
	out := map[string]bool{}
	for _, r := range pol.Routes {
		for _, s := range splitTemplate(r.Template) {
			if !isParam(s) {
				out[strings.ToLower(s)] = true
			}
		}
	}
	return out
}

// fillOpenAPIPath replaces every {param} of an OpenAPI path by a value no
// route spells as a literal.
func fillOpenAPIPath(p string, lits map[string]bool) string {
	v := "openapi-param"
	for n := 0; lits[v]; n++ {
		v = fmt.Sprintf("openapi-param-%d", n)
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			b.WriteString(p)
			break
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			b.WriteString(p)
			break
		}
		b.WriteString(p[:i])
		b.WriteString(v)
		p = p[i+j+1:]
	}
	return b.String()
}

// routeAlts is a route's requirement as alternatives of scope sets.
func routeAlts(r *decision.Route) [][]string {
	if len(r.AnyOf) == 0 {
		return [][]string{slices.Clone(r.AllOf)}
	}
	out := make([][]string, 0, len(r.AnyOf))
	for _, a := range r.AnyOf {
		alt := slices.Clone(r.AllOf)
		if !slices.Contains(alt, a) {
			alt = append(alt, a)
		}
		out = append(out, alt)
	}
	return out
}

// minimize sorts each alternative and the list, and drops alternatives
// that contain another (they add nothing: the smaller one suffices).
func minimize(alts [][]string) [][]string {
	var norm [][]string
	for _, a := range alts {
		a = slices.Clone(a)
		slices.Sort(a)
		a = slices.Compact(a)
		norm = append(norm, a)
	}
	var out [][]string
	for i, a := range norm {
		redundant := false
		for j, b := range norm {
			if i != j && subset(b, a) && (len(b) < len(a) || j < i) {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	return out
}

func subset(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}

func sameAlts(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// describeAlts renders alternatives: "a token (no scope)", "orders:read",
// "orders:read and orders:write", "(a and b) or c".
func describeAlts(alts [][]string) string {
	alts = minimize(alts)
	if len(alts) == 0 {
		return "nothing"
	}
	parts := make([]string, len(alts))
	for i, a := range alts {
		switch {
		case len(a) == 0:
			parts[i] = "a token (no scope)"
		case len(alts) > 1 && len(a) > 1:
			parts[i] = "(" + strings.Join(a, " and ") + ")"
		default:
			parts[i] = strings.Join(a, " and ")
		}
	}
	return strings.Join(parts, " or ")
}
