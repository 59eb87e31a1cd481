package decision

// The governance sections of the policy file: segments, registered clients
// with their grants, drift detection, and the SMART on FHIR settings of a
// route. The scope catalog entry (ScopeSpec) is in policyfile.go. Field names
// are a public contract (docs/policy.md): extend freely, never rename.

// SegmentSpec is a named, non-overlapping set of scopes that serve one
// purpose (analytics-read, billing, profile-sensitive, ...). Segments exist
// so that a token, a route or a client that mixes purposes is visible: a
// route that requires scopes of two segments must say why, and a token whose
// scopes straddle segments its client was never approved to hold together is
// drift.
type SegmentSpec struct {
	Name        string `yaml:"name"`
	Owner       string `yaml:"owner"`
	Description string `yaml:"description"`
	// Scopes are the catalog scopes of the segment. A scope may instead (or
	// also, consistently) name its segment in its own catalog entry.
	Scopes []string `yaml:"scopes"`
}

// ClientSpec is a registered OAuth client and what it was approved to hold.
// A token is matched to its client by client_id, else azp.
type ClientSpec struct {
	ClientID string `yaml:"client_id"`
	Name     string `yaml:"name"`
	Owner    string `yaml:"owner"`
	// Drift is enforce, monitor or off; default drift.default_mode.
	Drift  string      `yaml:"drift"`
	Grants []GrantSpec `yaml:"grants"`
	// SegmentsTogether lists the groups of segments the client is approved
	// to hold in one token, e.g. [[billing, profile-sensitive]]. A token
	// whose scopes touch several segments must fit in one group.
	SegmentsTogether [][]string `yaml:"segments_together"`
}

// GrantSpec is one approval: a scope, or every scope of a segment, with who
// approved it, when, why, and until when.
type GrantSpec struct {
	Scope   string `yaml:"scope"`
	Segment string `yaml:"segment"`
	// ApprovedBy and Justification are the audit trail of the approval.
	ApprovedBy    string `yaml:"approved_by"`
	Justification string `yaml:"justification"`
	// ApprovedAt and ExpiresAt are dates (YYYY-MM-DD, meaning 00:00 UTC of
	// that day) or RFC 3339 times. A grant stops counting at ExpiresAt.
	ApprovedAt string `yaml:"approved_at"`
	ExpiresAt  string `yaml:"expires_at"`
}

// DriftSpec configures drift detection: what happens when a token carries
// scopes its client holds no active grant for.
type DriftSpec struct {
	// DefaultMode is enforce, monitor (default) or off.
	DefaultMode string `yaml:"default_mode"`
	// UnregisteredClients is deny, monitor or allow: what happens to a token
	// whose client is not in clients. Default: deny when default_mode is
	// enforce, monitor when monitor, allow when off.
	UnregisteredClients string `yaml:"unregistered_clients"`
	// SegmentModes raises the mode for drift that touches a segment, e.g.
	// {billing: enforce}; the strictest applicable mode wins.
	SegmentModes map[string]string `yaml:"segment_modes"`
}

// SMARTRouteSpec makes a route a SMART on FHIR route: instead of a fixed
// require, the request's FHIR interaction (derived from method and path) must
// be granted by one of the token's SMART scopes (patient/, user/, system/).
type SMARTRouteSpec struct {
	// PatientLookup names the ownership lookup (lookups:) that answers which
	// patient a resource belongs to, with key "Type/id". patient/ scopes use
	// it for instance reads, updates and deletes of types other than Patient,
	// under the lookup's timeout (default 100ms).
	PatientLookup string `yaml:"patient_lookup"`
	// PatientClaim is the claim holding the launch patient; default patient.
	PatientClaim string `yaml:"patient_claim"`
	// PatientFilterUpstream, when there is no patient_lookup, lets patient/
	// scopes reach instances of any type and relies on the FHIR server to
	// apply the patient hint. Without it such requests are denied.
	PatientFilterUpstream bool `yaml:"patient_filter_upstream"`
}
