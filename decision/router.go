package decision

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Route matching.
//
// A route's path template is a sequence of segments separated by '/':
//
//   - a literal segment ("orders") matches exactly that segment (ignoring
//     ASCII case when paths.case_insensitive is set);
//   - a {name} segment matches exactly one non-empty segment, whatever it is;
//   - a {name...} segment, allowed only as the last one, matches one or more
//     remaining segments; its value is the rest of the path without the
//     leading '/' ("users/7"). It never matches zero segments: /admin does
//     not match /admin/{rest...}.
//
// The template "/" matches only the root path. A trailing '/' on the request
// path is ignored: /orders/1/ matches /orders/{id} with id "1".
//
// Specificity: when several routes match a path, the most specific one wins.
// Paths are compared segment by segment from the left, and at the first
// segment where two routes differ, a literal segment beats {param}, which
// beats {rest...}. The first route in that order whose path AND method both
// match the request is chosen. For example, with the routes
//
//	/admin/users      [GET]
//	/admin/{rest...}  [GET, POST, DELETE]
//
// GET /admin/users matches the first route and DELETE /admin/users the
// second. Only when no route matches both path and method is the request
// denied: method_not_allowed if some route matched the path, no_route if
// none did. Two routes with the same shape (the same sequence of literal,
// {param} and {rest...} segments, whatever the parameter names) that allow a
// common method are rejected when the policy loads, so the winner never
// depends on the order of routes in the file.

// segKind is the kind of one template segment.
type segKind uint8

const (
	segLiteral segKind = iota
	segParam
	segRest
)

// tplSeg is one segment of a parsed path template: a literal (text is the
// segment) or a parameter (text is its name).
type tplSeg struct {
	kind segKind
	text string
}

// parseTemplate parses a route's path template into its segments and the
// names of its parameters, in order, canonicalizing literal segments as if
// paths.allow_semicolon were set (for callers that only check a template
// or want its parameters). Its errors say how to fix the template.
func parseTemplate(tpl string) (segs []tplSeg, paramNames []string, err error) {
	return parseTemplateOpts(tpl, true)
}

