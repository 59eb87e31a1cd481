package decision

// Code is the stable, machine-readable reason for a decision. Every deny has
// exactly one primary Code, chosen by the order of the checks in Decide, so
// the same request always gets the same answer. The string form of each code
// is a public contract: it appears in the x-scopegate-reason header, in audit
// logs and in policy tests, and is never renamed.
type Code uint8

// The reason codes. OK is the code of an allow.
const (
	OK Code = iota
	TokenMissing
	TokenInvalid
	TokenExpired
	TokenNotYetValid
	IssuerUnknown
	AudienceMismatch
	AlgorithmNotAllowed
	KeyNotFound
	RequestInvalid
	PathInvalid
	NoRoute
	MethodNotAllowed
	InsufficientScope
	Internal
	// Contextual constraints.
	SourceIPNotAllowed
	EnvironmentNotAllowed
	OutsideTimeWindow
	ClaimConditionFailed
	NotOwner
	ResourceNotFound
	OwnershipUnavailable
	InsufficientUserAuthentication
	TokenLifetimeExceedsScope
	CertificateBindingMismatch
	// Governance and revocation.
	ScopeRetired
	ScopeDrift
	Revoked
	RevocationStale
	// Keys.
	KeySetUnavailable
	// IntrospectionUnavailable: the issuer's introspection endpoint did
	// not answer (opaque tokens).
	IntrospectionUnavailable
	// DPoP (RFC 9449): sender-constrained tokens and their proofs.
	DPoPProofMissing
	DPoPProofInvalid
	DPoPSignatureInvalid
	DPoPKeyMismatch
	DPoPMethodMismatch
	DPoPURIMismatch
	DPoPProofStale
	DPoPProofReplayed
	DPoPAthMismatch
	DPoPNonceRequired
	DPoPDowngrade
	DPoPReplayUnavailable
	numCodes
)

// Challenge says which RFC 6750 / RFC 9470 error a deny maps to in a
// WWW-Authenticate challenge.
type Challenge uint8

// Challenge kinds.
const (
	// ChallengeNone: no challenge (the deny is not about the token).
	ChallengeNone Challenge = iota
	// ChallengeBare: a bare "Bearer" challenge with no error attribute
	// (RFC 6750 §3.1: the request carried no credentials at all).
	ChallengeBare
	// ChallengeInvalidToken: error="invalid_token" (401).
	ChallengeInvalidToken
	// ChallengeInvalidRequest: error="invalid_request" (400).
	ChallengeInvalidRequest
	// ChallengeInsufficientScope: error="insufficient_scope" with scope="..." (403).
	ChallengeInsufficientScope
	// ChallengeStepUp: error="insufficient_user_authentication" with
	// acr_values and/or max_age (RFC 9470, 401).
	ChallengeStepUp
	// ChallengeDPoPProof: a "DPoP" challenge with error="invalid_dpop_proof"
	// and the accepted algs (RFC 9449 §7.1, 401).
	ChallengeDPoPProof
	// ChallengeDPoPToken: a "DPoP" challenge with error="invalid_token": the
	// proof is sound but the token is not bound to its key, or a bound
	// token came as Bearer (RFC 9449 §7.1, 401).
	ChallengeDPoPToken
	// ChallengeDPoPNonce: a "DPoP" challenge with error="use_dpop_nonce",
	// sent with a DPoP-Nonce header naming the nonce to use (RFC 9449 §9).
	ChallengeDPoPNonce
)

type codeInfo struct {
	name      string
	message   string
	status    int // HTTP status of a deny with this code
	challenge Challenge
}

