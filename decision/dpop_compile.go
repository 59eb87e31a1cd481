package decision

import (
	"fmt"
	"strings"
	"time"
)

// DPoP defaults (docs/policy.md, "DPoP").
const (
	// DefaultDPoPMaxAge is how old a proof's iat may be.
	DefaultDPoPMaxAge = 60 * time.Second
	// DefaultDPoPClockSkew is how far a proof's iat may be in the future,
	// and how much older than max_age it may be.
	DefaultDPoPClockSkew = 5 * time.Second
	// maxDPoPWindow bounds max_age + clock_skew: the replay cache holds
	// every proof's jti that long.
	maxDPoPWindow = 10 * time.Minute
)

// DefaultDPoPAlgorithms are the proof algorithms accepted when the policy
// names none: asymmetric only (RFC 9449 §4.2).
var DefaultDPoPAlgorithms = []string{"ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"}

// DPoPSpec is the policy file's dpop block: how proofs are checked, for
// every route and issuer.
type DPoPSpec struct {
	// Algorithms are the proof algorithms accepted (default
	// DefaultDPoPAlgorithms); each must be asymmetric.
	Algorithms []string `yaml:"algorithms"`
	// MaxAge is how old a proof's iat may be (default 60s).
	MaxAge *Duration `yaml:"max_age"`
	// ClockSkew is the tolerance on iat either way (default 5s).
	ClockSkew *Duration `yaml:"clock_skew"`
	// Nonce "required" makes every proof carry a server nonce (RFC 9449
	// §9), which the server hands out in DPoP-Nonce.
	Nonce string `yaml:"nonce"`
}

// DPoPAlgorithms returns the algs attribute of the policy's DPoP
// challenges: the accepted proof algorithms, space-separated.
func (p *Policy) DPoPAlgorithms() string {
	if p == nil || p.dpop.algsAttr == "" {
		return strings.Join(DefaultDPoPAlgorithms, " ")
	}
	return p.dpop.algsAttr
}

// DPoPNonceRequired reports whether the policy requires server nonces in
// DPoP proofs (the server then needs a nonce secret).
func (p *Policy) DPoPNonceRequired() bool { return p != nil && p.dpop.nonceRequired }

func (c *compiler) dpop(pf *PolicyFile, pol *Policy) {
	conf := dpopConf{maxAge: DefaultDPoPMaxAge, skew: DefaultDPoPClockSkew}
	algs := DefaultDPoPAlgorithms
	if s := pf.DPoP; s != nil {
		if len(s.Algorithms) > 0 {
			algs = nil
			for i, a := range s.Algorithms {
				field := fmt.Sprintf("dpop.algorithms[%d]", i)
				line := c.li.line("dpop", "algorithms", i)
				switch {
				case strings.EqualFold(a, "none"):
					c.errorf(line, field, "none (unsigned proofs) is never accepted; use one of %s", strings.Join(allowedAlgorithms, ", "))
				case strings.HasPrefix(strings.ToUpper(a), "HS"):
					c.errorf(line, field, "%s (HMAC) is never accepted: a proof is signed with the client's private key; use one of %s", a, strings.Join(allowedAlgorithms, ", "))
				case !listHas(allowedAlgorithms, a):
					c.errorf(line, field, "unknown algorithm %s; names are case-sensitive, allowed: %s", untrusted(a), strings.Join(allowedAlgorithms, ", "))
				case listHas(algs, a):
					c.errorf(line, field, "algorithm %s is listed twice", a)
				default:
					algs = append(algs, a)
				}
			}
		}
		if s.MaxAge != nil {
			conf.maxAge = s.MaxAge.Duration
			if conf.maxAge <= 0 {
				c.errorf(c.li.line("dpop", "max_age"), "dpop.max_age", "max_age must be more than 0, e.g. \"60s\"")
			}
		}
		if s.ClockSkew != nil {
			conf.skew = s.ClockSkew.Duration
		}
		if conf.maxAge+conf.skew > maxDPoPWindow {
			c.errorf(c.li.line("dpop"), "dpop", "max_age + clock_skew is %s; keep it within %s (every proof's jti is remembered that long, and a stolen proof is usable that long)", conf.maxAge+conf.skew, maxDPoPWindow)
		}
		switch s.Nonce {
		case "":
		case "required":
			conf.nonceRequired = true
		default:
			c.errorf(c.li.line("dpop", "nonce"), "dpop.nonce", `unknown value %q; write "required" for server nonces, or leave it out`, s.Nonce)
		}
	}
	conf.algs = algs
	conf.algsAttr = strings.Join(algs, " ")
	pol.dpop = conf

	for i := range pf.Routes {
		if v := pf.Routes[i].DPoP; v != "" {
			c.dpopRequired(v, fmt.Sprintf("routes[%d].dpop", i), "routes", i, "dpop")
		}
	}
	for _, r := range pol.Routes {
		r.DPoPRequired = pf.Routes[r.Index].DPoP == "required"
		if r.DPoPRequired && r.Public {
			c.errorf(c.li.line("routes", r.Index, "dpop"), fmt.Sprintf("routes[%d].dpop", r.Index), "a public route takes no token, so it cannot require DPoP: remove dpop or public")
		}
	}
	for i := range pf.Issuers {
		spec := &pf.Issuers[i]
		if spec.DPoP == "" || !c.dpopRequired(spec.DPoP, fmt.Sprintf("issuers[%d].dpop", i), "issuers", i, "dpop") {
			continue
		}
		if iss := pol.Issuers[spec.Issuer]; iss != nil {
			iss.DPoPRequired = true
		}
	}
}

// dpopRequired checks the value of a dpop field, which is "required" when
// set.
func (c *compiler) dpopRequired(v, field string, path ...any) bool {
	if v == "required" {
		return true
	}
	c.errorf(c.li.line(path...), field, `unknown value %q; write "required" to require DPoP-bound tokens here, or leave it out (bound tokens are checked everywhere)`, v)
	return false
}
