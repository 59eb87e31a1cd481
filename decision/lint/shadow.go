package lint

import (
	"slices"
	"strconv"
	"strings"

	"github.com/scopegate/scopegate/decision"
)

// Shadowed routes.
//
// The loader rejects two routes of the same shape whose methods overlap, so
// the winner of a request never depends on the order of routes. A route can
// still never decide anything: when, for every request its template and
// methods match, a more specific route matches too. /a/{rest...} [GET] is
// shadowed by /a/{x} [GET] together with /a/{x}/{rest...} [GET]: every path
// under /a/ has one segment or more than one.
//
// The check is exact, not a heuristic. The route table distinguishes path
// segments only by which literal of the policy's templates they equal at
// their position (or by case, with paths.case_insensitive, the literal's
// lower case), so at position i a segment is either one of the literals
// templates have at i, or any other value, and all other values behave the
// same; and a path longer than the longest template behaves like one just
// one segment longer. The check enumerates those representative paths of a
// route (with every method the policy names, plus one it does not), asks
// the compiled route table (Policy.MatchRoute) which route decides each,
// and reports a route that decides none, or methods of a route that decide
// none. A route with more representatives than maxShadowPaths is not
// judged, rather than judged on a sample.

// maxShadowPaths bounds the representative paths tried per route.
const maxShadowPaths = 50_000

// otherMethod is a method no route names, standing for all of them.
const otherMethod = "LINT-OTHER-METHOD"

type shadowReport struct {
	route *decision.Route
	// methods are the route's listed methods no request reaches it with;
	// all is set when no request at all reaches it.
	methods []string
	all     bool
	// observes are, for a route in shadow mode that some request reaches,
	// the enforced routes that decide those requests ("" for none: the
	// policy's default).
	observes []string
}

func shadowedRoutes(pol *decision.Policy) []shadowReport {
	fold := pol.Paths.CaseInsensitive
	var tpls [][]string
	maxLen := 0
	for _, r := range pol.Routes {
		segs := splitTemplate(r.Template)
		tpls = append(tpls, segs)
		maxLen = max(maxLen, len(segs))
	}
	// alphabet[i] are the literals templates have at position i.
	alphabet := make([][]string, maxLen+1)
	allLits := map[string]bool{}
	for _, segs := range tpls {
		for i, s := range segs {
			if isParam(s) {
				continue
			}
			if fold {
				s = strings.ToLower(s)
			}
			allLits[s] = true
			if !slices.Contains(alphabet[i], s) {
				alphabet[i] = append(alphabet[i], s)
			}
		}
	}
	fresh := "lint-any"
	for n := 0; allLits[fresh]; n++ {
		fresh = "lint-any-" + strconv.Itoa(n)
	}
	for i := range alphabet {
		alphabet[i] = append(alphabet[i], fresh)
	}
	methodSet := []string{otherMethod}
	for _, r := range pol.Routes {
		for _, m := range r.Methods {
			if !slices.Contains(methodSet, m) {
				methodSet = append(methodSet, m)
			}
		}
	}

	var out []shadowReport
	for ri, r := range pol.Routes {
		paths, ok := representatives(tpls[ri], alphabet, maxLen, fresh)
		if !ok {
			continue
		}
		methods := r.Methods
		if len(methods) == 0 {
			methods = methodSet
		}
		// A route in shadow mode never decides: it observes the requests
		// it would decide if enforced, which the enforced routes answer.
		match := pol.MatchRoute
		if r.Shadow {
			match = pol.MatchShadowRoute
		}
		var unreached, observes []string
		for _, m := range methods {
			reached := false
			for _, p := range paths {
				if got, _ := match(m, p); got == r {
					reached = true
					if !r.Shadow {
						break
					}
					name := ""
					if by, _ := pol.MatchRoute(m, p); by != nil {
						name = by.Name
					}
					if !slices.Contains(observes, name) {
						observes = append(observes, name)
					}
				}
			}
			if !reached {
				unreached = append(unreached, m)
			}
		}
		switch {
		case len(unreached) == len(methods):
			out = append(out, shadowReport{route: r, all: true})
		case len(unreached) > 0 && len(r.Methods) > 0:
			out = append(out, shadowReport{route: r, methods: unreached, observes: observes})
		case r.Shadow:
			out = append(out, shadowReport{route: r, observes: observes})
		}
	}
	return out
}

func splitTemplate(t string) []string {
	if t == "/" || t == "" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(t, "/"), "/")
}

func isParam(s string) bool { return len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' }

func isRest(s string) bool { return isParam(s) && strings.HasSuffix(s, "...}") }

// representatives returns the representative paths a template matches, or
// ok=false when there are more than maxShadowPaths.
func representatives(segs []string, alphabet [][]string, maxLen int, fresh string) (paths []string, ok bool) {
	if len(segs) == 0 {
		return []string{"/"}, true
	}
	// choices[i] are the values tried at position i.
	var lengths []int
	last := segs[len(segs)-1]
	if isRest(last) {
		for l := len(segs); l <= maxLen+1; l++ {
			lengths = append(lengths, l)
		}
	} else {
		lengths = []int{len(segs)}
	}
	at := func(i int) []string {
		if i < len(alphabet) {
			return alphabet[i]
		}
		return []string{fresh}
	}
	for _, l := range lengths {
		choices := make([][]string, l)
		total := 1
		for i := range l {
			switch {
			case i < len(segs)-1 || i == len(segs)-1 && !isRest(last):
				if isParam(segs[i]) {
					choices[i] = at(i)
				} else {
					choices[i] = []string{segs[i]}
				}
			default: // covered by {rest...}
				choices[i] = at(i)
			}
			total *= len(choices[i])
			if total+len(paths) > maxShadowPaths {
				return nil, false
			}
		}
		idx := make([]int, l)
		for {
			var b strings.Builder
			for i := range l {
				b.WriteByte('/')
				b.WriteString(choices[i][idx[i]])
			}
			paths = append(paths, b.String())
			k := l - 1
			for k >= 0 {
				idx[k]++
				if idx[k] < len(choices[k]) {
					break
				}
				idx[k] = 0
				k--
			}
			if k < 0 {
				break
			}
		}
	}
	return paths, true
}
