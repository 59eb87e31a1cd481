package decision

import (
	"context"
	"time"
)

// dpopRequiredFor reports whether a token of tok's issuer on route must
// come with a DPoP proof whatever its binding.
func dpopRequiredFor(pol *Policy, route *Route, tok *Token) bool {
	if route != nil && route.DPoPRequired {
		return true
	}
	iss := pol.Issuers[tok.Issuer]
	return iss != nil && iss.DPoPRequired
}

// checkDPoP runs the request-only DPoP checks of RFC 9449 §4.3 and §7.1
// for a verified token presented with scheme dpop (Authorization: DPoP)
// or Bearer. It returns the verified proof when one was checked, so the
// replay check can run last (checkDPoPReplay).
func (e *Engine) checkDPoP(r *Request, d *Decision, token string, dpop bool, now time.Time, pc *proofClaims) (checked bool, code Code, detail string) {
	tok, pol := d.Token, d.Policy
	tr := r.Trace
	if !dpop {
		switch {
		case tok.CnfJKT != "":
			tr.add("dpop", "fail", detailDPoPDowngrade)
			return false, DPoPDowngrade, detailDPoPDowngrade
		case dpopRequiredFor(pol, d.Route, tok):
			tr.add("dpop", "fail", detailDPoPRequired)
			return false, DPoPProofMissing, detailDPoPRequired
		}
		return false, OK, ""
	}
	code, detail = e.checkProof(r, d, token, now, pc)
	if code != OK {
		tr.add("dpop", "fail", detail)
		if code == DPoPNonceRequired {
			d.DPoPNonce = e.nonces.current(now, pol.dpop.maxAge)
		}
		return false, code, detail
	}
	if tr != nil {
		tr.add("dpop", "pass", "the DPoP proof is signed by the token's key (jkt "+tok.CnfJKT+") for "+r.Method+" "+pc.htu)
	}
	return true, OK, ""
}

func (e *Engine) checkProof(r *Request, d *Decision, token string, now time.Time, pc *proofClaims) (Code, string) {
	tok, pol := d.Token, d.Policy
	conf := &pol.dpop
	switch {
	case r.DPoPCount > 1 || containsByte(r.DPoP, ','):
		return DPoPProofInvalid, detailDPoPManyProofs
	case r.DPoPCount == 0 || trimHeaderOWS(r.DPoP) == "":
		return DPoPProofMissing, detailDPoPNoProof
	}
	p, code, detail := verifyProof(trimHeaderOWS(r.DPoP), conf, e.proofKeys)
	if code != OK {
		return code, detail
	}
	*pc = p
	if tok.CnfJKT == "" {
		return DPoPKeyMismatch, detailDPoPUnbound
	}
	if !equalConstantTime(p.jkt, tok.CnfJKT) {
		return DPoPKeyMismatch, detailDPoPThumbprint
	}
	if p.htm != r.Method {
		return DPoPMethodMismatch, detailDPoPMethod
	}
	want, ok := htuOf(r.Scheme, r.Host, d.Path)
	if !ok {
		return DPoPURIMismatch, detailDPoPNoScheme
	}
	got, ok := normalizeHTU(p.htu, &pol.Paths)
	if !ok {
		return DPoPURIMismatch, detailDPoPBadHTU
	}
	if got != want {
		return DPoPURIMismatch, detailDPoPURI
	}
	iat := time.Unix(p.iat, 0)
	switch {
	case iat.After(now.Add(conf.skew)):
		return DPoPProofStale, detailDPoPFuture
	case iat.Before(now.Add(-conf.maxAge - conf.skew)):
		return DPoPProofStale, detailDPoPOld
	}
	if !equalConstantTime(p.ath, dpopATH(token)) {
		return DPoPAthMismatch, detailDPoPAth
	}
	if conf.nonceRequired {
		switch {
		case e.nonces == nil:
			return Internal, detailDPoPNoNonceSecret
		case p.nonce == "":
			return DPoPNonceRequired, detailDPoPNoNonce
		case !e.nonces.valid(p.nonce, now, conf.maxAge):
			return DPoPNonceRequired, detailDPoPBadNonce
		}
	}
	return OK, ""
}

// checkDPoPReplay records the proof's jti, last of all checks: it is the
// one that may leave the process (a shared cache).
func (e *Engine) checkDPoPReplay(ctx context.Context, r *Request, pol *Policy, pc *proofClaims) (Code, string) {
	expires := time.Unix(pc.iat, 0).Add(pol.dpop.maxAge + pol.dpop.skew)
	replayed, err := e.replay.Claim(ctx, replayKeyOf(pc.jkt, pc.jti), expires)
	switch {
	case err != nil:
		r.Trace.add("dpop_replay", "fail", detailDPoPReplayDown)
		return DPoPReplayUnavailable, detailDPoPReplayDown
	case replayed:
		r.Trace.add("dpop_replay", "fail", detailDPoPReplayed)
		return DPoPProofReplayed, detailDPoPReplayed
	}
	r.Trace.add("dpop_replay", "pass", "the proof's jti is new")
	return OK, ""
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}
