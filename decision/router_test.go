package decision

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := map[string]struct {
		tpl    string
		shape  string // kinds of the segments: l literal, p param, r rest
		names  []string
		errHas string // a substring of the error, when the template is invalid
	}{
		"root":               {tpl: "/", shape: ""},
		"literal":            {tpl: "/orders", shape: "l"},
		"param":              {tpl: "/orders/{id}", shape: "lp", names: []string{"id"}},
		"params":             {tpl: "/u/{user_id}/o/{Order2}", shape: "lplp", names: []string{"user_id", "Order2"}},
		"rest":               {tpl: "/files/{path...}", shape: "lr", names: []string{"path"}},
		"only rest":          {tpl: "/{all...}", shape: "r", names: []string{"all"}},
		"underscore name":    {tpl: "/{_}", shape: "p", names: []string{"_"}},
		"escape literal":     {tpl: "/caf%C3%A9", shape: "l"},
		"unicode literal":    {tpl: "/caf\u00e9", shape: "l"},
		"semicolon literal":  {tpl: "/a;b", shape: "l"},
		"eight params":       {tpl: "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h...}", shape: "pppppppr", names: []string{"a", "b", "c", "d", "e", "f", "g", "h"}},
		"empty":              {tpl: "", errHas: "empty"},
		"no slash":           {tpl: "orders", errHas: "must start with '/'"},
		"trailing slash":     {tpl: "/orders/", errHas: `remove the trailing '/' (write "/orders")`},
		"double slash":       {tpl: "/a//b", errHas: "empty segment"},
		"query":              {tpl: "/a?b", errHas: "'?' or '#'"},
		"fragment":           {tpl: "/a#b", errHas: "'?' or '#'"},
		"rest not last":      {tpl: "/{rest...}/x", errHas: `"{rest...}" must be the last segment of the template`},
		"two rests":          {tpl: "/{a...}/{b...}", errHas: `"{a...}" must be the last segment`},
		"mixed braces":       {tpl: "/order-{id}", errHas: "a parameter must be a whole segment"},
		"unclosed brace":     {tpl: "/{id", errHas: "a parameter must be a whole segment"},
		"empty name":         {tpl: "/{}", errHas: `parameter name ""`},
		"empty rest name":    {tpl: "/{...}", errHas: `parameter name ""`},
		"digit first":        {tpl: "/{1id}", errHas: `parameter name "1id" in segment "{1id}" is invalid`},
		"dash in name":       {tpl: "/{order-id}", errHas: "is invalid"},
		"nested braces":      {tpl: "/{{id}}", errHas: "is invalid"},
		"duplicate name":     {tpl: "/{id}/x/{id}", errHas: `parameter name "id" is used twice`},
		"nine params":        {tpl: "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", errHas: "more than 8 parameters"},
		"dot":                {tpl: "/a/./b", errHas: "dot segment"},
		"dotdot":             {tpl: "/a/..", errHas: "dot segment"},
		"encoded slash":      {tpl: "/a%2Fb", errHas: "encoded slash"},
		"backslash":          {tpl: "/a\\b", errHas: "backslash"},
		"space":              {tpl: "/a b", errHas: "space"},
		"lower hex":          {tpl: "/caf%c3%a9", shape: "l"},
		"encoded unreserved": {tpl: "/%7Euser", shape: "l"},
		"encoded reserved":   {tpl: "/users/%40me", shape: "ll"},
		"encoded hash":       {tpl: "/a%23b", shape: "l"},
		"raw hash":           {tpl: "/a#b", errHas: "'?' or '#'"},
		"double escape":      {tpl: "/a%2541", errHas: "decodes twice"},
		"invalid UTF-8":      {tpl: "/a%FF", errHas: "UTF-8"},
		"overlong UTF-8":     {tpl: "/a%C0%AF", errHas: "UTF-8"},
		"raw invalid UTF-8":  {tpl: "/a\xff", errHas: "UTF-8"},
		"encoded NUL":        {tpl: "/a%00", errHas: "NUL"},
		"encoded dot":        {tpl: "/%2E%2E", errHas: "dot segment"},
		"half encoded dot":   {tpl: "/x/.%2e", errHas: "dot segment"},
		"too long":           {tpl: "/" + strings.Repeat("a", maxPathBytes), errHas: "longer than 8192"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			segs, names, err := parseTemplate(tc.tpl)
			if tc.errHas != "" {
				if err == nil {
					t.Fatalf("parseTemplate(%.80q) succeeded, want an error containing %q", tc.tpl, tc.errHas)
				}
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("parseTemplate(%.80q) error %q, want it to contain %q", tc.tpl, err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTemplate(%q): %v", tc.tpl, err)
			}
			if got := shapeOf(segs); got != tc.shape {
				t.Errorf("shape %q, want %q", got, tc.shape)
			}
			if !slices.Equal(names, tc.names) {
				t.Errorf("names %q, want %q", names, tc.names)
			}
		})
	}
}

