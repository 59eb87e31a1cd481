package decision

import (
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// The policy-file types of contextual constraints. Their YAML names are a
// public contract (docs/policy.md, "Contextual constraints"): extend freely,
// never rename.

// WhenSpec holds the contextual constraints of a route, or of a scope of the
// catalog (where they apply wherever that scope satisfies a route). Every
// constraint that is set must hold; each failing one has its own reason.
type WhenSpec struct {
	// AppliesIn limits the whole block to these environments: elsewhere
	// none of its constraints is checked. It lets one policy file say
	// "in prod, writes need the maintenance window and on-call".
	AppliesIn []string `yaml:"applies_in"`
	// SourceIP allows and denies client addresses by CIDR or named network.
	SourceIP *SourceIPSpec `yaml:"source_ip"`
	// Environments the rule works in; NotEnvironments the ones it does not.
	Environments    []string `yaml:"environments"`
	NotEnvironments []string `yaml:"not_environments"`
	// Time names the windows a request must be inside, or outside.
	Time *TimeSpec `yaml:"time"`
	// Claims are typed conditions on the token's claims, all of which must
	// hold.
	Claims []ClaimConditionSpec `yaml:"claims"`
	// StepUp requires a strong or recent authentication (RFC 9470).
	StepUp *StepUpSpec `yaml:"step_up"`
	// MaxTokenLifetime bounds exp - iat; MaxTokenAge bounds now - iat.
	MaxTokenLifetime *Duration `yaml:"max_token_lifetime"`
	MaxTokenAge      *Duration `yaml:"max_token_age"`
	// CertificateBound requires a certificate-bound token (RFC 8705
	// cnf.x5t#S256) whose certificate the request presents. A token that
	// carries cnf.x5t#S256 is always checked, required or not.
	CertificateBound bool `yaml:"certificate_bound"`
}

// SourceIPSpec allows and denies client addresses. Each entry is a CIDR
// ("10.0.0.0/8", "2001:db8::/32"), a single address, or the name of a set
// under networks. Deny wins over allow; an empty allow allows every address
// that deny does not name.
type SourceIPSpec struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// TimeSpec names windows (under windows) a request must be inside (any one
// of Within) and outside (every one of NotWithin).
type TimeSpec struct {
	Within    []string `yaml:"within"`
	NotWithin []string `yaml:"not_within"`
}

// ClaimConditionSpec is one typed condition on a claim: exactly one of
// Equals, In, Contains and Exists is set.
type ClaimConditionSpec struct {
	// Claim is the claim's name; a dotted name (realm_access.roles) reaches
	// into nested objects when no top-level claim has that exact name.
	Claim    string      `yaml:"claim"`
	Equals   *ClaimValue `yaml:"equals"`
	In       ClaimValues `yaml:"in"`
	Contains *ClaimValue `yaml:"contains"`
	Exists   *bool       `yaml:"exists"`
}

// ClaimValue is a scalar a claim is compared with. Its YAML type is kept,
// so comparisons are typed: acme and "42" are strings, 42 is a number, true
// is a boolean, and a string never equals a number.
type ClaimValue struct {
	// Kind is "string", "number" or "bool".
	Kind string
	// Text is the value as written.
	Text string
}

// UnmarshalYAML implements yaml.Unmarshaler: only scalars are accepted.
func (v *ClaimValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("a claim value must be a single string, number or true/false, not %s", describeYAMLKind(n))
	}
	switch n.ShortTag() {
	case "!!str":
		*v = ClaimValue{Kind: "string", Text: n.Value}
	case "!!int", "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return fmt.Errorf("invalid number %q; quote it to compare as a string", n.Value)
		}
		*v = ClaimValue{Kind: "number", Text: n.Value}
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return fmt.Errorf("invalid boolean %q; write true or false", n.Value)
		}
		*v = ClaimValue{Kind: "bool", Text: strconv.FormatBool(b)}
	case "!!null":
		return fmt.Errorf("a claim value must not be null; to require that a claim is absent, write exists: false")
	default:
		// Timestamps and other resolved scalars compare as the text written.
		*v = ClaimValue{Kind: "string", Text: n.Value}
	}
	return nil
}

