package decision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CompileOptions are what the compiler needs from outside the policy file.
type CompileOptions struct {
	// MaxPolicyBytes refuses, unparsed, a larger policy text; 0 means the
	// default of 16 MiB.
	MaxPolicyBytes int
}

// LoadFile reads, validates and compiles the policy file at path, and reads
// and validates every issuer's jwks_file (Load). Every problem found is
// reported at once in a *LoadError, each with its line and the fix.
//
// It is the one loading path of every command (serve, check, lint, test,
// diff, catalog): a policy that one of them refuses, every one refuses with
// the same message. Only a jwks_url is not fetched; the server fetches it
// in the background (store/jwks.Registry).
func LoadFile(path string, opts CompileOptions) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &LoadError{Problems: []Problem{ReadProblem(path, err)}}
	}
	return Load(data, path, opts)
}

// Load is LoadFile for a policy text already read: Compile, and every
// issuer's jwks_file read and validated (relative to filename's directory)
// with ParseKeySet, its keys kept in Issuer.FileKeys.
func Load(data []byte, filename string, opts CompileOptions) (*Policy, error) {
	return compileText(data, filename, opts, true)
}

// Compile validates and compiles a policy from its YAML text. It does no
// I/O: issuers get key set references (Issuer.KeyRef), resolved at decision
// time by the engine's KeyResolver, and no jwks_file is read (Load reads
// them). filename is used in messages and to resolve relative jwks_file
// paths.
func Compile(data []byte, filename string, opts CompileOptions) (*Policy, error) {
	return compileText(data, filename, opts, false)
}

