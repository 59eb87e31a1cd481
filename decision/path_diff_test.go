package decision

import (
	"bufio"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The differential property of the canonical path: for every request-target,
// either scopegate refuses it (path_invalid, or no route), or the route it
// picks is the route a real upstream serves for that target. The upstream is
// Go's net/http reading the raw request line and a ServeMux (1.22 patterns)
// holding the same routes, alone and behind a model of Envoy's documented
// path handling (normalize_path, merge_slashes,
// path_with_escaped_slashes_action), which rewrites the path that both
// scopegate (ext_authz) and the upstream see. nginx's $uri is held to the
// same property by server/e2e (real nginx).

// diffRoutes are the routes of the differential: private literals beside
// public {param} routes that would catch another spelling of them.
var diffRoutes = []struct{ name, tpl, pattern string }{
	{"root", "/", "/{$}"},
	{"healthz", "/healthz", "/healthz"},
	{"admin", "/admin/{rest...}", "/admin/{rest...}"},
	{"users-me", "/users/@me", "/users/@me"},
	{"users", "/users/{id}", "/users/{id}"},
	{"docs-secret", "/docs/internal:secrets", "/docs/internal:secrets"},
	{"docs", "/docs/{page}", "/docs/{page}"},
	{"menu-secret", "/menu/caf\u00e9-secret", "/menu/caf\u00e9-secret"},
	{"menu", "/menu/{item}", "/menu/{item}"},
	{"query-char", "/q/a%3Fb", "/q/a%3Fb"},
	{"hash-char", "/q/a%23b", "/q/a%23b"},
	{"percent", "/p/100%25", "/p/100%25"},
	{"p", "/p/{v}", "/p/{v}"},
	{"plus", "/x+y", "/x+y"},
	{"tilde", "/t/~me", "/t/~me"},
	{"files", "/files/{path...}", "/files/{path...}"},
	{"items", "/orders/{id}/items", "/orders/{id}/items"},
	{"orders-export", "/orders/export/items", "/orders/export/items"},
}

// diffExemplars are paths that reach each route, the start of every
// generated spelling.
var diffExemplars = []string{
	"/", "/healthz", "/admin/x", "/admin/x/y", "/users/@me", "/users/7", "/docs/internal:secrets",
	"/docs/readme", "/menu/caf\u00e9-secret", "/menu/tea", "/q/a%3Fb", "/q/a%23b", "/p/100%25", "/p/1",
	"/x+y", "/t/~me", "/files/a/b.txt", "/orders/1/items", "/orders/export/items",
}

type pathDiff struct {
	rt  *router
	mux *http.ServeMux
}

func newPathDiff(t testing.TB) *pathDiff {
	t.Helper()
	var routes []*Route
	mux := http.NewServeMux()
	for i, r := range diffRoutes {
		routes = append(routes, &Route{Name: r.name, Index: i, Template: r.tpl, Methods: []string{"GET"}})
		name := r.name
		mux.HandleFunc("GET "+r.pattern, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Route", name)
		})
	}
	rt, probs := newRouter(routes, nil)
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	return &pathDiff{rt: rt, mux: mux}
}

// scopegate returns the route scopegate picks for target, or "" when it
// refuses the path or has no route for it.
func (d *pathDiff) scopegate(target string) string {
	norm, _, ok := normalizePath(target, nil)
	if !ok {
		return ""
	}
	var p Params
	r, _ := d.rt.match("GET", norm, &p)
	if r == nil {
		return ""
	}
	return r.Name
}

// upstream returns the route Go's net/http and ServeMux serve for the raw
// request-target, or "" when they serve none (a 400, a 404, a redirect to
// a cleaned path: the client's next request is decided on its own).
func (d *pathDiff) upstream(target string) string {
	if strings.ContainsAny(target, " \r\n") {
		return "" // not one request line
	}
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: api.test\r\n\r\n")))
	if err != nil {
		return ""
	}
	w := httptest.NewRecorder()
	d.mux.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		return ""
	}
	return w.Header().Get("X-Route")
}

// check holds the property for one target; it returns the route both
// agree on ("" if either serves none).
func (d *pathDiff) check(t testing.TB, via, target string) string {
	t.Helper()
	up := d.upstream(target)
	if up == "" {
		return ""
	}
	sg := d.scopegate(target)
	if sg != "" && sg != up {
		norm, _, _ := normalizePath(target, nil)
		t.Fatalf("%s: %q: scopegate decides route %q (path %q), the upstream serves %q", via, target, sg, norm, up)
	}
	return sg
}