// parseTemplateOpts is parseTemplate with the policy's allow_semicolon.
// Each literal segment is stored in the canonical form request paths are
// normalized to (see path.go), so "/users/%40me" and "/users/@me" are one
// route, as they are one resource to an upstream that decodes the path.
func parseTemplateOpts(tpl string, allowSemi bool) (segs []tplSeg, paramNames []string, err error) {
	switch {
	case tpl == "":
		return nil, nil, errors.New(`the path template is empty; write a path such as "/orders/{id}"`)
	case tpl[0] != '/':
		return nil, nil, errors.New(`the path template must start with '/', e.g. "/orders/{id}"`)
	case len(tpl) > maxPathBytes:
		return nil, nil, errors.New("the path template is longer than 8192 bytes, the longest request path that is accepted")
	case strings.ContainsAny(tpl, "?#"):
		return nil, nil, errors.New("the path template must not contain '?' or '#': routes match the path only, without query or fragment")
	case tpl == "/":
		return nil, nil, nil
	case tpl[len(tpl)-1] == '/':
		return nil, nil, fmt.Errorf("remove the trailing '/' (write %q): a request path matches a template with or without a trailing '/'", strings.TrimRight(tpl, "/"))
	}
	for s := range strings.SplitSeq(tpl[1:], "/") {
		if len(segs) > 0 && segs[len(segs)-1].kind == segRest {
			last := segs[len(segs)-1].text
			return nil, nil, fmt.Errorf(`"{%s...}" must be the last segment of the template; use "{%s}" for a single segment`, last, last)
		}
		if s == "" {
			return nil, nil, errors.New(`the path template has an empty segment ("//"); remove the extra '/'`)
		}
		if s[0] == '{' && s[len(s)-1] == '}' {
			name, kind := s[1:len(s)-1], segParam
			if n, ok := strings.CutSuffix(name, "..."); ok {
				name, kind = n, segRest
			}
			if !validParamName(name) {
				return nil, nil, fmt.Errorf("parameter name %q in segment %q is invalid: use letters, digits and '_', not starting with a digit, e.g. {order_id}", name, s)
			}
			for _, n := range paramNames {
				if n == name {
					return nil, nil, fmt.Errorf("parameter name %q is used twice; give each parameter its own name", name)
				}
			}
			if len(paramNames) == MaxParams {
				return nil, nil, fmt.Errorf("the path template has more than %d parameters; use a final {rest...} segment for the remainder", MaxParams)
			}
			paramNames = append(paramNames, name)
			segs = append(segs, tplSeg{kind: kind, text: name})
			continue
		}
		if strings.ContainsAny(s, "{}") {
			return nil, nil, fmt.Errorf(`segment %q mixes text and braces: a parameter must be a whole segment, like "{id}"`, s)
		}
		// The literal is kept in the canonical form request paths are
		// normalized to, so that it matches every spelling of itself. The
		// "/_/" prefix keeps a ".." from climbing above the root, so it is
		// reported as a dot segment.
		norm, detail, ok := normalizePath("/_/"+s, &PathSpec{AllowSemicolon: allowSemi})
		switch {
		case !ok && detail == pathMsgSemicolon:
			return nil, nil, fmt.Errorf("segment %q contains ';', which request paths may not contain while paths.allow_semicolon is off; write it as %q or set paths.allow_semicolon", s, strings.ReplaceAll(s, ";", "%3B"))
		case !ok:
			return nil, nil, fmt.Errorf("segment %q: %s", s, detail)
		case norm == "/_/" || norm == "/":
			return nil, nil, fmt.Errorf("segment %q is a dot segment, which a normalized request path never contains; remove it", s)
		}
		segs = append(segs, tplSeg{kind: segLiteral, text: norm[3:]})
	}
	return segs, paramNames, nil
}

// validParamName reports whether name matches [A-Za-z_][A-Za-z0-9_]*.
func validParamName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// router is the compiled route table: a trie over template segments. Each
// node holds the routes whose template ends there, so routes in one node
// have the same shape.
type router struct {
	root node
	fold bool // literals are stored lower-cased and compared ignoring ASCII case
}

// smallLits is the most literal children a node keeps in a slice, scanned
// linearly; more go in a map.
const smallLits = 8

// foldBufLen bounds the segments a case-insensitive lookup lower-cases on
// the stack for a map lookup; longer segments are compared against the
// node's long literals one by one.
const foldBufLen = 64

// litChild is a literal edge of the trie; key is lower-cased in
// case-insensitive mode.
type litChild struct {
	key  string
	node *node
}

// node is one trie node: the routes whose template ends after the segments
// that lead to it, and its children for the next segment.
type node struct {
	lits   []litChild       // literal children, when at most smallLits
	litMap map[string]*node // literal children, when more
	long   []litChild       // fold mode: the map's keys longer than foldBufLen
	param  *node
	rest   *node
	routes []*Route // routes whose template ends here, in file order
	// allow is the method_not_allowed detail of a path that ends here:
	// the methods its routes allow, prebuilt so the deny allocates nothing.
	allow string
}