func shapeOf(segs []tplSeg) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte("lpr"[s.kind])
	}
	return b.String()
}

// testRoute is a route for tests: "NAME METHODS TEMPLATE", METHODS comma-separated
// or "*" for every method.
func testRoute(i int, s string) *Route {
	f := strings.Fields(s)
	r := &Route{Name: f[0], Index: i, Line: 10 + i, Template: f[2]}
	if f[1] != "*" {
		r.Methods = strings.Split(f[1], ",")
	}
	return r
}

func routesOf(specs ...string) []*Route {
	out := make([]*Route, len(specs))
	for i, s := range specs {
		out[i] = testRoute(i, s)
	}
	return out
}

func TestNewRouterProblems(t *testing.T) {
	tests := map[string]struct {
		routes  []string
		opts    *PathSpec
		unnamed bool // clear the routes' names
		// want is one "field|line|message substring" per problem, in order.
		want []string
	}{
		"no problems": {
			routes: []string{"a GET /orders/{id}", "b POST /orders/{id}", "c GET /orders/special", "d * /orders/{id}/{rest...}", "e * /"},
		},
		"invalid template": {
			routes: []string{"a GET /ok", "b GET /x/{rest...}/y"},
			want:   []string{`routes[1].match.path|11|invalid path template "/x/{rest...}/y": "{rest...}" must be the last segment of the template`},
		},
		"same shape same method": {
			routes: []string{"a GET /orders/{id}", "b GET,POST /orders/{oid}"},
			want:   []string{`routes[1].match.path|11|routes "a" and "b" can match the same request: paths "/orders/{id}" and "/orders/{oid}" have the same shape and both allow GET; give them different paths or disjoint methods`},
		},
		"same shape all methods": {
			routes: []string{"a * /files/{p...}", "b * /files/{q...}"},
			want:   []string{`routes[1].match.path|11|routes "a" and "b" can match the same request: paths "/files/{p...}" and "/files/{q...}" have the same shape and both allow every method`},
		},
		"same shape one all methods": {
			routes: []string{"a DELETE /x", "b * /x"},
			want:   []string{`routes[1].match.path|11|both allow DELETE`},
		},
		"identical templates": {
			routes: []string{"a GET /x", "b PUT /y", "c GET,HEAD /x"},
			want:   []string{`routes[2].match.path|12|routes "a" and "c"`},
		},
		"unnamed route": {
			routes:  []string{"a GET /x", "b GET /x"},
			unnamed: true,
			want:    []string{`routes[1].match.path|11|routes routes[0] and routes[1] can match`},
		},
		"case-insensitive duplicates": {
			routes: []string{"a GET /Admin/Users", "b GET /admin/users"},
			opts:   &PathSpec{CaseInsensitive: true},
			want:   []string{`routes[1].match.path|11|routes "a" and "b"`},
		},
		"case-sensitive different": {
			routes: []string{"a GET /Admin/Users", "b GET /admin/users"},
		},
		"different shapes never ambiguous": {
			routes: []string{"a GET /a/{x}", "b GET /a/b", "c GET /a/{r...}", "d GET /{x}/b", "e GET /{r...}"},
		},
		"semicolon without option": {
			routes: []string{"a GET /a;v=1"},
			want:   []string{`routes[0].match.path|10|write it as "a%3Bv=1" or set paths.allow_semicolon`},
		},
		"semicolon with option": {
			routes: []string{"a GET /a;v=1"},
			opts:   &PathSpec{AllowSemicolon: true},
		},
		"several problems": {
			routes: []string{"a GET /x", "b GET x", "c GET /x", "d GET /{1}"},
			want:   []string{"routes[1].match.path|11|must start with '/'", `routes[2].match.path|12|routes "a" and "c"`, `routes[3].match.path|13|parameter name "1"`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			routes := routesOf(tc.routes...)
			if tc.unnamed {
				for _, r := range routes {
					r.Name = ""
				}
			}
			_, probs := newRouter(routes, tc.opts)
			if len(probs) != len(tc.want) {
				t.Fatalf("got %d problems %v, want %d", len(probs), probs, len(tc.want))
			}
			for i, w := range tc.want {
				parts := strings.SplitN(w, "|", 3)
				p := probs[i]
				if p.Field != parts[0] || fmt.Sprint(p.Line) != parts[1] || !strings.Contains(p.Message, parts[2]) || p.File != "" || p.Warning {
					t.Errorf("problem %d = %+v, want field %s, line %s, message containing %q", i, p, parts[0], parts[1], parts[2])
				}
			}
		})
	}
}