func compileText(data []byte, filename string, opts CompileOptions, readKeys bool) (*Policy, error) {
	limit := maxPolicyBytes
	if opts.MaxPolicyBytes > 0 {
		limit = opts.MaxPolicyBytes
	}
	pf, li, probs := parsePolicyFileLimit(data, filename, limit)
	if pf == nil || len(probs) >= maxProblems {
		// Not a policy at all, or so broken the list is already cut short.
		return nil, &LoadError{Problems: probs}
	}
	// A file with structural problems (a wrong type, an unknown field) is
	// still compiled, with the bad values left out, so that one run
	// reports every problem that can be found; the compiler's problems
	// with the fields left out are dropped, as they only follow from the
	// ones reported.
	c := &compiler{file: filename, li: li, probs: probs, pace: pacer{on: len(data) >= paceMinBytes}}
	pol := c.compile(pf, filepath.Dir(filename), readKeys)
	if hasErrors(probs) {
		all := probs
		for _, p := range c.probs[len(probs):] {
			if !li.covered(p.Field) {
				all = append(all, p)
			}
		}
		slices.SortStableFunc(all, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &LoadError{Problems: all}
	}
	if hasErrors(c.probs) {
		return nil, &LoadError{Problems: c.probs}
	}
	sum := sha256.Sum256(data)
	pol.Version = hex.EncodeToString(sum[:4])
	if pf.Version != "" {
		pol.Version = pf.Version + "+" + pol.Version
	}
	pol.Source = filename
	pol.Warnings = c.probs
	return pol, nil
}

// Warnings returns the warnings a LoadError carries (or none).
func hasErrors(ps []Problem) bool {
	for _, p := range ps {
		if !p.Warning {
			return true
		}
	}
	return false
}

type compiler struct {
	file  string
	li    *lineIndex
	probs []Problem
	// pace yields now and then while a large policy compiles (pace.go).
	pace pacer
}

func (c *compiler) errorf(line int, field, format string, args ...any) {
	c.probs = append(c.probs, Problem{File: c.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (c *compiler) compile(pf *PolicyFile, baseDir string, readKeys bool) *Policy {
	pol := &Policy{
		File:        pf,
		Environment: pf.Environment,
		Issuers:     map[string]*Issuer{},
		scopeIndex:  map[string]int{},
	}
	if pf.Paths != nil {
		pol.Paths = *pf.Paths
		switch ml := pol.Paths.MaxLength; {
		case ml < 0 || ml > 1<<20:
			c.errorf(c.li.line("paths", "max_length"), "paths.max_length", "%d is out of range; give a length in bytes from 1 to 1048576 (default %d)", ml, maxPathBytes)
		case ml > 0:
			pol.Paths.tooLongMsg = fmt.Sprintf("path longer than %d bytes", ml)
		}
	}
	c.upstream(pf, pol)

	switch pf.Default {
	case "", "deny":
	case "allow":
		c.errorf(c.li.line("default"), "default", `"allow" is not accepted: scopegate fails closed. To allow unmatched paths, add a public catch-all route: {name: catch-all, match: {path: "/{rest...}"}, public: true}`)
	default:
		c.errorf(c.li.line("default"), "default", `unknown value %q; the only accepted value is "deny"`, pf.Default)
	}

	for i, sp := range pf.Scopes {
		if sp.Mode != "" && sp.Mode != "enforce" && sp.Mode != "shadow" {
			c.errorf(c.li.line("scopes", i, "mode"), indexed("scopes", i)+".mode", `unknown mode %q; use "enforce" (the default) or "shadow"`, sp.Mode)
		}
	}

	for i := range pf.Issuers {
		spec := &pf.Issuers[i]
		field := indexed("issuers", i)
		line := c.li.line("issuers", i)
		if _, dup := pol.Issuers[spec.Issuer]; dup && spec.Issuer != "" {
			c.errorf(c.li.line("issuers", i, "issuer"), field+".issuer", "issuer %q is listed twice; merge the two entries", spec.Issuer)
			continue
		}
		iss, ps := compileIssuer(spec, field, baseDir, readKeys)
		for _, p := range ps {
			p.File = c.file
			if p.Line == 0 {
				p.Line = c.lineOfField(p.Field, line)
			}
			c.probs = append(c.probs, p)
		}
		if iss != nil {
			iss.Line = line
			pol.Issuers[iss.Name] = iss
		}
	}

	if rec, msg := buildOpaqueRecognizer(pol.Issuers); msg != "" {
		c.errorf(c.li.line("issuers"), "issuers", "%s", msg)
	} else {
		pol.opaque = rec
	}

	if len(pf.Routes) == 0 {
		c.errorf(c.li.line("routes"), "routes", "the policy has no routes; add at least one (every request that matches none is denied)")
	}
	names := map[string]int{}
	needsToken := false
	for i := range pf.Routes {
		c.pace.tick()
		if r := c.route(pf, i, pol, names); r != nil {
			pol.Routes = append(pol.Routes, r)
			needsToken = needsToken || !r.Public
		}
	}
	if needsToken && len(pf.Issuers) == 0 {
		c.errorf(c.li.line("issuers"), "issuers", "routes require tokens but no issuer is configured; add an issuers entry with issuer, audiences, jwks_file (or jwks_url) and algorithms")
	}

	c.constraints(pf, pol)
	c.governance(pf, pol)
	c.dpop(pf, pol)

	// The router of every route finds ambiguities and decides shadow
	// evaluations; when some routes are in shadow mode, responses come from
	// a second router that leaves them out.
	rt, ps := newRouter(pol.Routes, &pol.Paths)
	for _, p := range ps {
		p.File = c.file
		c.probs = append(c.probs, p)
	}
	pol.router = rt
	var enforced []*Route
	for _, r := range pol.Routes {
		if !r.Shadow {
			enforced = append(enforced, r)
		}
	}
	if len(enforced) < len(pol.Routes) {
		pol.shadowRouter = rt
		pol.router, _ = newRouter(enforced, &pol.Paths)
	}
	return pol
}

// lineOfField finds the line of a dotted field path such as
// "issuers[0].jwks_file", falling back to def.
func (c *compiler) lineOfField(field string, def int) int {
	var path []any
	for _, part := range strings.Split(field, ".") {
		name, idx, hasIdx := strings.Cut(part, "[")
		if name != "" {
			path = append(path, name)
		}
		if hasIdx {
			var n int
			if _, err := fmt.Sscanf(idx, "%d]", &n); err == nil {
				path = append(path, n)
			}
		}
	}
	if l := c.li.line(path...); l > 0 {
		return l
	}
	return def
}

func (c *compiler) upstream(pf *PolicyFile, pol *Policy) {
	u := UpstreamSpec{
		SubjectHeader: "x-scopegate-subject",
		ClientHeader:  "x-scopegate-client",
		ScopesHeader:  "x-scopegate-scopes",
	}
	if pf.Upstream != nil {
		set := func(dst *string, v, key string) {
			if v == "" {
				return
			}
			if !validHeaderName(v) {
				c.errorf(c.li.line("upstream", key), "upstream."+key, "%q is not a valid HTTP header name (letters, digits and '-')", v)
				return
			}
			*dst = strings.ToLower(v)
		}
		set(&u.SubjectHeader, pf.Upstream.SubjectHeader, "subject_header")
		set(&u.ClientHeader, pf.Upstream.ClientHeader, "client_header")
		set(&u.ScopesHeader, pf.Upstream.ScopesHeader, "scopes_header")
		u.StripAuthorization = pf.Upstream.StripAuthorization
	}
	pol.Upstream = u
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

func (c *compiler) route(pf *PolicyFile, i int, pol *Policy, names map[string]int) *Route {
	spec := &pf.Routes[i]
	field := indexed("routes", i)
	line := c.li.line("routes", i)
	r := &Route{Name: spec.Name, Index: i, Line: line, Template: spec.Match.Path, Public: spec.Public}
	ok := true
	switch {
	case spec.Name == "":
		c.errorf(line, field+".name", "every route needs a name (it appears in decisions and audit logs)")
		ok = false
	default:
		if prev, dup := names[spec.Name]; dup {
			c.errorf(c.li.line("routes", i, "name"), field+".name", "route name %q is already used by routes[%d]; route names must be unique", spec.Name, prev)
			ok = false
		}
		names[spec.Name] = i
	}
	if spec.Match.Path == "" {
		c.errorf(c.li.line("routes", i, "match"), field+".match.path", `every route needs a path template, e.g. "/orders/{id}"`)
		ok = false
	}
	switch spec.Mode {
	case "", "enforce":
	case "shadow":
		r.Shadow = true
	default:
		c.errorf(c.li.line("routes", i, "mode"), field+".mode", `unknown mode %q; use "enforce" (the default) or "shadow"`, spec.Mode)
		ok = false
	}
	seen := map[string]bool{}
	for j, m := range spec.Match.Methods {
		up := strings.ToUpper(m)
		mline := c.li.line("routes", i, "match", "methods", j)
		mfield := indexed(field+".match.methods", j)
		if m != up {
			c.errorf(mline, mfield, "method %q must be upper-case: write %q", m, up)
			ok = false
			continue
		}
		if !isToken(m) {
			c.errorf(mline, mfield, "%q is not an HTTP method; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS", m)
			ok = false
			continue
		}
		if seen[m] {
			c.errorf(mline, mfield, "method %s is listed twice", m)
			ok = false
			continue
		}
		seen[m] = true
		r.Methods = append(r.Methods, m)
	}
	if spec.Public && spec.Require != nil && (len(spec.Require.AllOf) > 0 || len(spec.Require.AnyOf) > 0) {
		c.errorf(c.li.line("routes", i, "require"), field+".require", "a public route needs no token, so it cannot require scopes: remove require or public")
		ok = false
	}
	if spec.Require != nil {
		r.AllOf = c.scopes(spec.Require.AllOf, field+".require.all_of", []any{"routes", i, "require", "all_of"})
		r.AnyOf = c.scopes(spec.Require.AnyOf, field+".require.any_of", []any{"routes", i, "require", "any_of"})
		if len(r.AllOf)+len(r.AnyOf) > 64 {
			c.errorf(c.li.line("routes", i, "require"), field+".require", "a route may require at most 64 scopes; group them with any_of or split the route")
			ok = false
		}
	}
	for _, s := range r.AllOf {
		r.allOf = append(r.allOf, pol.intern(s))
	}
	for _, s := range r.AnyOf {
		r.anyOf = append(r.anyOf, pol.intern(s))
	}
	r.scopeChallenge = strings.Join(append(append([]string{}, r.AllOf...), r.AnyOf...), " ")
	r.missingMemo = &missingMemo{}
	if !ok {
		// The router never sees a rejected route: check its template here so
		// that its problems are reported in the same pass.
		if spec.Match.Path != "" {
			if _, _, err := parseTemplate(spec.Match.Path); err != nil {
				c.errorf(c.li.line("routes", i, "match", "path"), field+".match.path", "%s", err.Error())
			}
		}
		return nil
	}
	return r
}

func (c *compiler) scopes(list []string, field string, path []any) []string {
	var out []string
	seen := map[string]bool{}
	for j, s := range list {
		line := c.li.line(append(path, j)...)
		f := indexed(field, j)
		switch {
		case s == "":
			c.errorf(line, f, "empty scope name")
		case strings.ContainsAny(s, " \t\r\n\"\\"):
			c.errorf(line, f, "scope %q contains whitespace, a quote or a backslash; scopes are single tokens (RFC 6749 §3.3)", s)
		case seen[s]:
			c.errorf(line, f, "scope %q is listed twice", s)
		default:
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (p *Policy) intern(s string) scopeBit {
	i, ok := p.scopeIndex[s]
	if !ok {
		i = len(p.scopeNames)
		p.scopeIndex[s] = i
		p.scopeNames = append(p.scopeNames, s)
	}
	return scopeBit{word: i >> 6, mask: 1 << (uint(i) & 63)}
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'A' && b <= 'Z' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// indexed returns the field path prefix[i] of a list item. Every item of a
// policy gets one, for its problems, so it is built in one allocation
// (fmt.Sprintf takes two or three): a 10,000-route policy builds tens of
// thousands.
func indexed(prefix string, i int) string {
	var buf [64]byte
	b := append(buf[:0], prefix...)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(i), 10)
	return string(append(b, ']'))
}