// MarshalYAML implements yaml.Marshaler, keeping the value's type.
func (v ClaimValue) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: v.Text, Tag: "!!str"}
	switch v.Kind {
	case "number":
		n.Tag = "!!float"
		if _, err := strconv.ParseInt(v.Text, 10, 64); err == nil {
			n.Tag = "!!int"
		}
	case "bool":
		n.Tag = "!!bool"
	}
	return n, nil
}

// ClaimValues is the list of an in condition. It is decoded as a whole so
// that a null item is reported rather than silently dropped.
type ClaimValues []ClaimValue

// UnmarshalYAML implements yaml.Unmarshaler.
func (vs *ClaimValues) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		if n.Kind == yaml.ScalarNode {
			return fmt.Errorf("expected a list, e.g. [%s], got the single value %q", n.Value, n.Value)
		}
		return fmt.Errorf("expected a list of values, e.g. [admin, support], not %s", describeYAMLKind(n))
	}
	out := make(ClaimValues, 0, len(n.Content))
	for i, item := range n.Content {
		var v ClaimValue
		if err := v.UnmarshalYAML(item); err != nil {
			return fmt.Errorf("item %d: %w", i+1, err)
		}
		out = append(out, v)
	}
	*vs = out
	return nil
}

// StepUpSpec requires a stronger or more recent user authentication. A
// failing requirement is a 401 with an RFC 9470 challenge naming acr_values
// and max_age, so the client can ask the authorization server for it.
type StepUpSpec struct {
	// ACR: the token's acr must be one of these.
	ACR []string `yaml:"acr"`
	// AMR: the token's amr must contain at least one of these.
	AMR []string `yaml:"amr"`
	// AMRAll: the token's amr must contain every one of these.
	AMRAll []string `yaml:"amr_all"`
	// MaxAuthAge bounds now - auth_time; a token without auth_time fails.
	MaxAuthAge *Duration `yaml:"max_auth_age"`
}

// OwnerSpec is a route's ownership rule: the lookup's store must name the
// token's claim as an owner of the resource the key names.
type OwnerSpec struct {
	// Lookup names an entry of lookups.
	Lookup string `yaml:"lookup"`
	// Key is the resource key: a template of the route's path parameters,
	// e.g. "{id}" or "{tenant}/{id}".
	Key string `yaml:"key"`
	// Claim is the token claim compared with the owners; default sub.
	Claim string `yaml:"claim"`
}

// LookupSpec configures one named ownership lookup. How the store queries
// its backend is the store's configuration, not the policy's.
type LookupSpec struct {
	// Timeout bounds one lookup (default 100ms); past it the decision is
	// ownership_unavailable, never a hang and never an allow.
	Timeout *Duration `yaml:"timeout"`
	// CacheTTL and NegativeTTL are how long the caching store keeps a found
	// and a not-found answer.
	CacheTTL    *Duration `yaml:"cache_ttl"`
	NegativeTTL *Duration `yaml:"negative_ttl"`
}

// WindowSpec is a named time window: weekdays and hours in an IANA time
// zone, an absolute date range, or both (then both must hold).
type WindowSpec struct {
	// Zone is an IANA time zone such as Europe/Berlin; default UTC.
	Zone string `yaml:"zone"`
	// Days are weekdays (mon ... sun, or ranges such as mon-fri); empty
	// means every day. With hours that cross midnight, a day names the day
	// the window opens.
	Days []string `yaml:"days"`
	// From and To are wall-clock times "HH:MM" in Zone; To is exclusive and
	// may be "24:00". To earlier than From crosses midnight.
	From string `yaml:"from"`
	To   string `yaml:"to"`
	// Dates is an absolute range.
	Dates *DateRangeSpec `yaml:"dates"`
}

// DateRangeSpec is an absolute range: dates (YYYY-MM-DD, inclusive, whole
// days in the window's zone) or RFC 3339 instants (From inclusive, To
// exclusive). Either end may be left out.
type DateRangeSpec struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// TrustedProxiesSpec says which proxies in front of the PDP's caller are
// trusted to append the client address to X-Forwarded-For. Without it,
// X-Forwarded-For is ignored and the client is the peer address.
type TrustedProxiesSpec struct {
	// Hops is the most trusted proxies walked, from the right.
	Hops int `yaml:"hops"`
	// CIDRs are the addresses of the trusted proxies (CIDRs, addresses or
	// names of networks).
	CIDRs []string `yaml:"cidrs"`
}

func describeYAMLKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "this"
}