// newRouter sets each valid route's ParamNames.
func TestNewRouterSetsParamNames(t *testing.T) {
	routes := routesOf("a GET /u/{user}/f/{path...}", "b GET /", "c GET /{bad")
	routes[2].ParamNames = []string{"stale"}
	if _, probs := newRouter(routes, nil); len(probs) != 1 {
		t.Fatalf("problems: %v", probs)
	}
	if !slices.Equal(routes[0].ParamNames, []string{"user", "path"}) {
		t.Errorf("ParamNames = %q", routes[0].ParamNames)
	}
	if len(routes[1].ParamNames) != 0 {
		t.Errorf("root ParamNames = %q", routes[1].ParamNames)
	}
	if !slices.Equal(routes[2].ParamNames, []string{"stale"}) {
		t.Errorf("an invalid route's ParamNames were changed to %q", routes[2].ParamNames)
	}
}

var matchRoutes = []string{
	"root GET /",
	"orders GET /orders",
	"order GET,PUT /orders/{id}",
	"order-special GET /orders/special",
	"order-item GET /orders/{id}/x",
	"order-files GET /orders/{id}/files/{path...}",
	"admin-users GET /admin/users",
	"admin-any GET,POST,DELETE /admin/{rest...}",
	"user-post GET /users/{user}/posts/{post}",
	"user-me GET /users/me/profile",
	"all-v2 * /v2/{all...}",
	"caf GET /caf%C3%A9",
	"semi GET /a%3Bb",
	"user GET /users/{id}",
	"user-at-me GET /users/%40me",
}

