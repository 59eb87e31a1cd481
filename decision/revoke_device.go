package decision

import (
	"errors"
	"slices"
	"strings"
	"time"
)

// Device and assurance revocations, the shapes two more identity events
// take: a device found non-compliant (CAEP device-compliance-change), and
// a subject's assurance lowered (CAEP assurance-level-change).
//
// A device revocation is keyed by issuer ("" for every issuer) and the
// device id a token carries in its issuer's device_claim; tokens of an
// issuer without a device_claim, or without the claim, are never matched.
// It is whole or narrowed like a subject revocation.
//
// An assurance revocation is keyed like a subject revocation and is
// neither whole nor narrowed: it changes nothing but step-up. On a route
// (or scope) whose step_up lists acr values, a token it covers (Subject,
// issued before IssuedBefore) is judged as if its acr were ACRLevel, and
// refused with revoked when that level is not among the values. So a
// token whose acr is above the subject's new level is refused where the
// higher level was needed; a token at or below the level, a route without
// step-up, and tokens issued after the change are untouched. No ranking
// of acr values is needed: a step_up's list names the levels that are
// enough.

const (
	detailDeviceRevoked      = "the tokens of the token's device have been revoked"
	detailDeviceScopeRevoked = "the scope this route requires has been revoked for the token's device"
	detailDevicePathRevoked  = "the token's device has been revoked for this path"
	detailAssuranceRevoked   = "the subject's assurance level was lowered after the token was issued, and this route's step-up requires a higher one: authenticate again"
)

func (r *Revocation) validateAssurance() error {
	if r.Subject == "" {
		return errors.New("revocation: an assurance revocation needs subject: the sub claim whose assurance level was lowered")
	}
	if r.Scope != "" || r.Segment != "" {
		return errors.New("revocation: an assurance revocation applies to step-up routes only: leave scope and segment empty")
	}
	if strings.ContainsAny(r.ACRLevel, " \t\r\n") {
		return errors.New("revocation: acr_level is one acr value, without whitespace (e.g. urn:example:aal1); leave it empty for no level at all")
	}
	return nil
}

// checkAssurance refuses a token that an assurance revocation covers on
// a step_up of sets that its new level does not meet. It runs after the
// step-up checks passed, so the token's own acr met every one of them.
func (e *Engine) checkAssurance(sets []*whenSet, tok *Token, now time.Time, tr *Trace) (Code, string) {
	rs := e.revocations.Load()
	if rs == nil || rs.nAsr == 0 || tok.Subject == "" {
		return OK, ""
	}
	lists := [2][]*Revocation{
		rs.principalList(assuranceMap, principalKey{tok.Issuer, tok.Subject}),
		rs.principalList(assuranceMap, principalKey{"", tok.Subject}),
	}
	if len(lists[0])+len(lists[1]) == 0 {
		return OK, ""
	}
	for _, s := range sets {
		su := s.stepUp
		if su == nil || len(su.acr) == 0 || s.shadow {
			continue
		}
		for _, l := range lists {
			for _, r := range l {
				if r.ActiveAt(now) && r.covers(tok) && !slices.Contains(su.acr, r.ACRLevel) {
					tr.add("revocation", "fail", detailAssuranceRevoked)
					return Revoked, detailAssuranceRevoked
				}
			}
		}
	}
	return OK, ""
}
