package policytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/scopegate/scopegate/decision"
)

// Result is the outcome of one case.
type Result struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
	Name string `json:"name"`
	Pass bool   `json:"pass"`
	// Matrix is set on cases the matrix generated.
	Matrix bool `json:"matrix,omitempty"`
	// Request is "METHOD /path" of the case.
	Request string `json:"request,omitempty"`
	// Want and Got describe the expected and the actual decision.
	Want string `json:"want,omitempty"`
	Got  string `json:"got,omitempty"`
	// Error says why a case could not run at all.
	Error string `json:"error,omitempty"`
	// Skip says why a case was not sent to a deployment (RunTarget): it
	// is neither passed nor failed.
	Skip string `json:"skip,omitempty"`
}

// CoverageItem is one route or scope and whether an allowed case
// exercised it.
type CoverageItem struct {
	Name string `json:"name"`
	// Detail is the route's methods and template ("" for scopes).
	Detail  string `json:"detail,omitempty"`
	Covered bool   `json:"covered"`
}

// Coverage lists the policy's routes and scopes and which of them some
// allowed case exercised: a route when it decided an allow (a route in
// shadow mode: when it would have allowed), a scope when it (or a scope it
// implies) satisfied an allowed route. A retired scope
// counts as exercised by a case denied scope_retired because of it.
type Coverage struct {
	Routes []CoverageItem `json:"routes"`
	Scopes []CoverageItem `json:"scopes"`
}

// Uncovered returns the routes and scopes no case exercised.
func (c Coverage) Uncovered() (routes, scopes []CoverageItem) {
	for _, it := range c.Routes {
		if !it.Covered {
			routes = append(routes, it)
		}
	}
	for _, it := range c.Scopes {
		if !it.Covered {
			scopes = append(scopes, it)
		}
	}
	return routes, scopes
}

// Full reports whether every route and scope was exercised.
func (c Coverage) Full() bool {
	r, s := c.Uncovered()
	return len(r) == 0 && len(s) == 0
}