func TestRouterMatch(t *testing.T) {
	tests := map[string]struct {
		method, path string
		want         string // route name; "" for no match
		pathMatched  bool   // when want is ""
		params       []string
	}{
		"root":                        {method: "GET", path: "/", want: "root"},
		"root wrong method":           {method: "POST", path: "/", pathMatched: true},
		"literal":                     {method: "GET", path: "/orders", want: "orders"},
		"literal trailing slash":      {method: "GET", path: "/orders/", want: "orders"},
		"param":                       {method: "GET", path: "/orders/17", want: "order", params: []string{"17"}},
		"param second method":         {method: "PUT", path: "/orders/17", want: "order", params: []string{"17"}},
		"param trailing slash":        {method: "GET", path: "/orders/1/", want: "order", params: []string{"1"}},
		"literal beats param":         {method: "GET", path: "/orders/special", want: "order-special"},
		"literal method falls back":   {method: "PUT", path: "/orders/special", want: "order", params: []string{"special"}},
		"backtrack to param":          {method: "GET", path: "/orders/special/x", want: "order-item", params: []string{"special"}},
		"rest one segment":            {method: "GET", path: "/orders/9/files/a", want: "order-files", params: []string{"9", "a"}},
		"rest many segments":          {method: "GET", path: "/orders/9/files/a/b/c", want: "order-files", params: []string{"9", "a/b/c"}},
		"rest trailing slash":         {method: "GET", path: "/orders/9/files/a/b/", want: "order-files", params: []string{"9", "a/b"}},
		"rest needs a segment":        {method: "GET", path: "/orders/9/files", want: ""},
		"rest needs a segment slash":  {method: "GET", path: "/orders/9/files/", want: ""},
		"method not allowed":          {method: "DELETE", path: "/orders/17", pathMatched: true},
		"method not allowed backtrk":  {method: "POST", path: "/orders/special/x", pathMatched: true},
		"no route":                    {method: "GET", path: "/nothing", want: ""},
		"no route deeper":             {method: "GET", path: "/orders/1/2", want: ""},
		"literal beats rest":          {method: "GET", path: "/admin/users", want: "admin-users"},
		"rest takes other methods":    {method: "DELETE", path: "/admin/users", want: "admin-any", params: []string{"users"}},
		"rest deeper":                 {method: "POST", path: "/admin/users/7", want: "admin-any", params: []string{"users/7"}},
		"rest no zero segments":       {method: "GET", path: "/admin", want: ""},
		"rest none method":            {method: "PATCH", path: "/admin/users", pathMatched: true},
		"two params":                  {method: "GET", path: "/users/ann/posts/3", want: "user-post", params: []string{"ann", "3"}},
		"literal branch dead end":     {method: "GET", path: "/users/me/posts/3", want: "user-post", params: []string{"me", "3"}},
		"literal branch taken":        {method: "GET", path: "/users/me/profile", want: "user-me"},
		"all methods":                 {method: "BREW", path: "/v2/pot", want: "all-v2", params: []string{"pot"}},
		"method is case-sensitive":    {method: "get", path: "/orders", pathMatched: true},
		"case-sensitive literal":      {method: "GET", path: "/Orders", want: ""},
		"escaped literal":             {method: "GET", path: "/caf\u00e9", want: "caf"},
		"escaped literal other":       {method: "GET", path: "/caf\u00e8", want: ""},
		"reserved escape literal":     {method: "GET", path: "/users/@me", want: "user-at-me"},
		"reserved escape param":       {method: "GET", path: "/users/@you", want: "user", params: []string{"@you"}},
		"escaped semicolon":           {method: "GET", path: "/a%3Bb", want: "semi"},
		"not rooted":                  {method: "GET", path: "orders", want: ""},
		"empty path":                  {method: "GET", path: "", want: ""},
		"param is one segment":        {method: "GET", path: "/orders/1/2/x", want: ""},
		"param value is raw escape":   {method: "GET", path: "/orders/a%20b", want: "order", params: []string{"a%20b"}},
		"unicode param":               {method: "GET", path: "/orders/\u65e5\u672c", want: "order", params: []string{"\u65e5\u672c"}},
		"unnormalized does not panic": {method: "GET", path: "//orders//", want: ""},
	}
	r, probs := newRouter(routesOf(matchRoutes...), nil)
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var p Params
			p.push("stale")
			got, pm := r.match(tc.method, tc.path, &p)
			if tc.want == "" {
				if got != nil {
					t.Fatalf("%s %s matched %q, want no route", tc.method, tc.path, got.Name)
				}
				if pm != tc.pathMatched {
					t.Fatalf("%s %s: pathMatched = %v, want %v", tc.method, tc.path, pm, tc.pathMatched)
				}
				if p.Len() != 0 {
					t.Fatalf("%s %s: %d params left after no match", tc.method, tc.path, p.Len())
				}
				return
			}
			if got == nil {
				t.Fatalf("%s %s: no route (pathMatched %v), want %q", tc.method, tc.path, pm, tc.want)
			}
			if got.Name != tc.want || !pm {
				t.Fatalf("%s %s matched %q (pathMatched %v), want %q", tc.method, tc.path, got.Name, pm, tc.want)
			}
			var params []string
			for i := range p.Len() {
				params = append(params, p.At(i))
			}
			if !slices.Equal(params, tc.params) {
				t.Fatalf("%s %s: params %q, want %q", tc.method, tc.path, params, tc.params)
			}
			if len(got.ParamNames) != p.Len() {
				t.Fatalf("%d param values for names %q", p.Len(), got.ParamNames)
			}
			for i, n := range got.ParamNames {
				if v, ok := p.Get(got, n); !ok || v != params[i] {
					t.Fatalf("Get(%q) = %q, %v", n, v, ok)
				}
			}
		})
	}
}

