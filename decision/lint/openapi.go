package lint

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"

	pyaml "github.com/pb33f/go-yaml"
	"github.com/pb33f/libopenapi/datamodel"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	lowbase "github.com/pb33f/libopenapi/datamodel/low/base"
	v3low "github.com/pb33f/libopenapi/datamodel/low/v3"
	"github.com/pb33f/libopenapi/index"
	"github.com/pb33f/libopenapi/utils"
	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/internal/yamlpos"
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
//
// The document is read with libopenapi, which resolves $ref: path items,
// operations and security schemes defined under components (or anywhere in
// the document) and referenced from paths are checked like inline ones, at
// the line where they are written. References to other files or URLs are
// not followed (the check reads no file and no network) and are reported.
func CheckOpenAPI(pol *decision.Policy, doc []byte, filename string, opts OpenAPIOptions) []decision.Problem {
	var probs []decision.Problem
	add := func(file string, line int, field, format string, args ...any) {
		probs = append(probs, decision.Problem{File: file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	rd, ok := readOpenAPI(doc, func(line int, field, format string, args ...any) {
		add(filename, line, field, format, args...)
	})
	if !ok {
		return probs
	}
	model, top := rd.model, rd.top

	schemes := map[string]string{} // name → type
	if c := model.Components; c != nil && c.SecuritySchemes != nil {
		for name, sc := range c.SecuritySchemes.FromOldest() {
			if sc != nil {
				schemes[name] = sc.Type
			}
		}
	}
	readSecurity := func(n *pyaml.Node, where string) *security {
		if n == nil {
			return nil
		}
		n = pderef(n)
		sec := &security{}
		if n.Kind != pyaml.SequenceNode {
			add(filename, n.Line, where+".security", "security must be a list of requirement objects, e.g. [{oauth: [orders:read]}]")
			return sec
		}
		for _, req := range n.Content {
			req = pderef(req)
			alt := []string{}
			if req.Kind != pyaml.MappingNode {
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
				for _, s := range pderef(req.Content[i+1]).Content {
					if !slices.Contains(alt, s.Value) {
						alt = append(alt, s.Value)
					}
				}
			}
			sec.alts = append(sec.alts, alt)
		}
		return sec
	}
	global := readSecurity(securityNode(rd.root), "")

	var ops []operation
	if paths := model.Paths; paths != nil && paths.PathItems != nil {
		for p, item := range paths.PathItems.FromOldest() {
			if item == nil {
				continue
			}
			for m, o := range item.GetOperations().FromOldest() {
				if !slices.Contains(openAPIMethods, m) || o == nil {
					continue
				}
				op := operation{method: strings.ToUpper(m), path: p, id: o.OperationId}
				if lo := o.GoLow(); lo != nil {
					if lo.KeyNode != nil {
						op.line = lo.KeyNode.Line
					}
					op.security = readSecurity(securityNode(lo.RootNode), "paths."+p+"."+m)
				}
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

// openAPIDoc is an OpenAPI document read by readOpenAPI.
type openAPIDoc struct {
	model *v3.Document
	root  *pyaml.Node // the library's tree, whose nodes the model's are
	top   *yaml.Node  // the top mapping, for lines
}

// readOpenAPI parses doc and builds its model, reporting through add why
// it cannot.
func readOpenAPI(doc []byte, add func(line int, field, format string, args ...any)) (rd openAPIDoc, ok bool) {
	// The shape and version are checked first, so that the messages (and
	// lines) name the problem in the user's terms rather than the library's.
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil || yamlpos.Deref(&root) == nil {
		msg := "empty document"
		if err != nil {
			msg = strings.TrimPrefix(err.Error(), "yaml: ")
		}
		add(0, "", "cannot read the OpenAPI document: %s", msg)
		return rd, false
	}
	top := yamlpos.Deref(&root)
	if top.Kind != yaml.MappingNode {
		add(top.Line, "", "an OpenAPI document is a mapping with openapi, info and paths")
		return rd, false
	}
	if k, v := yamlpos.Lookup(top, "openapi"); v == nil || !openAPIVersion.MatchString(yamlpos.Deref(v).Value) {
		line := top.Line
		if k != nil {
			line = k.Line
		}
		add(line, "openapi", "only OpenAPI 3.0 and 3.1 documents are supported (openapi: 3.0.3 or 3.1.0)")
		return rd, false
	}

	cfg := datamodel.NewDocumentConfiguration()
	cfg.Logger = slog.New(slog.DiscardHandler) // its errors are returned, and reported below
	cfg.AllowFileReferences, cfg.AllowRemoteReferences = false, false
	// The library's datamodel packages, as its root package's BuildV3Model
	// uses them: the root package also links its diff, overlay and Arazzo
	// tools (3 MB more of the scopegate binary).
	info, err := datamodel.ExtractSpecInfoWithConfig(doc, cfg)
	if err != nil {
		add(0, "", "cannot read the OpenAPI document: %s", err)
		return rd, false
	}
	if info.SpecFormat != datamodel.OAS3 && info.SpecFormat != datamodel.OAS31 && info.SpecFormat != datamodel.OAS32 {
		add(0, "openapi", "only OpenAPI 3.0 and 3.1 documents are supported (openapi: 3.0.3 or 3.1.0)")
		return rd, false
	}
	low, err := v3low.CreateDocumentFromConfig(info, cfg)
	// The schema hash cache is global to the library; the check needs
	// nothing from it once the model is built.
	defer lowbase.SchemaQuickHashMap.Clear()
	// A document the library cannot build (a $ref to nothing, a value of
	// the wrong shape) leaves parts out of the model: report why and check
	// nothing, rather than report what is missing as uncovered.
	type buildErr struct {
		line int
		msg  string
	}
	var errs []buildErr
	lined := false
	for _, e := range utils.UnwrapErrors(err) {
		var re *index.ResolvingError
		if errors.As(e, &re) && re.CircularReference != nil {
			continue // a recursive schema: nothing the check reads
		}
		be := buildErr{msg: e.Error()}
		if re != nil && re.Node != nil {
			be.line = re.Node.Line
		} else if m := errorLine.FindStringSubmatch(be.msg); m != nil {
			be.line, _ = strconv.Atoi(m[1])
		}
		if strings.Contains(be.msg, "reference") || strings.Contains(be.msg, "does not exist") {
			be.msg += "; only references within the document (#/components/...) are followed, not other files or URLs"
		}
		lined = lined || be.line > 0
		errs = append(errs, be)
	}
	for _, be := range errs {
		// The library says some things twice, once without a line.
		if be.line > 0 || !lined {
			add(be.line, "", "cannot read the OpenAPI document: %s", be.msg)
		}
	}
	if len(errs) > 0 {
		return rd, false
	}
	if low == nil || low.Index == nil {
		add(0, "", "cannot read the OpenAPI document")
		return rd, false
	}
	return openAPIDoc{model: v3.NewDocument(low), root: info.RootNode, top: top}, true
}

// openAPIVersion matches the versions the check reads: 3.0.x and 3.1.x
// (3.2 keeps their shape for what the check reads).
var openAPIVersion = regexp.MustCompile(`^3\.[0-2](\.\d+)?$`)

// errorLine finds the line libopenapi names in its error messages.
var errorLine = regexp.MustCompile(`\bline (\d+)`)

// securityNode is the value of the security field of the object whose
// node is n (the document, an operation), or nil. The library leaves a
// malformed value out of its model without an error, so the check reads
// the node itself, to report it.
func securityNode(n *pyaml.Node) *pyaml.Node {
	n = pderef(n)
	if n == nil || n.Kind != pyaml.MappingNode {
		return nil
	}
	_, _, v := utils.FindKeyNodeFullTop("security", n.Content)
	return v
}

// pderef follows aliases and unwraps a document node.
func pderef(n *pyaml.Node) *pyaml.Node {
	for i := 0; n != nil && i < 32; i++ {
		switch {
		case n.Kind == pyaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == pyaml.DocumentNode && len(n.Content) > 0:
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
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
