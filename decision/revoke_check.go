package decision

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/scopegate/scopegate/decision/suggest"
)

// Checking a revocation against the policy.
//
// A revocation that can never match is worse than none: the operator
// believes a token refused that is not. Revocation.Validate checks what a
// revocation is on its own (the store runs it); CheckRevocation also checks
// it against the policy in force, so that the Admin API (and the CLI, which
// goes through it) refuses, naming the close match, an issuer the policy
// does not have, a scope no route, catalog entry or admin check knows, a
// segment the catalog does not declare, and a path prefix that no request
// path could be normalized to; a path prefix not in canonical form (for
// example "/%6Frders" or "/orders/") is rewritten into it ("/orders").

// CheckRevocation normalizes r's path prefix into the canonical path form
// of the policy (paths.*) and reports the first reason r could never match
// a token this policy accepts, naming the field and the close match. It
// runs r.Validate. knownScopes are scopes beyond the policy's that a check
// outside the routes requires (the admin API's scope), so revoking them is
// not a no-op. A nil policy checks r.Validate only.
func (p *Policy) CheckRevocation(r *Revocation, knownScopes ...string) error {
	if prefix, ok := r.PathPrefix(); ok {
		norm, err := p.normalizePrefix(prefix)
		if err != nil {
			return err
		}
		r.Segment = norm
	}
	if err := r.Validate(); err != nil {
		return err
	}
	if p == nil {
		return nil
	}
	if r.Issuer != "" && p.Issuers[r.Issuer] == nil {
		return fmt.Errorf("revocation: issuer %q is not an issuer of the policy, so the revocation would never match a token%s", r.Issuer, p.issuerHint(r.Issuer))
	}
	if r.Kind == RevokeDevice && !p.readsDevices(r.Issuer) {
		if r.Issuer != "" {
			return fmt.Errorf("revocation: issuer %q names no device_claim, so its tokens carry no device id and the revocation would never match; set device_claim on the issuer (e.g. device_claim: did)", r.Issuer)
		}
		return errors.New("revocation: no issuer of the policy names a device_claim, so no token carries a device id and the revocation would never match; set device_claim on the issuer whose tokens name devices (e.g. device_claim: did)")
	}
	if r.Scope != "" && !p.knowsScope(r.Scope, knownScopes) {
		hint := suggest.DidYouMean(r.Scope, p.scopeCandidates(knownScopes))
		return fmt.Errorf("revocation: scope %q is not a scope of the policy (no route, catalog entry or admin check requires it), so the revocation would take nothing away%s", r.Scope, hint)
	}
	if _, isPath := r.PathPrefix(); r.Segment != "" && !isPath {
		var names []string
		if p.gov != nil {
			names = p.gov.segNames
		}
		if !slices.Contains(names, r.Segment) {
			if len(names) == 0 {
				return fmt.Errorf("revocation: segment %q: the policy's scope catalog declares no segments; name a scope, or a path prefix starting with /", r.Segment)
			}
			hint := ""
			if s := suggest.Closest(r.Segment, names); s != "" {
				hint = fmt.Sprintf("did you mean %q? ", s)
			}
			return fmt.Errorf("revocation: segment %q is not a segment of the scope catalog; %s(segments: %s)", r.Segment, hint, strings.Join(names, ", "))
		}
	}
	return nil
}

// readsDevices reports whether tokens of iss ("" for any issuer) can carry
// a device id: its issuer, or some issuer, names a device_claim.
func (p *Policy) readsDevices(iss string) bool {
	if iss != "" {
		return p.Issuers[iss] != nil && p.Issuers[iss].DeviceClaim != ""
	}
	for _, i := range p.Issuers {
		if i.DeviceClaim != "" {
			return true
		}
	}
	return false
}

// normalizePrefix returns the path prefix in the canonical form request
// paths are normalized to, without a trailing '/'.
func (p *Policy) normalizePrefix(prefix string) (string, error) {
	if strings.IndexByte(prefix, '?') >= 0 {
		return "", fmt.Errorf("revocation: segment %q has a query: give a path prefix only, e.g. /v1/payments", prefix)
	}
	var opts *PathSpec
	if p != nil {
		opts = &p.Paths
	}
	norm, detail, ok := normalizePath(prefix, opts)
	if !ok {
		return "", fmt.Errorf("revocation: segment %q is not a path prefix a request path could have: %s", prefix, detail)
	}
	if norm != "/" {
		norm = strings.TrimSuffix(norm, "/")
	}
	if p != nil && p.Paths.CaseInsensitive {
		// Compared ignoring ASCII case (pathUnder); store one spelling.
		norm = lowerASCII(norm)
	}
	return norm, nil
}

// issuerHint names the policy's issuer closest to iss: the same but for a
// trailing '/' or ASCII case, else within a few edits; else the list.
func (p *Policy) issuerHint(iss string) string {
	names := make([]string, 0, len(p.Issuers))
	for name := range p.Issuers {
		names = append(names, name)
	}
	slices.Sort(names)
	trim := func(s string) string { return strings.TrimRight(s, "/") }
	for _, n := range names {
		if strings.EqualFold(trim(n), trim(iss)) {
			return fmt.Sprintf("; did you mean %q? (the iss claim is compared exactly, trailing '/' included)", n)
		}
	}
	// Issuers are long URLs: allow a third edit (http for https, a
	// missing path segment letter).
	if best, _ := (suggest.Options{MaxEdits: 3}).Closest(iss, names); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	if len(names) > 5 {
		names = append(names[:5], "…")
	}
	return fmt.Sprintf(" (issuers: %s)", strings.Join(names, ", "))
}

// knowsScope reports whether some check of the policy can require scope:
// a route's requirement (or what it implies), a catalog entry, or one of
// extra.
func (p *Policy) knowsScope(scope string, extra []string) bool {
	if _, ok := p.scopeIndex[scope]; ok {
		return true
	}
	if p.gov != nil && p.gov.catalog[scope] != nil {
		return true
	}
	return slices.Contains(extra, scope)
}

func (p *Policy) scopeCandidates(extra []string) []string {
	out := slices.Clone(p.scopeNames)
	if p.gov != nil {
		for _, s := range p.gov.order {
			out = append(out, s.name)
		}
	}
	out = append(out, extra...)
	slices.Sort(out)
	return slices.Compact(out)
}