// Literal children are kept in a slice when few and in a map when many; the
// case-insensitive lookup must work for both, and for long segments.
func TestRouterMatchCaseInsensitive(t *testing.T) {
	long := strings.Repeat("LongSegment", 10)
	for _, many := range []bool{false, true} {
		specs := []string{"users GET /Users/{id}", "me GET /users/ME", "long GET /x/" + long, "esc GET /caf%C3%A9", "uni GET /\u00c9t\u00e9"}
		if many {
			for i := range 20 {
				specs = append(specs, fmt.Sprintf("f%d GET /Filler%d", i, i), fmt.Sprintf("g%d GET /x/Filler%d", i, i))
			}
		}
		r, probs := newRouter(routesOf(specs...), &PathSpec{CaseInsensitive: true})
		if len(probs) > 0 {
			t.Fatalf("problems: %v", probs)
		}
		tests := map[string]struct{ path, want string }{
			"same case":        {"/Users/7", "users"},
			"lower":            {"/users/7", "users"},
			"upper":            {"/USERS/7", "users"},
			"literal child":    {"/uSeRs/me", "me"},
			"literal upper":    {"/USERS/ME", "me"},
			"long lower":       {"/x/" + strings.ToLower(long), "long"},
			"long upper":       {"/X/" + strings.ToUpper(long), "long"},
			"long other":       {"/x/" + strings.ToUpper(long) + "X", ""},
			"escape":           {"/CAF\u00e9", "esc"},
			"escape lower":     {"/caf\u00e9", "esc"},
			"non-ASCII exact":  {"/\u00c9t\u00e9", "uni"},
			"non-ASCII folded": {"/\u00e9t\u00e9", ""},
			"filler":           {"/fILLER3", "f3"},
			"no match":         {"/nope", ""},
		}
		for name, tc := range tests {
			if !many && strings.HasPrefix(name, "filler") {
				continue
			}
			t.Run(fmt.Sprintf("many=%v/%s", many, name), func(t *testing.T) {
				var p Params
				got, _ := r.match("GET", tc.path, &p)
				switch {
				case got == nil && tc.want != "":
					t.Fatalf("%s: no route, want %q", tc.path, tc.want)
				case got != nil && got.Name != tc.want:
					t.Fatalf("%s: matched %q, want %q", tc.path, got.Name, tc.want)
				}
			})
		}
	}
}

