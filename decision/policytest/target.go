package policytest

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/tokenmint"
)

// Target decides a case's request somewhere other than the runner's own
// engine: a running deployment, reached over one of its wire protocols
// (scopegate test --target). The package only defines it; the transports,
// which do network I/O, live outside the pure core.
type Target interface {
	// Carries returns "" when the target's wire can carry req, or why it
	// cannot (a field the protocol has no place for); the case is then
	// skipped rather than sent without the field.
	Carries(req *decision.Request) string
	// Check sends req and returns the deployment's answer. An error means
	// no answer (the deployment is unreachable, the call timed out).
	Check(ctx context.Context, req *decision.Request) (Verdict, error)
}

// Verdict is a deployment's answer to one request, as far as its wire
// says: the verdict always, each other field only when the protocol
// returns it (the Has flags, and a non-empty Reason, a non-zero Status).
type Verdict struct {
	Allow bool
	// Reason is the reason code ("ok" for an allow); "" when not returned.
	Reason string
	// Status is the HTTP status of the answer; 0 when not returned.
	Status int

	Route         string
	HasRoute      bool
	ScopesUsed    []string
	HasScopesUsed bool
	Message       string
	HasMessage    bool
}

// TargetOptions configure RunTarget.
type TargetOptions struct {
	// Signer signs the token of every case that describes one: the key of
	// a test issuer the deployment trusts. Without it such cases are
	// skipped; cases that send no token or set their own Authorization
	// header still run.
	Signer *tokenmint.Signer
	// Issuer and Audience are the iss and aud of minted tokens whose case
	// names none; default the policy's first issuer and its first
	// audience. A case whose token names another issuer is skipped: only
	// the test issuer's tokens can be minted.
	Issuer, Audience string
	// Now is the clock tokens are issued at; default time.Now. The
	// deployment decides at its own clock.
	Now func() time.Time
	// Env, when set, expands ${NAME} in a case's headers.authorization,
	// so a token obtained at run time (from the test issuer's
	// authorization server, by CI) is supplied without writing it into
	// the test file. Only names starting with EnvPrefix are read, so a
	// test file cannot send the environment's other secrets; an unset
	// variable fails the case.
	Env func(name string) (string, bool)
}

// EnvPrefix starts the name of every variable a supplied Authorization
// header may name, e.g. ${SCOPEGATE_TEST_TOKEN_READER}.
const EnvPrefix = "SCOPEGATE_TEST_"

// envRef is a ${NAME} reference in a supplied Authorization header.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces every ${NAME} of s by the variable's value. The
// error names the variable, never a value.
func expandEnv(s string, env func(string) (string, bool)) (string, error) {
	var refused, missing string
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		if !strings.HasPrefix(name, EnvPrefix) {
			refused = cmp.Or(refused, name)
			return ""
		}
		v, ok := env(name)
		if !ok {
			missing = cmp.Or(missing, name)
		}
		return v
	})
	switch {
	case refused != "":
		return "", fmt.Errorf("headers.authorization names ${%s}: only variables whose name starts with %s are read, so that a test file cannot send the environment's other secrets", refused, EnvPrefix)
	case missing != "":
		return "", fmt.Errorf("headers.authorization names ${%s}, which is not set in the environment", missing)
	}
	return out, nil
}

// RunTarget sends every case of files that the wire can carry to t and
// compares the deployment's answer with the case's expectation, field by
// field as far as the wire returns them. Cases that cannot be sent as the
// file means them are skipped and counted, each with its reason: one
// whose decision (by the policy file, in-process) consults the ownership
// store, whose data the case supplies and the deployment keeps in its own;
// one whose decision at its fixed now differs from the decision at the
// wall clock, at which the deployment decides; a token that cannot be
// minted; and what the protocol cannot carry. Matrix cases are sent like
// any other on these terms. Coverage is not computed: a deployment does
// not say which scopes it matched beyond what its answer carries.
func (r *Runner) RunTarget(ctx context.Context, files []*File, t Target, opts TargetOptions) *Report {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	iss := opts.Issuer
	if iss == "" && len(r.pol.File.Issuers) > 0 {
		iss = r.pol.File.Issuers[0].Issuer
	}
	rep := &Report{Target: true}
	rep.Results = r.eachCase(files, func(c *Case, f *File, res *Result) {
		r.sendCase(ctx, res, c, f, t, &opts, iss, now)
	})
	for _, res := range rep.Results {
		switch {
		case res.Skip != "":
			rep.Skipped++
		case res.Pass:
			rep.Passed++
		default:
			rep.Failed++
		}
	}
	return rep
}