var codes = [numCodes]codeInfo{
	OK:                  {"ok", "allowed", 200, ChallengeNone},
	TokenMissing:        {"token_missing", "the request carries no bearer token in the Authorization header", 401, ChallengeBare},
	TokenInvalid:        {"token_invalid", "the bearer token is malformed or its signature does not verify", 401, ChallengeInvalidToken},
	TokenExpired:        {"token_expired", "the bearer token has expired", 401, ChallengeInvalidToken},
	TokenNotYetValid:    {"token_not_yet_valid", "the bearer token is not valid yet (nbf or iat in the future)", 401, ChallengeInvalidToken},
	IssuerUnknown:       {"issuer_unknown", "the token's issuer is not one of the policy's issuers", 401, ChallengeInvalidToken},
	AudienceMismatch:    {"audience_mismatch", "the token's audience does not name this API", 401, ChallengeInvalidToken},
	AlgorithmNotAllowed: {"algorithm_not_allowed", "the token's signing algorithm is not allowed for its issuer", 401, ChallengeInvalidToken},
	KeyNotFound:         {"key_not_found", "no key of the issuer's key set matches the token's kid and algorithm", 401, ChallengeInvalidToken},
	RequestInvalid:      {"request_invalid", "the request is malformed", 400, ChallengeInvalidRequest},
	PathInvalid:         {"path_invalid", "the request path cannot be normalized safely", 400, ChallengeNone},
	NoRoute:             {"no_route", "no route of the policy matches the request path", 403, ChallengeNone},
	MethodNotAllowed:    {"method_not_allowed", "a route matches the path but not the method", 403, ChallengeNone},
	InsufficientScope:   {"insufficient_scope", "the token lacks the scopes the route requires", 403, ChallengeInsufficientScope},
	Internal:            {"internal", "an internal error prevented a decision", 500, ChallengeNone},

	SourceIPNotAllowed:             {"source_ip_not_allowed", "the client address is not in a network the rule allows", 403, ChallengeNone},
	EnvironmentNotAllowed:          {"environment_not_allowed", "the rule does not apply in this environment", 403, ChallengeNone},
	OutsideTimeWindow:              {"outside_time_window", "the request is outside the time window the rule allows", 403, ChallengeNone},
	ClaimConditionFailed:           {"claim_condition_failed", "a claim of the token does not meet the rule's condition", 403, ChallengeNone},
	NotOwner:                       {"not_owner", "the token's subject does not own the resource", 403, ChallengeNone},
	ResourceNotFound:               {"resource_not_found", "the resource the rule looks up does not exist", 403, ChallengeNone},
	OwnershipUnavailable:           {"ownership_unavailable", "the ownership lookup failed or timed out; denied to fail closed", 403, ChallengeNone},
	InsufficientUserAuthentication: {"insufficient_user_authentication", "the authentication behind the token is not strong or recent enough (RFC 9470)", 401, ChallengeStepUp},
	TokenLifetimeExceedsScope:      {"token_lifetime_exceeds_scope", "the token lives longer, or is older, than one of its scopes allows", 401, ChallengeInvalidToken},
	CertificateBindingMismatch:     {"certificate_binding_mismatch", "the token is bound to a client certificate the request does not present (RFC 8705)", 401, ChallengeInvalidToken},
	ScopeRetired:                   {"scope_retired", "the route can only be satisfied by a retired scope", 403, ChallengeInsufficientScope},
	ScopeDrift:                     {"scope_drift", "the token carries scopes its client was not granted", 403, ChallengeNone},
	Revoked:                        {"revoked", "the token, its subject or its client has been revoked", 401, ChallengeInvalidToken},
	KeySetUnavailable:              {"key_set_unavailable", "the issuer's key set has not been loaded yet (its JWKS endpoint has not answered); denied to fail closed", 503, ChallengeNone},
	IntrospectionUnavailable:       {"introspection_unavailable", "the issuer's introspection endpoint did not answer, or its answer could not be read; denied to fail closed", 503, ChallengeNone},
	RevocationStale:                {"revocation_stale", "the revocation list is older than the staleness bound for a high-risk scope; denied to fail closed", 403, ChallengeNone},

	DPoPProofMissing:      {"dpop_proof_missing", "the token must be presented with Authorization: DPoP and exactly one DPoP proof header (RFC 9449)", 401, ChallengeDPoPProof},
	DPoPProofInvalid:      {"dpop_proof_invalid", "the DPoP proof is not a valid dpop+jwt JWS with an allowed asymmetric alg and a public jwk", 401, ChallengeDPoPProof},
	DPoPSignatureInvalid:  {"dpop_signature_invalid", "the DPoP proof's signature does not verify with the key it embeds", 401, ChallengeDPoPProof},
	DPoPKeyMismatch:       {"dpop_key_mismatch", "the DPoP proof's key is not the key the token is bound to (cnf.jkt)", 401, ChallengeDPoPToken},
	DPoPMethodMismatch:    {"dpop_method_mismatch", "the DPoP proof's htm is not the request's method", 401, ChallengeDPoPProof},
	DPoPURIMismatch:       {"dpop_uri_mismatch", "the DPoP proof's htu is not the request's URI", 401, ChallengeDPoPProof},
	DPoPProofStale:        {"dpop_proof_stale", "the DPoP proof's iat is outside the accepted window", 401, ChallengeDPoPProof},
	DPoPProofReplayed:     {"dpop_proof_replayed", "the DPoP proof's jti was already used within the accepted window", 401, ChallengeDPoPProof},
	DPoPAthMismatch:       {"dpop_ath_mismatch", "the DPoP proof's ath is not the hash of the access token it comes with", 401, ChallengeDPoPProof},
	DPoPNonceRequired:     {"dpop_nonce_required", "the DPoP proof must carry the nonce the server issued in DPoP-Nonce", 401, ChallengeDPoPNonce},
	DPoPDowngrade:         {"dpop_downgrade", "a DPoP-bound token was presented as a Bearer token", 401, ChallengeDPoPToken},
	DPoPReplayUnavailable: {"dpop_replay_unavailable", "the DPoP replay cache could not record the proof; denied to fail closed", 503, ChallengeNone},
}

// String returns the stable machine code, e.g. "insufficient_scope".
func (c Code) String() string {
	if c >= numCodes {
		return "internal"
	}
	return codes[c].name
}

// Message returns the default human-readable message for the code.
func (c Code) Message() string {
	if c >= numCodes {
		return codes[Internal].message
	}
	return codes[c].message
}

// HTTPStatus returns the HTTP status a deny with this code is answered with:
// 401 for token problems, 403 for authorization problems, 400 for malformed
// requests, 500 for internal errors and 200 for OK.
func (c Code) HTTPStatus() int {
	if c >= numCodes {
		return 500
	}
	return codes[c].status
}

// Challenge returns the kind of WWW-Authenticate challenge a deny carries.
func (c Code) Challenge() Challenge {
	if c >= numCodes {
		return ChallengeNone
	}
	return codes[c].challenge
}

// Codes returns every code, in order, for documentation and tests.
func Codes() []Code {
	out := make([]Code, 0, numCodes)
	for c := Code(0); c < numCodes; c++ {
		out = append(out, c)
	}
	return out
}

// ParseCode returns the code whose string form is s.
func ParseCode(s string) (Code, bool) {
	for c := Code(0); c < numCodes; c++ {
		if codes[c].name == s {
			return c, true
		}
	}
	return 0, false
}