// refMatch is a deliberately naive matcher that states the specificity rule
// directly: among the routes whose template matches the path, order by the
// kinds of their segments (literal < param < rest, left to right), then by
// position in the file, and take the first that allows the method.
func refMatch(routes []*Route, fold bool, method, path string) (best *Route, pathMatched bool) {
	if len(path) > 1 && strings.HasSuffix(path, "/") {
		path = path[:len(path)-1]
	}
	var bestShape string
	for _, r := range routes {
		segs, _, err := parseTemplate(r.Template)
		if err != nil || !refPathMatches(segs, fold, path) {
			continue
		}
		pathMatched = true
		if len(r.Methods) > 0 && !slices.Contains(r.Methods, method) {
			continue
		}
		if shape := shapeOf(segs); best == nil || shape < bestShape {
			best, bestShape = r, shape
		}
	}
	return best, pathMatched
}

func refPathMatches(segs []tplSeg, fold bool, path string) bool {
	if path == "/" {
		return len(segs) == 0
	}
	parts := strings.Split(path[1:], "/")
	for i, s := range segs {
		if i >= len(parts) {
			return false
		}
		switch s.kind {
		case segRest:
			return true
		case segParam:
			if parts[i] == "" {
				return false
			}
		case segLiteral:
			if s.text != parts[i] && !(fold && asciiEqualFold(s.text, parts[i])) {
				return false
			}
		}
	}
	return len(parts) == len(segs)
}

// asciiEqualFold is strings.EqualFold restricted to ASCII letters: other
// bytes, including the bytes of non-ASCII UTF-8 characters, must be equal.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x < 0x80 && y < 0x80 {
			if !strings.EqualFold(a[i:i+1], b[i:i+1]) {
				return false
			}
		} else if x != y {
			return false
		}
	}
	return true
}

var fuzzRoutes = []string{
	"r0 GET /",
	"r1 GET /a",
	"r2 GET,PUT /a/{x}",
	"r3 GET /a/b",
	"r4 GET /a/{x}/c",
	"r5 POST /a/b/{y}",
	"r6 * /a/{rest...}",
	"r7 GET /{x}/b/{z}",
	"r8 DELETE /{all...}",
	"r9 GET /A/B/c/{p...}",
	"r10 GET /caf%C3%A9/{x}",
}

func FuzzRouterMatch(f *testing.F) {
	for _, s := range []string{"/", "/a", "/a/b", "/a/b/c", "/a/z/c", "/q/b/r", "/A/b/C/d/e", "/a/b/", "/x//y", "/caf%c3%a9/1", "/a/%2e%2E/b"} {
		for _, m := range []string{"GET", "POST", "DELETE", "PATCH"} {
			f.Add(m, s, "/a/{v}/{w...}", false)
			f.Add(m, s, "/{p}/b", true)
		}
	}
	f.Fuzz(func(t *testing.T, method, rawPath, extraTemplate string, fold bool) {
		routes := routesOf(fuzzRoutes...)
		extra := &Route{Name: "extra", Index: len(routes), Template: extraTemplate, Methods: []string{"GET", "PATCH"}}
		routes = append(routes, extra)
		opts := &PathSpec{CaseInsensitive: fold}
		r, probs := newRouter(routes, opts)
		// The fixed routes are valid and unambiguous; the extra one may be
		// rejected.
		for _, p := range probs {
			if p.Field != fmt.Sprintf("routes[%d].match.path", extra.Index) {
				t.Fatalf("unexpected problem %v", p)
			}
		}
		var accepted []*Route
		for _, rr := range routes {
			if !slices.ContainsFunc(probs, func(p Problem) bool { return p.Field == fmt.Sprintf("routes[%d].match.path", rr.Index) }) {
				accepted = append(accepted, rr)
			}
		}

		var p Params
		r.match(method, rawPath, &p) // any input: no panic

		path, _, ok := normalizePath(rawPath, opts)
		if !ok {
			return
		}
		got, pm := r.match(method, path, &p)
		want, wantPM := refMatch(accepted, fold, method, path)
		if got != want || pm != wantPM {
			t.Fatalf("%s %q: matched %v (pathMatched %v), reference %v (%v)", method, path, routeName(got), pm, routeName(want), wantPM)
		}
		if got == nil {
			if p.Len() != 0 {
				t.Fatalf("params left after no match")
			}
			return
		}
		if p.Len() != len(got.ParamNames) {
			t.Fatalf("%d values for params %q", p.Len(), got.ParamNames)
		}
		// Substituting the values into the template gives the path back.
		segs, _, _ := parseTemplate(got.Template)
		var b strings.Builder
		k := 0
		for _, s := range segs {
			b.WriteByte('/')
			if s.kind == segLiteral {
				b.WriteString(s.text)
				continue
			}
			b.WriteString(p.At(k))
			k++
		}
		rebuilt := b.String()
		if rebuilt == "" {
			rebuilt = "/"
		}
		trimmed := path
		if len(trimmed) > 1 {
			trimmed = strings.TrimSuffix(trimmed, "/")
		}
		if rebuilt != trimmed && !(fold && strings.EqualFold(rebuilt, trimmed)) {
			t.Fatalf("%s %q matched %s; substituting params gives %q", method, path, got.Template, rebuilt)
		}
	})
}

