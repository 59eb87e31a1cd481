package decision

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// PolicyFile is the policy file as written by users (YAML). Its field names
// are a public contract documented in docs/policy.md and in the JSON Schema
// docs/policy.schema.json: extend freely, never rename.
type PolicyFile struct {
	// Version is an optional label; the effective policy version is this
	// label plus a hash of the file's content.
	Version string `yaml:"version"`
	// Environment is the environment the policy is written for (e.g. prod).
	Environment string       `yaml:"environment"`
	Issuers     []IssuerSpec `yaml:"issuers"`
	Routes      []RouteSpec  `yaml:"routes"`
	// Default is what happens to a request no route matches. Only "deny" is
	// accepted: write a public catch-all route to allow instead.
	Default  string        `yaml:"default"`
	Upstream *UpstreamSpec `yaml:"upstream"`
	Paths    *PathSpec     `yaml:"paths"`

	// Contextual constraints (constraints_spec.go).
	Networks       map[string][]string    `yaml:"networks"`
	Windows        map[string]*WindowSpec `yaml:"windows"`
	TrustedProxies *TrustedProxiesSpec    `yaml:"trusted_proxies"`
	Lookups        map[string]*LookupSpec `yaml:"lookups"`

	// Governance (governance_spec.go): the scope catalog, segments, clients
	// and their grants, and drift detection.
	Scopes   []ScopeSpec   `yaml:"scopes"`
	Segments []SegmentSpec `yaml:"segments"`
	Clients  []ClientSpec  `yaml:"clients"`
	Drift    *DriftSpec    `yaml:"drift"`

	// DPoP tunes the checks of DPoP proofs (RFC 9449, dpop_compile.go).
	DPoP *DPoPSpec `yaml:"dpop"`
}

// IssuerSpec is one trusted token issuer.
type IssuerSpec struct {
	Issuer     string   `yaml:"issuer"`
	Audiences  []string `yaml:"audiences"`
	JWKSFile   string   `yaml:"jwks_file"`
	JWKSURL    string   `yaml:"jwks_url"`
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew tolerated on exp, nbf and iat; default 30s.
	ClockSkew *Duration `yaml:"clock_skew"`
	// RequireATJWT requires the RFC 9068 header typ "at+jwt".
	RequireATJWT bool `yaml:"require_at_jwt"`
	// ScopeClaims are the claims scopes are read from, in order; default
	// [scope, scp, scopes]. Each may be a space-separated string or an array.
	ScopeClaims []string `yaml:"scope_claims"`
	// DeviceClaim names the claim holding the id of the device a token was
	// issued to (for example did or device_id), so that device revocations
	// (an SSF device-compliance-change, scopegate revoke --device) can
	// find its tokens. A string claim; "" reads none.
	DeviceClaim string `yaml:"device_claim"`
	// JWKSRefreshInterval is how often a jwks_url is refetched; default 5m.
	JWKSRefreshInterval *Duration `yaml:"jwks_refresh_interval"`
	// JWKSMinRefreshInterval bounds refetches triggered by unknown kids;
	// default 10s.
	JWKSMinRefreshInterval *Duration `yaml:"jwks_min_refresh_interval"`
	// JWKSCAFile is an optional PEM bundle to trust for a jwks_url, a
	// discovery document and the endpoints it names.
	JWKSCAFile string `yaml:"jwks_ca_file"`
	// Discovery takes the key set (jwks_uri) and the introspection
	// endpoint from the issuer's discovery document,
	// {issuer}/.well-known/openid-configuration, else RFC 8414's
	// oauth-authorization-server document (discovery.go).
	Discovery bool `yaml:"discovery"`
	// OpenIDConfigurationURL is the discovery document's URL, when it is
	// not at the well-known location; it implies discovery.
	OpenIDConfigurationURL string `yaml:"openid_configuration_url"`
	// Introspection accepts opaque access tokens of this issuer by asking
	// its introspection endpoint (RFC 7662; introspection_spec.go).
	Introspection *IntrospectionSpec `yaml:"introspection"`
	// DPoP "required" makes every token of this issuer need a DPoP proof
	// (RFC 9449); "" checks proofs only for tokens bound with cnf.jkt.
	DPoP string `yaml:"dpop"`
}