// envoyConfig is the path handling of an Envoy HTTP connection manager.
type envoyConfig struct {
	normalize, merge bool
	escapedSlashes   string // KEEP_UNCHANGED, REJECT_REQUEST, UNESCAPE_AND_FORWARD
}

var envoyConfigs = func() (cs []envoyConfig) {
	for _, a := range []string{"KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_FORWARD"} {
		for _, n := range []bool{false, true} {
			for _, m := range []bool{false, true} {
				cs = append(cs, envoyConfig{normalize: n, merge: m, escapedSlashes: a})
			}
		}
	}
	return cs
}()

// envoyPath models what Envoy forwards (to ext_authz and to the upstream)
// for the :path target, or ok=false when Envoy answers the request itself
// (400, or a redirect). Documented behaviour modelled: a '#' in :path is
// rejected (http_reject_path_with_fragment, on by default);
// path_with_escaped_slashes_action runs first (%2F and %5C, either case);
// normalize_path is RFC 3986 normalization (Chromium's path
// canonicalizer): escapes of unreserved characters decoded, characters
// not allowed raw escaped, '\' turned into '/', dot segments resolved with
// ".." clamped at the root; merge_slashes collapses runs of '/'. The query
// is left alone.
func envoyPath(target string, c envoyConfig) (string, bool) {
	if target == "" || target[0] != '/' || strings.IndexByte(target, '#') >= 0 {
		return "", false
	}
	path, query := target, ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		path, query = target[:i], target[i:]
	}
	lower := strings.ToLower(path)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		switch c.escapedSlashes {
		case "REJECT_REQUEST":
			return "", false
		case "UNESCAPE_AND_FORWARD":
			r := strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", "\\", "%5c", "\\")
			path = r.Replace(path)
		}
	}
	if c.normalize {
		path = chromiumCanonicalPath(path)
	}
	if c.merge {
		for strings.Contains(path, "//") {
			path = strings.ReplaceAll(path, "//", "/")
		}
	}
	return path + query, true
}