func routeName(r *Route) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name
}

// benchRoutes returns n routes shaped like a large API: per service, a
// collection, an item, a nested item and a catch-all for files.
func benchRoutes(n int) []*Route {
	routes := make([]*Route, 0, n)
	for i := range n {
		svc := i / 4
		var tpl string
		switch i % 4 {
		case 0:
			tpl = fmt.Sprintf("/api/svc%d/items", svc)
		case 1:
			tpl = fmt.Sprintf("/api/svc%d/items/{id}", svc)
		case 2:
			tpl = fmt.Sprintf("/api/svc%d/items/{id}/parts/{part}", svc)
		case 3:
			tpl = fmt.Sprintf("/api/svc%d/files/{path...}", svc)
		}
		routes = append(routes, &Route{Name: fmt.Sprint("r", i), Index: i, Template: tpl, Methods: []string{"GET", "POST"}})
	}
	return routes
}

func BenchmarkRouterMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			r, probs := newRouter(benchRoutes(n), nil)
			if len(probs) > 0 {
				b.Fatal(probs)
			}
			last := n/4 - 1 // the last service with all four routes
			paths := []string{
				fmt.Sprintf("/api/svc%d/items/8b7c6d5e/parts/42", last),
				fmt.Sprintf("/api/svc%d/files/a/b/c.txt", last/2),
				fmt.Sprintf("/api/svc%d/items/8b7c6d5e", last),
				"/api/svc1/items",
			}
			var p Params
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if rt, _ := r.match("GET", paths[i&3], &p); rt == nil {
					b.Fatalf("no match for %s", paths[i&3])
				}
				i++
			}
		})
	}
	b.Run("case_insensitive/routes=1000", func(b *testing.B) {
		r, _ := newRouter(benchRoutes(1000), &PathSpec{CaseInsensitive: true})
		var p Params
		b.ReportAllocs()
		for b.Loop() {
			if rt, _ := r.match("GET", "/API/Svc249/Items/8b7c6d5e/Parts/42", &p); rt == nil {
				b.Fatal("no match")
			}
		}
	})
}

func TestRouterMatchNoAlloc(t *testing.T) {
	r, _ := newRouter(routesOf(matchRoutes...), nil)
	fr, _ := newRouter(benchRoutes(1000), &PathSpec{CaseInsensitive: true})
	longSeg := "/api/svc249/items/" + strings.Repeat("A", 100)
	var p Params
	n := testing.AllocsPerRun(200, func() {
		r.match("GET", "/orders/special/x", &p)
		r.match("DELETE", "/admin/users/7", &p)
		r.match("PATCH", "/nowhere/at/all", &p)
		fr.match("GET", "/API/SVC249/ITEMS/8b7c6d5e/PARTS/42", &p)
		fr.match("GET", longSeg, &p)
	})
	if n != 0 {
		t.Fatalf("match allocates %v times", n)
	}
}