// newRouter builds the route table, parsing each route's template and
// setting its ParamNames. Routes whose template is invalid are left out and
// reported; so are routes that could match the same request as an earlier
// route. Problems carry Field and Line, not File. opts may be nil.
func newRouter(routes []*Route, opts *PathSpec) (*router, []Problem) {
	rt := &router{fold: opts != nil && opts.CaseInsensitive}
	allowSemi := opts != nil && opts.AllowSemicolon
	var probs []Problem
	build := map[*node]map[string]*node{}
	for _, r := range routes {
		if r == nil {
			continue
		}
		field := indexed("routes", r.Index) + ".match.path"
		segs, names, err := parseTemplateOpts(r.Template, allowSemi)
		if err != nil {
			probs = append(probs, Problem{Line: r.Line, Field: field, Message: fmt.Sprintf("invalid path template %q: %v", r.Template, err)})
			continue
		}
		r.ParamNames = names
		n := &rt.root
		for _, s := range segs {
			switch s.kind {
			case segLiteral:
				key := s.text
				if rt.fold {
					key = lowerASCII(key)
				}
				m := build[n]
				if m == nil {
					m = map[string]*node{}
					build[n] = m
				}
				c := m[key]
				if c == nil {
					c = &node{}
					m[key] = c
				}
				n = c
			case segParam:
				if n.param == nil {
					n.param = &node{}
				}
				n = n.param
			case segRest:
				if n.rest == nil {
					n.rest = &node{}
				}
				n = n.rest
			}
		}
		if other, method := methodOverlap(n.routes, r); other != nil {
			probs = append(probs, Problem{Line: r.Line, Field: field, Message: fmt.Sprintf(
				"routes %s and %s can match the same request: paths %q and %q have the same shape and both allow %s; give them different paths or disjoint methods",
				routeLabel(other), routeLabel(r), other.Template, r.Template, method)})
			continue
		}
		n.routes = append(n.routes, r)
		n.allow = allowDetail(methodsOf(n.routes))
	}
	for n, m := range build {
		if len(m) <= smallLits {
			for k, c := range m {
				n.lits = append(n.lits, litChild{k, c})
			}
			continue
		}
		n.litMap = m
		if rt.fold {
			for k, c := range m {
				if len(k) > foldBufLen {
					n.long = append(n.long, litChild{k, c})
				}
			}
		}
	}
	return rt, probs
}

// methodOverlap returns the first route of rs whose methods overlap r's, and
// a description of a method both allow.
func methodOverlap(rs []*Route, r *Route) (*Route, string) {
	for _, o := range rs {
		switch {
		case len(o.Methods) == 0 && len(r.Methods) == 0:
			return o, "every method"
		case len(o.Methods) == 0:
			return o, r.Methods[0]
		case len(r.Methods) == 0:
			return o, o.Methods[0]
		}
		for _, a := range o.Methods {
			for _, b := range r.Methods {
				if a == b {
					return o, a
				}
			}
		}
	}
	return nil, ""
}

func routeLabel(r *Route) string {
	if r.Name != "" {
		return fmt.Sprintf("%q", r.Name)
	}
	return indexed("routes", r.Index)
}