// Report is the outcome of a run.
type Report struct {
	Results []Result `json:"results"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	// Skipped and Target are set by RunTarget: the cases a deployment was
	// not sent, and that the cases were decided by one (there is then no
	// coverage, and JSON leaves it out).
	Skipped  int      `json:"skipped,omitempty"`
	Target   bool     `json:"target,omitempty"`
	Coverage Coverage `json:"coverage,omitzero"`
}

// Run decides every case of files (tests, then matrix) and builds the
// report.
func (r *Runner) Run(ctx context.Context, files []*File) *Report {
	rep := &Report{}
	cov := newCoverage(r.pol)
	rep.Results = r.eachCase(files, func(c *Case, f *File, res *Result) {
		d, err := r.Decide(ctx, c, f)
		if err != nil {
			res.Error = err.Error()
			return
		}
		res.Got = describeGot(&d)
		res.Pass = matches(&c.Expect, &d)
		cov.record(r.pol, &d)
	})
	for _, res := range rep.Results {
		if res.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	rep.Coverage = cov.result()
	return rep
}

// eachCase calls run on every case of files the run selects (tests, then
// the matrix) that can run, with its result so far for run to complete,
// and returns every result: those of cases that could not run (an unknown
// expect.route, a matrix entry that could not be generated) included.
func (r *Runner) eachCase(files []*File, run func(c *Case, f *File, res *Result)) []Result {
	var out []Result
	for _, f := range files {
		cases := append([]Case(nil), f.Tests...)
		if f.Matrix != nil {
			mc, errs := r.matrixCases(f)
			cases = append(cases, mc...)
			out = append(out, errs...)
		}
		for i := range cases {
			c := &cases[i]
			if r.match != nil && !r.match(c.Name) {
				continue
			}
			res := Result{File: f.Path, Line: c.Line, Name: c.Name, Matrix: c.matrixRoute != "", Want: describeWant(&c.Expect)}
			method := c.Request.Method
			if method == "" {
				method = "GET"
			}
			res.Request = method + " " + c.Request.Path
			if c.Expect.Route != "" && !slices.ContainsFunc(r.pol.Routes, func(rt *decision.Route) bool { return rt.Name == c.Expect.Route }) {
				res.Error = fmt.Sprintf("expect.route: route %q is not in the policy", c.Expect.Route)
			} else {
				run(c, f, &res)
			}
			out = append(out, res)
		}
	}
	return out
}

func matches(e *Expect, d *decision.Decision) bool {
	if e.Allow != nil && *e.Allow != d.Allow {
		return false
	}
	if e.Reason != "" && e.Reason != d.Code.String() {
		return false
	}
	if e.Route != "" && (d.Route == nil || d.Route.Name != e.Route) {
		return false
	}
	if e.ScopesUsed != nil {
		want := slices.Clone(*e.ScopesUsed)
		got := d.ScopesUsed()
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			return false
		}
	}
	if e.Status != 0 && e.Status != d.Code.HTTPStatus() {
		return false
	}
	if e.MessageContains != "" && !strings.Contains(d.Message(), e.MessageContains) {
		return false
	}
	return true
}

func describeWant(e *Expect) string {
	var parts []string
	switch {
	case e.Allow != nil && *e.Allow:
		parts = append(parts, "allow")
	case e.Allow != nil:
		parts = append(parts, "deny")
	}
	if e.Reason != "" && e.Reason != "ok" {
		parts = append(parts, e.Reason)
	}
	if e.Route != "" {
		parts = append(parts, "route="+e.Route)
	}
	if e.ScopesUsed != nil {
		parts = append(parts, "scopes_used=["+strings.Join(*e.ScopesUsed, " ")+"]")
	}
	if e.Status != 0 {
		parts = append(parts, fmt.Sprintf("status=%d", e.Status))
	}
	if e.MessageContains != "" {
		parts = append(parts, fmt.Sprintf("message containing %q", e.MessageContains))
	}
	return strings.Join(parts, " ")
}

func describeGot(d *decision.Decision) string {
	var b strings.Builder
	if d.Allow {
		b.WriteString("allow")
	} else {
		b.WriteString("deny " + d.Code.String())
	}
	if d.Route != nil {
		b.WriteString(" route=" + d.Route.Name)
	}
	if used := d.ScopesUsed(); len(used) > 0 {
		b.WriteString(" scopes_used=[" + strings.Join(used, " ") + "]")
	}
	fmt.Fprintf(&b, " status=%d", d.Code.HTTPStatus())
	if !d.Allow {
		b.WriteString(": " + d.Message())
	}
	return b.String()
}

// coverage accumulates what allowed cases exercised.
type coverage struct {
	routes   []*decision.Route
	scopes   []string
	routeHit map[string]bool
	scopeHit map[string]bool
}

func newCoverage(pol *decision.Policy) *coverage {
	return &coverage{
		routes:   pol.Routes,
		scopes:   MatrixScopes(pol),
		routeHit: map[string]bool{},
		scopeHit: map[string]bool{},
	}
}

func (c *coverage) record(pol *decision.Policy, d *decision.Decision) {
	// A route in shadow mode never decides; a case whose request it would
	// allow exercises it (and the scopes it requires that the token holds).
	if sh := d.Shadow; sh.Route != nil && !sh.Scopes && sh.Allow {
		c.routeHit[sh.Route.Name] = true
		if d.Token != nil {
			for _, s := range d.Token.Scopes {
				held := Held(pol, s)
				for _, req := range [2][]string{sh.Route.AllOf, sh.Route.AnyOf} {
					for _, u := range req {
						if held[u] {
							c.scopeHit[s] = true
						}
					}
				}
			}
		}
	}
	if d.Route == nil {
		return
	}
	if d.Code == decision.ScopeRetired && d.Token != nil {
		for _, s := range d.Token.Scopes {
			if info, ok := pol.ScopeInfo(s); ok && info.Status == "retired" {
				c.scopeHit[s] = true
			}
		}
		return
	}
	if !d.Allow {
		return
	}
	c.routeHit[d.Route.Name] = true
	if d.Token == nil {
		return
	}
	if d.Route.IsSMART() {
		// A SMART route is granted by the token's SMART scopes that grant
		// the request (Decision.ScopesUsed).
		for _, s := range d.ScopesUsed() {
			c.scopeHit[s] = true
		}
		return
	}
	used := d.ScopesUsed()
	for _, s := range d.Token.Scopes {
		held := Held(pol, s)
		for _, u := range used {
			if held[u] {
				c.scopeHit[s] = true
				break
			}
		}
	}
}

func (c *coverage) result() Coverage {
	var out Coverage
	for _, r := range c.routes {
		methods := "*"
		if len(r.Methods) > 0 {
			methods = strings.Join(r.Methods, "|")
		}
		out.Routes = append(out.Routes, CoverageItem{Name: r.Name, Detail: methods + " " + r.Template, Covered: c.routeHit[r.Name]})
	}
	for _, s := range c.scopes {
		out.Scopes = append(out.Scopes, CoverageItem{Name: s, Covered: c.scopeHit[s]})
	}
	return out
}

// WriteText prints failures (and, when verbose, passes), the coverage
// report, then exactly one summary line "N passed, N failed". A target run
// has no coverage; its summary line ends ", N skipped", and verbose lists
// each skipped case with its reason.
func (rep *Report) WriteText(w io.Writer, verbose bool) {
	for _, res := range rep.Results {
		if res.Skip != "" {
			if verbose {
				fmt.Fprintf(w, "SKIP %s: %s\n", res.Name, res.Skip)
			}
			continue
		}
		if res.Pass {
			if verbose {
				fmt.Fprintf(w, "PASS %s\n", res.Name)
			}
			continue
		}
		where := res.File
		if res.Line > 0 {
			where = fmt.Sprintf("%s:%d", res.File, res.Line)
		}
		fmt.Fprintf(w, "FAIL %s (%s)\n", res.Name, where)
		if res.Request != "" {
			fmt.Fprintf(w, "    request: %s\n", res.Request)
		}
		if res.Error != "" {
			fmt.Fprintf(w, "    error:   %s\n", res.Error)
			continue
		}
		fmt.Fprintf(w, "    want:    %s\n", res.Want)
		fmt.Fprintf(w, "    got:     %s\n", res.Got)
	}
	if rep.Target {
		if rep.Skipped > 0 && !verbose {
			fmt.Fprintf(w, "%d case(s) not sent to the deployment; -v lists them with the reason\n", rep.Skipped)
		}
		fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", rep.Passed, rep.Failed, rep.Skipped)
		return
	}
	routes, scopes := rep.Coverage.Uncovered()
	fmt.Fprintf(w, "coverage: %d/%d routes, %d/%d scopes exercised by an allowed case\n",
		len(rep.Coverage.Routes)-len(routes), len(rep.Coverage.Routes),
		len(rep.Coverage.Scopes)-len(scopes), len(rep.Coverage.Scopes))
	for _, it := range routes {
		fmt.Fprintf(w, "    route not covered: %s (%s)\n", it.Name, it.Detail)
	}
	for _, it := range scopes {
		fmt.Fprintf(w, "    scope not covered: %s\n", it.Name)
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", rep.Passed, rep.Failed)
}

// WriteJSON prints the report as one JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	out := *rep
	if out.Results == nil {
		out.Results = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