// chromiumCanonicalPath is a model of the path canonicalization Envoy's
// normalize_path uses.
func chromiumCanonicalPath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			b.WriteByte('/')
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			hi, _ := unhex(p[i+1])
			lo, _ := unhex(p[i+2])
			if v := hi<<4 | lo; isUnreservedByte(v) {
				b.WriteByte(v)
			} else {
				b.WriteString(p[i : i+3])
			}
			i += 2
		case c <= ' ' || c >= 0x7F || strings.IndexByte("\"<>`{}", c) >= 0:
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	// Dot segments, ".." clamped at the root.
	var out []string
	segs := strings.Split(b.String()[1:], "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

func isUnreservedByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// checkAll holds the property for target directly and behind every Envoy
// configuration.
func (d *pathDiff) checkAll(t testing.TB, target string) string {
	t.Helper()
	agreed := d.check(t, "net/http", target)
	for _, c := range envoyConfigs {
		if fwd, ok := envoyPath(target, c); ok {
			d.check(t, "envoy "+c.escapedSlashes+map[bool]string{true: " normalize_path", false: ""}[c.normalize]+
				map[bool]string{true: " merge_slashes", false: ""}[c.merge]+" then net/http", fwd)
		}
	}
	return agreed
}

// mutatePath returns another spelling of p: an escape, a dot segment, a
// doubled slash, a raw '#', a query, a stray reserved or escaped byte.
func mutatePath(r *rand.Rand, p string) string {
	pos := func() int { return 1 + r.IntN(max(len(p), 1)) }
	slash := func() int {
		var at []int
		for i := 0; i < len(p); i++ {
			if p[i] == '/' {
				at = append(at, i)
			}
		}
		if len(at) == 0 {
			return 0
		}
		return at[r.IntN(len(at))]
	}
	if p == "" {
		return "/"
	}
	switch r.IntN(12) {
	case 0, 1, 2: // percent-encode one byte, upper or lower hex
		i := r.IntN(len(p))
		if p[i] == '%' || p[i] == '/' && r.IntN(4) != 0 {
			return p
		}
		hex := upperHex
		if r.IntN(2) == 0 {
			hex = "0123456789abcdef"
		}
		return p[:i] + "%" + string(hex[p[i]>>4]) + string(hex[p[i]&15]) + p[i+1:]
	case 3: // a dot segment
		i := slash()
		ins := []string{"/.", "/x/..", "/%2e", "/%2E%2e/x", "/./.", "/..", "/.%2E"}[r.IntN(7)]
		return p[:i] + ins + p[i:]
	case 4: // a doubled slash
		i := slash()
		return p[:i] + "/" + p[i:]
	case 5: // a trailing slash
		return p + "/"
	case 6: // a raw '#', often hiding a climb
		i := pos()
		return p[:min(i, len(p))] + []string{"#", "#/../admin/x", "#x", "#/"}[r.IntN(4)] + p[min(i, len(p)):]
	case 7: // a query
		return p + []string{"?", "?a=/../admin", "?#", "?x=%2F"}[r.IntN(4)]
	case 8: // an escape of a separator or a special byte
		i := pos()
		ins := []string{"%2F", "%2f", "%5C", "%00", "%25", "%23", "%3F", "%3B", "%20", "%2540", "%C3", "%FF", "%C0%AF", "%E2%82%AC"}[r.IntN(14)]
		return p[:min(i, len(p))] + ins + p[min(i, len(p)):]
	case 9: // a raw special byte
		i := pos()
		ins := []string{";", ";x=1", "\\", "@", ":", "+", "~", "\xc3\xa9", "\xff", "{", "}", "|", "%"}[r.IntN(13)]
		return p[:min(i, len(p))] + ins + p[min(i, len(p)):]
	case 10: // upper-case one letter
		i := r.IntN(len(p))
		return p[:i] + strings.ToUpper(p[i:i+1]) + p[i+1:]
	default: // swap in another route's segment
		o := diffExemplars[r.IntN(len(diffExemplars))]
		return p + o
	}
}

// TestPathDifferential generates spellings of paths that reach each route
// and holds the property for each, directly and behind Envoy. It must see
// every route served, so a broken harness (the upstream serving nothing)
// fails rather than passing vacuously.
func TestPathDifferential(t *testing.T) {
	d := newPathDiff(t)
	// The exemplars themselves: both sides must serve the same route.
	for _, p := range diffExemplars {
		sg, up := d.scopegate(p), d.upstream(p)
		if sg == "" || sg != up {
			t.Fatalf("exemplar %q: scopegate %q, upstream %q; want the same route", p, sg, up)
		}
	}
	// The spellings of the issue: each names the route both must pick.
	for target, want := range map[string]string{
		"/users/%40me":                 "users-me",
		"/users/%40Me":                 "users",
		"/docs/internal%3Asecrets":     "docs-secret",
		"/docs/internal%3asecrets":     "docs-secret",
		"/menu/caf%C3%A9-secret":       "menu-secret",
		"/menu/caf%c3%a9-secret":       "menu-secret",
		"/menu/caf\xc3%A9-secret":      "menu-secret",
		"/p/100%25":                    "percent",
		"/q/a%3fb":                     "query-char",
		"/q/a%23b":                     "hash-char",
		"/%78%2By":                     "plus",
		"/t/%7Eme":                     "tilde",
		"/orders/%65xport/items":       "orders-export",
		"/orders/export%2Fitems/items": "",
	} {
		if got := d.scopegate(target); got != want {
			t.Errorf("%q: scopegate picks %q, want %q", target, got, want)
		}
		d.checkAll(t, target)
	}
	// '#' is refused outright, whatever follows it.
	for _, target := range []string{"/healthz#/../admin/x", "/users/#/../@me", "/#", "/menu/tea#x"} {
		if got := d.scopegate(target); got != "" {
			t.Errorf("%q: scopegate picks %q, want path_invalid", target, got)
		}
	}

	r := rand.New(rand.NewPCG(11, 3))
	served := map[string]int{}
	const n = 20000
	for range n {
		p := diffExemplars[r.IntN(len(diffExemplars))]
		for k := 1 + r.IntN(4); k > 0; k-- {
			p = mutatePath(r, p)
		}
		if name := d.checkAll(t, p); name != "" {
			served[name]++
		}
	}
	for _, rt := range diffRoutes {
		if served[rt.name] == 0 {
			t.Errorf("no generated path was served route %q by both: the generator or the upstream is broken", rt.name)
		}
	}
	t.Logf("%d generated paths; routes agreed on: %v", n, served)
}

func FuzzPathDifferential(f *testing.F) {
	for _, s := range diffExemplars {
		f.Add(s)
	}
	for _, s := range []string{"/users/%40me", "/docs/internal%3Asecrets", "/menu/caf%C3%A9-secret", "/healthz#/../admin/x",
		"/admin/%2e%2e/users/@me", "/p/100%2541", "/users/..%2F@me", "/users%5C@me", "//users/./@me/", "/menu/caf\xc3%a9-secret"} {
		f.Add(s)
	}
	d := newPathDiff(f)
	f.Fuzz(func(t *testing.T, target string) {
		if len(target) > 4096 {
			return
		}
		d.checkAll(t, target)
	})
}
