package decision

import (
	"fmt"
	"strings"
	"time"
)

// Policy is a compiled policy: lookup tables built once at load and never
// mutated afterwards, so any number of decisions read it without locks. A
// reload compiles a new Policy and swaps one pointer (Engine.SetPolicy).
type Policy struct {
	// Version identifies the policy: the file's version label (if any) and a
	// hash of its content, e.g. "v3+9f2c1ab0".
	Version string
	// Source is the file the policy was loaded from ("" if from bytes).
	Source string
	// File is the parsed file the policy was compiled from.
	File *PolicyFile
	// Warnings are the problems found that did not stop the policy from
	// loading (a LoadError carries them only when there are errors too).
	Warnings []Problem

	Environment string
	Routes      []*Route
	Issuers     map[string]*Issuer
	Upstream    UpstreamSpec
	Paths       PathSpec

	router *router
	// shadowRouter matches every route, shadow ones included; nil when no
	// route is in shadow mode.
	shadowRouter *router
	// scopeIndex interns every scope a route names to a small integer, so a
	// route's requirement and a token's grant are compared as bitsets.
	scopeIndex map[string]int
	scopeNames []string
	// opaque picks the issuer that introspects a token that is not a JWT.
	opaque opaqueRecognizer

	policyGovernance
	policyConstraints

	dpop dpopConf
}

// Route is one compiled route rule.
type Route struct {
	Name     string
	Index    int // position in the file
	Line     int // line in the file, 0 if unknown
	Methods  []string
	Template string
	Public   bool
	// Shadow routes are evaluated and their would-be decision recorded in
	// Decision.Shadow, but never answer a request.
	Shadow bool
	// ParamNames are the names of the template's {param} and {rest...}
	// segments, in order; Params values line up with them.
	ParamNames []string
	AllOf      []string
	AnyOf      []string

	allOf []scopeBit
	anyOf []scopeBit
	// scopeChallenge is the scope attribute of an insufficient_scope
	// challenge: the required scopes, space-separated.
	scopeChallenge string
	// missingMemo holds the texts of insufficient_scope denies, per set
	// of missing scopes (missing.go), so a repeated deny allocates nothing.
	missingMemo *missingMemo

	routeGovernance
	routeConstraints

	// DPoPRequired: every token on the route needs a DPoP proof.
	DPoPRequired bool
}

// RequiredScopes returns the scopes an insufficient_scope challenge names:
// all_of then any_of, space-separated.
func (r *Route) RequiredScopes() string { return r.scopeChallenge }

// Issuer is one compiled issuer.
type Issuer struct {
	Name       string
	Audiences  []string
	Algorithms []string
	ClockSkew  time.Duration
	// RequireATJWT requires typ at+jwt (RFC 9068).
	RequireATJWT bool
	ScopeClaims  []string
	// KeyRef names the issuer's key set; the engine's KeyResolver finds it
	// at decision time.
	KeyRef KeyRef
	// FileKeys are the keys of a jwks_file as Load read them (nil for a
	// jwks_url, and after Compile, which reads nothing). A key source may
	// start serving with them.
	FileKeys []Key
	// Introspection is set when the issuer's opaque tokens are
	// introspected (RFC 7662).
	Introspection *Introspection
	// Fingerprint changes whenever a setting that affects token validation
	// changes, so cached verifications made under other settings are redone.
	Fingerprint uint64
	Line        int
	// DPoPRequired: every token of the issuer needs a DPoP proof.
	DPoPRequired bool
	// DeviceClaim names the claim that holds the id of the device a token
	// was issued to (Token.DeviceID); "" reads none.
	DeviceClaim string

	issuerBinding
}

// Problem is one error (or warning) found while loading a policy: where it
// is and how to fix it.
type Problem struct {
	File    string
	Line    int    // 0 when unknown
	Field   string // dotted path, e.g. routes[2].match.path
	Message string // what is wrong and how to fix it
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteByte(':')
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:", p.Line)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// LoadError is every error found while loading a policy, reported at once.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	var b strings.Builder
	n := 0
	for _, p := range e.Problems {
		if !p.Warning {
			n++
		}
	}
	fmt.Fprintf(&b, "policy has %d error(s):", n)
	for _, p := range e.Problems {
		if p.Warning {
			continue
		}
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}
