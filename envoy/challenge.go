package envoy

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/scopegate/scopegate/decision"
)

// DefaultRealm is the realm of the Bearer challenges scopegate sends when
// the server is not configured with another one.
const DefaultRealm = "scopegate"

// WWWAuthenticate returns the RFC 6750 §3 challenge for a deny, with the
// default realm, or "" when the deny carries none (it is not about the
// token, or it is an allow). It is exported so that every protocol that
// answers with HTTP semantics (ext_authz, the scopegate Check RPC, HTTP
// forward-auth) sends the very same header for the same decision.
//
// The challenge per d.Code.Challenge():
//
//	ChallengeBare:              Bearer realm="scopegate"
//	ChallengeInvalidToken:      Bearer realm="scopegate", error="invalid_token", error_description="..."
//	ChallengeInvalidRequest:    Bearer realm="scopegate", error="invalid_request", error_description="..."
//	ChallengeInsufficientScope: Bearer realm="scopegate", error="insufficient_scope", scope="a b", error_description="..."
//	ChallengeStepUp:            Bearer realm="scopegate", error="insufficient_user_authentication", error_description="...", acr_values="urn:mfa", max_age=900
//
// Attribute values are made safe for a quoted-string, since RFC 6750
// allows no escapes in error_description or scope: a double quote becomes a
// single quote, a backslash becomes a slash, and anything outside printable
// ASCII becomes a question mark.
func WWWAuthenticate(d *decision.Decision) string {
	return buildChallenge(DefaultRealm, d)
}

// buildChallenge is WWWAuthenticate with a given (already safe) realm.
func buildChallenge(realm string, d *decision.Decision) string {
	if d == nil || d.Allow {
		return ""
	}
	var errCode string
	switch d.Code.Challenge() {
	case decision.ChallengeDPoPProof:
		return dpopChallenge(realm, "invalid_dpop_proof", d)
	case decision.ChallengeDPoPToken:
		return dpopChallenge(realm, "invalid_token", d)
	case decision.ChallengeDPoPNonce:
		return dpopChallenge(realm, "use_dpop_nonce", d)
	case decision.ChallengeBare:
		return `Bearer realm="` + realm + `"`
	case decision.ChallengeInvalidToken:
		errCode = "invalid_token"
	case decision.ChallengeInvalidRequest:
		errCode = "invalid_request"
	case decision.ChallengeInsufficientScope:
		errCode = "insufficient_scope"
	case decision.ChallengeStepUp:
		errCode = "insufficient_user_authentication"
	default:
		return ""
	}
	msg := d.Message()
	var scope string
	if d.Code.Challenge() == decision.ChallengeInsufficientScope {
		// RFC 6750 §3: the scopes the token lacks, not the whole
		// requirement (Decision.MissingScopes).
		scope = d.ChallengeScope()
	}
	var b strings.Builder
	b.Grow(len(`Bearer realm="", error="", scope="", error_description=""`) + len(realm) + len(errCode) + len(scope) + len(msg))
	b.WriteString(`Bearer realm="`)
	b.WriteString(realm)
	b.WriteString(`", error="`)
	b.WriteString(errCode)
	if scope != "" {
		b.WriteString(`", scope="`)
		writeQuotable(&b, scope)
	}
	b.WriteString(`", error_description="`)
	writeQuotable(&b, msg)
	b.WriteByte('"')
	if d.Code.Challenge() == decision.ChallengeStepUp {
		// RFC 9470 §3: what the client must ask the authorization server
		// for to step up.
		if acr, maxAge, ok := d.StepUp(); ok {
			if acr != "" {
				b.WriteString(`, acr_values="`)
				writeQuotable(&b, acr)
				b.WriteByte('"')
			}
			if maxAge >= 0 {
				b.WriteString(`, max_age=`)
				b.WriteString(strconv.Itoa(maxAge))
			}
		}
	}
	return b.String()
}

// dpopChallenge is the RFC 9449 §7.1 challenge of a DPoP deny:
//
//	DPoP realm="scopegate", error="invalid_dpop_proof", error_description="...", algs="ES256 EdDSA"
func dpopChallenge(realm, errCode string, d *decision.Decision) string {
	msg := d.Message()
	algs := d.Policy.DPoPAlgorithms()
	var b strings.Builder
	b.Grow(len(`DPoP realm="", error="", error_description="", algs=""`) + len(realm) + len(errCode) + len(msg) + len(algs))
	b.WriteString(`DPoP realm="`)
	b.WriteString(realm)
	b.WriteString(`", error="`)
	b.WriteString(errCode)
	b.WriteString(`", error_description="`)
	writeQuotable(&b, msg)
	b.WriteString(`", algs="`)
	writeQuotable(&b, algs)
	b.WriteByte('"')
	return b.String()
}

// HeaderDPoPNonce is the response header naming the DPoP nonce a client
// must put in its next proof (RFC 9449 §9).
const HeaderDPoPNonce = "DPoP-Nonce"

// writeQuotable writes s so that it can stand inside a quoted-string of an
// RFC 6750 challenge: printable ASCII only, no '"' and no '\'.
func writeQuotable(b *strings.Builder, s string) {
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteByte('\'')
		case r == '\\':
			b.WriteByte('/')
		case r < 0x20 || r >= 0x7f || r == utf8.RuneError:
			b.WriteByte('?')
		default:
			b.WriteByte(byte(r))
		}
	}
}

// quotable returns s made safe by writeQuotable's rules.
func quotable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	writeQuotable(&b, s)
	return b.String()
}