// sendCase runs case c against t and fills res.
func (r *Runner) sendCase(ctx context.Context, res *Result, c *Case, f *File, t Target, opts *TargetOptions, iss string, now func() time.Time) {
	if res.Skip = mintReason(c, opts, iss); res.Skip != "" {
		return
	}
	if res.Skip = r.localContext(ctx, c, f, now); res.Skip != "" {
		return
	}
	req, err := r.request(c, func(spec *TokenSpec) (string, error) {
		return r.MintWith(opts.Signer, spec, now(), opts.Issuer, opts.Audience)
	})
	if err == nil && opts.Env != nil && setsAuthorization(c) {
		req.Authorization, err = expandEnv(req.Authorization, opts.Env)
	}
	if err != nil {
		res.Error = err.Error()
		return
	}
	if res.Skip = t.Carries(&req); res.Skip != "" {
		return
	}
	v, err := t.Check(ctx, &req)
	if err != nil {
		res.Error = err.Error()
		return
	}
	want := wireExpect(&c.Expect, &v)
	res.Want = describeWant(&want)
	res.Got = describeVerdict(&v)
	res.Pass = matchesVerdict(&want, &v)
}

// mintReason says why the token of case c cannot be minted for a
// deployment, or "".
func mintReason(c *Case, opts *TargetOptions, iss string) string {
	if c.Token == nil || c.Token.None || setsAuthorization(c) {
		return ""
	}
	switch {
	case opts.Signer == nil:
		return "the case's token must be minted: give --target-key, the key of a test issuer the deployment trusts, or set headers.authorization"
	case c.Token.Iss != "" && c.Token.Iss != iss:
		return fmt.Sprintf("the token names issuer %q; only the test issuer's (%q) tokens can be minted", c.Token.Iss, iss)
	}
	return ""
}

// localContext says why case c (of file f) depends on context only the
// in-process engine has, or "": it decides the case with the policy file
// and looks at what the decision used. Ownership data is the case's (or
// the matrix's stand-in that the subject owns everything) while a
// deployment asks its own store; a fixed now is the case's while a
// deployment decides at its own clock, so such a case is sent only when
// the file's policy decides it the same at now().
func (r *Runner) localContext(ctx context.Context, c *Case, f *File, now func() time.Time) string {
	const owners = "the decision consults the ownership store (an owner rule): the case's ownership data cannot be sent, and a deployment asks its own store"
	d, err := r.Decide(ctx, c, f)
	if err != nil {
		return "" // sending it reports the error
	}
	if r.owners.asked {
		return owners
	}
	fixed := c.Now
	if fixed == "" {
		fixed = f.Now
	}
	if fixed == "" {
		return ""
	}
	cc, ff := *c, *f
	cc.now, ff.now = now(), time.Time{}
	d2, err := r.Decide(ctx, &cc, &ff)
	if err != nil {
		return ""
	}
	if r.owners.asked {
		return owners
	}
	if d.Allow != d2.Allow || d.Code != d2.Code || d.Route != d2.Route {
		return fmt.Sprintf("the case fixes now (%s), and the policy decides it otherwise at the deployment's clock (%s instead of %s)", fixed, shortGot(&d2), shortGot(&d))
	}
	return ""
}

// shortGot is "allow" or "deny CODE".
func shortGot(d *decision.Decision) string {
	if d.Allow {
		return "allow"
	}
	return "deny " + d.Code.String()
}

// wireExpect is e without the fields the wire did not return, so that
// only what the deployment said is compared (and reported as wanted). An
// expected reason implies the verdict, which is always compared.
func wireExpect(e *Expect, v *Verdict) Expect {
	out := Expect{Allow: e.Allow}
	if out.Allow == nil {
		code, _ := decision.ParseCode(e.Reason)
		allow := code == decision.OK
		out.Allow = &allow
	}
	if v.Reason != "" {
		out.Reason = e.Reason
	}
	if v.Status != 0 {
		out.Status = e.Status
	}
	if v.HasRoute {
		out.Route = e.Route
	}
	if v.HasScopesUsed {
		out.ScopesUsed = e.ScopesUsed
	}
	if v.HasMessage {
		out.MessageContains = e.MessageContains
	}
	return out
}

func matchesVerdict(e *Expect, v *Verdict) bool {
	if *e.Allow != v.Allow {
		return false
	}
	if e.Reason != "" && e.Reason != v.Reason {
		return false
	}
	if e.Status != 0 && e.Status != v.Status {
		return false
	}
	if e.Route != "" && e.Route != v.Route {
		return false
	}
	if e.ScopesUsed != nil {
		want, got := slices.Clone(*e.ScopesUsed), slices.Clone(v.ScopesUsed)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			return false
		}
	}
	return e.MessageContains == "" || strings.Contains(v.Message, e.MessageContains)
}

func describeVerdict(v *Verdict) string {
	var b strings.Builder
	switch {
	case v.Allow:
		b.WriteString("allow")
	case v.Reason != "":
		b.WriteString("deny " + v.Reason)
	default:
		b.WriteString("deny")
	}
	if v.HasRoute && v.Route != "" {
		b.WriteString(" route=" + v.Route)
	}
	if v.HasScopesUsed && len(v.ScopesUsed) > 0 {
		b.WriteString(" scopes_used=[" + strings.Join(v.ScopesUsed, " ") + "]")
	}
	if v.Status != 0 {
		fmt.Fprintf(&b, " status=%d", v.Status)
	}
	if !v.Allow && v.Message != "" {
		b.WriteString(": " + v.Message)
	}
	return b.String()
}