// RouteSpec is one route rule.
type RouteSpec struct {
	Name    string       `yaml:"name"`
	Match   MatchSpec    `yaml:"match"`
	Require *RequireSpec `yaml:"require"`
	// Public routes need no token at all.
	Public bool `yaml:"public"`
	// When holds the route's contextual constraints.
	When *WhenSpec `yaml:"when"`
	// Owner requires the token's claim to own the resource named by a path
	// parameter, through a lookup.
	Owner *OwnerSpec `yaml:"owner"`
	// Mode "shadow" evaluates the route's rule and records the would-be
	// decision without enforcing it; "" or "enforce" enforces.
	Mode string `yaml:"mode"`
	// CrossSegment explains why a route may require scopes of several
	// segments (otherwise rejected at load).
	CrossSegment string `yaml:"cross_segment"`
	// SMART makes the route a SMART on FHIR route (governance_spec.go).
	SMART *SMARTRouteSpec `yaml:"smart"`
	// DPoP "required" makes every token on this route need a DPoP proof
	// (RFC 9449); "" checks proofs only for tokens bound with cnf.jkt.
	DPoP string `yaml:"dpop"`
}

// MatchSpec selects requests.
type MatchSpec struct {
	// Methods the route applies to; empty means every method.
	Methods []string `yaml:"methods"`
	// Path is a template: literal segments, {param} segments and a final
	// {rest...} segment.
	Path string `yaml:"path"`
}

// RequireSpec is a scope requirement: every scope of AllOf, and at least
// one of AnyOf when AnyOf is not empty.
type RequireSpec struct {
	AllOf []string `yaml:"all_of"`
	AnyOf []string `yaml:"any_of"`
}

// ScopeSpec is one entry of the scope catalog: every scope is declared once
// with its purpose, owner, risk and lifecycle, plus the constraints that
// apply wherever the scope grants access.
type ScopeSpec struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Owner       string `yaml:"owner"`
	Segment     string `yaml:"segment"`
	// Risk is low, medium or high.
	Risk string `yaml:"risk"`
	// MaxLifetime bounds exp - iat of a token carrying the scope; MaxAge
	// bounds now - iat.
	MaxLifetime *Duration `yaml:"max_lifetime"`
	MaxAge      *Duration `yaml:"max_age"`
	// Implies lists scopes this one implies (orders:write implies orders:read).
	Implies []string `yaml:"implies"`
	// Status is active (default), deprecated or retired.
	Status      string `yaml:"status"`
	Replacement string `yaml:"replacement"`
	// Sunset is the date (YYYY-MM-DD) a deprecated scope stops working.
	Sunset string `yaml:"sunset"`
	// When holds constraints that apply wherever this scope grants access.
	When *WhenSpec `yaml:"when"`
	// Mode "shadow" records, without enforcing, the scope's constraints.
	Mode string `yaml:"mode"`
}

// UpstreamSpec names the headers an allow adds for the upstream.
type UpstreamSpec struct {
	SubjectHeader      string `yaml:"subject_header"` // default x-scopegate-subject
	ClientHeader       string `yaml:"client_header"`  // default x-scopegate-client
	ScopesHeader       string `yaml:"scopes_header"`  // default x-scopegate-scopes
	StripAuthorization bool   `yaml:"strip_authorization"`
}

// PathSpec tunes path normalization.
type PathSpec struct {
	// CaseInsensitive matches literal segments without regard to ASCII case.
	CaseInsensitive bool `yaml:"case_insensitive"`
	// AllowSemicolon accepts ';' in paths (as a literal character). By
	// default a path with ';' is denied with path_invalid, because servers
	// that strip "matrix parameters" would see another path than the PDP.
	AllowSemicolon bool `yaml:"allow_semicolon"`
	// MaxLength is the longest request path (without its query) accepted,
	// in bytes; default 8192. A longer path is denied with path_invalid.
	MaxLength int `yaml:"max_length"`

	// tooLongMsg is the path_invalid message for MaxLength, built at load
	// so that the deny allocates nothing.
	tooLongMsg string
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration struct{ time.Duration }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"30s\" or \"5m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: write it like \"30s\" or \"5m\"", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	d.Duration = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