// match returns the route that decides a request for method on the
// normalized path, and fills p with its parameter values (substrings of
// path). pathMatched reports whether some route matched the path, whatever
// its methods; it is true whenever r is not nil. See the specificity rule
// above. It allocates nothing.
func (rt *router) match(method, path string, p *Params) (r *Route, pathMatched bool) {
	p.reset()
	if rt == nil || path == "" || path[0] != '/' {
		return nil, false
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	r = rt.walk(&rt.root, method, path, 1, p, &pathMatched)
	if r == nil {
		p.reset()
	}
	return r, pathMatched
}

// walk matches path[i:] (the segments after the ones n was reached by)
// depth-first: the literal child first, then the {param} child, then the
// {rest...} child, backtracking when a branch finds no route for the method.
// Each trie node is visited at most once, so a match costs at most the size
// of the trie and usually one node per segment.
func (rt *router) walk(n *node, method, path string, i int, p *Params, matched *bool) *Route {
	if i >= len(path) {
		return n.pick(method, matched)
	}
	j := strings.IndexByte(path[i:], '/')
	if j < 0 {
		j = len(path)
	} else {
		j += i
	}
	seg, next := path[i:j], j+1
	if seg != "" {
		if c := n.lit(seg, rt.fold); c != nil {
			if r := rt.walk(c, method, path, next, p, matched); r != nil {
				return r
			}
		}
		if n.param != nil && p.push(seg) {
			if r := rt.walk(n.param, method, path, next, p, matched); r != nil {
				return r
			}
			p.pop()
		}
	}
	if n.rest != nil && p.push(path[i:]) {
		if r := n.rest.pick(method, matched); r != nil {
			return r
		}
		p.pop()
	}
	return nil
}

// pick returns the first route ending at n that allows method.
func (n *node) pick(method string, matched *bool) *Route {
	if len(n.routes) == 0 {
		return nil
	}
	*matched = true
	for _, r := range n.routes {
		if len(r.Methods) == 0 {
			return r
		}
		for _, m := range r.Methods {
			if m == method {
				return r
			}
		}
	}
	return nil
}

// lit returns the literal child of n for seg, or nil.
func (n *node) lit(seg string, fold bool) *node {
	if n.litMap == nil {
		for _, c := range n.lits {
			if c.key == seg || fold && equalFoldLower(c.key, seg) {
				return c.node
			}
		}
		return nil
	}
	if !fold || !hasUpperASCII(seg) {
		return n.litMap[seg]
	}
	if len(seg) <= foldBufLen {
		var buf [foldBufLen]byte
		b := buf[:len(seg)]
		for i := 0; i < len(seg); i++ {
			b[i] = toLowerASCII(seg[i])
		}
		return n.litMap[string(b)]
	}
	for _, c := range n.long {
		if equalFoldLower(c.key, seg) {
			return c.node
		}
	}
	return nil
}

func toLowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// lowerASCII lower-cases the ASCII letters of s only: bytes >= 0x80 (UTF-8)
// and percent-escapes' meaning are left alone.
func lowerASCII(s string) string {
	if !hasUpperASCII(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		b[i] = toLowerASCII(c)
	}
	return string(b)
}

// equalFoldLower reports whether s equals lower (which has no upper-case
// ASCII letters) ignoring ASCII case.
func equalFoldLower(lower, s string) bool {
	if len(lower) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower[i] != toLowerASCII(s[i]) {
			return false
		}
	}
	return true
}

// methodsOf is the union of rs's methods, sorted; nil when one of them
// allows every method.
func methodsOf(rs []*Route) []string {
	var out []string
	for _, r := range rs {
		if len(r.Methods) == 0 {
			return nil
		}
		for _, m := range r.Methods {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	slices.Sort(out)
	return out
}

func allowDetail(methods []string) string {
	if len(methods) == 0 {
		return ""
	}
	return "a route matches the path but not the method; the path allows " + strings.Join(methods, ", ")
}

// allowedDetail is the method_not_allowed detail for the normalized path:
// the methods of the routes whose templates match it. One matching
// template (the usual case) costs no allocation.
func (rt *router) allowedDetail(path string) string {
	if rt == nil || path == "" || path[0] != '/' {
		return ""
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	var first *node
	var more []*Route
	var p Params
	rt.visit(&rt.root, path, 1, &p, func(n *node) {
		if first == nil {
			first = n
			return
		}
		if more == nil {
			more = append(more, first.routes...)
		}
		more = append(more, n.routes...)
	})
	switch {
	case first == nil:
		return ""
	case more == nil:
		return first.allow
	}
	return allowDetail(methodsOf(more))
}

// visit calls fn for every node with routes whose template matches
// path[i:], in the order walk tries them.
func (rt *router) visit(n *node, path string, i int, p *Params, fn func(*node)) {
	if i >= len(path) {
		if len(n.routes) > 0 {
			fn(n)
		}
		return
	}
	j := strings.IndexByte(path[i:], '/')
	if j < 0 {
		j = len(path)
	} else {
		j += i
	}
	seg, next := path[i:j], j+1
	if seg != "" {
		if c := n.lit(seg, rt.fold); c != nil {
			rt.visit(c, path, next, p, fn)
		}
		if n.param != nil && p.push(seg) {
			rt.visit(n.param, path, next, p, fn)
			p.pop()
		}
	}
	if n.rest != nil && len(n.rest.routes) > 0 {
		fn(n.rest)
	}
}
