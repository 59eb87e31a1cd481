package decision

import (
	"encoding/binary"
	"hash/fnv"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Issuer defaults.
const (
	// DefaultClockSkew is the skew tolerated on exp, nbf and iat.
	DefaultClockSkew = 30 * time.Second
	// maxClockSkew is the largest skew accepted without a warning.
	maxClockSkew = 5 * time.Minute
)

// DefaultScopeClaims are the claims scopes are read from when an issuer
// names none: RFC 8693/9068 "scope", then the "scp" and "scopes" claims some
// providers use instead.
var DefaultScopeClaims = []string{"scope", "scp", "scopes"}

// reservedClaims are the claims the verifier reads for a meaning of their
// own: none of them can be an issuer's device_claim.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "acr", "amr", "auth_time", "client_id", "azp", "cnf"}

// allowedAlgorithms are the asymmetric JWS algorithms an issuer may list.
var allowedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// compileIssuer validates one issuer of a policy file and builds its key
// set reference. field names the issuer in problems, e.g. "issuers[0]";
// baseDir resolves a relative jwks_file. With readKeys, a jwks_file is read
// and validated (Load); a jwks_url is never fetched here.
func compileIssuer(spec *IssuerSpec, field string, baseDir string, readKeys bool) (*Issuer, []Problem) {
	var probs []Problem
	add := func(sub, msg string) {
		f := field
		if sub != "" {
			f += "." + sub
		}
		probs = append(probs, Problem{Field: f, Message: msg})
	}
	warn := func(sub, msg string) {
		probs = append(probs, Problem{Field: field + "." + sub, Message: msg, Warning: true})
	}

	iss := &Issuer{
		Name:         spec.Issuer,
		RequireATJWT: spec.RequireATJWT,
		ClockSkew:    DefaultClockSkew,
	}
	if strings.TrimSpace(spec.Issuer) == "" {
		add("issuer", "an issuer needs its identifier, exactly as its tokens' iss claim spells it, e.g. https://login.example.com/")
	} else if spec.Issuer != strings.TrimSpace(spec.Issuer) {
		add("issuer", "the issuer has leading or trailing spaces; iss is compared exactly, remove them")
	}

	// Audiences.
	if len(spec.Audiences) == 0 {
		add("audiences", "list at least one audience this API accepts in the token's aud claim, e.g. [https://api.example.com]; tokens minted for other APIs must not be accepted")
	}
	for i, a := range spec.Audiences {
		if a == "" {
			add("audiences["+strconv.Itoa(i)+"]", "an audience must not be empty")
		} else if listHas(spec.Audiences[:i], a) {
			warn("audiences["+strconv.Itoa(i)+"]", "audience "+untrusted(a)+" is listed twice")
		}
	}
	iss.Audiences = append([]string(nil), spec.Audiences...)

	// Algorithms.
	if len(spec.Algorithms) == 0 {
		add("algorithms", "list the algorithms this issuer signs with, e.g. [RS256]; allowed: "+strings.Join(allowedAlgorithms, ", "))
	}
	for i, a := range spec.Algorithms {
		sub := "algorithms[" + strconv.Itoa(i) + "]"
		switch {
		case listHas(allowedAlgorithms, a):
			if listHas(spec.Algorithms[:i], a) {
				warn(sub, "algorithm "+a+" is listed twice")
				continue
			}
			iss.Algorithms = append(iss.Algorithms, a)
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			add(sub, a+" (HMAC) is never accepted: access tokens are verified with the issuer's public keys, and an HMAC secret would let anyone holding it mint tokens; use one of "+strings.Join(allowedAlgorithms, ", "))
		case strings.EqualFold(a, "none"):
			add(sub, "none (unsigned tokens) is never accepted; use one of "+strings.Join(allowedAlgorithms, ", "))
		default:
			add(sub, "unknown algorithm "+untrusted(a)+"; names are case-sensitive, allowed: "+strings.Join(allowedAlgorithms, ", "))
		}
	}

	// Clock skew.
	if spec.ClockSkew != nil {
		iss.ClockSkew = spec.ClockSkew.Duration
		if iss.ClockSkew > maxClockSkew {
			warn("clock_skew", "a clock skew of "+iss.ClockSkew.String()+" keeps expired tokens usable that long; more than "+maxClockSkew.String()+" usually hides a clock problem")
		}
	}

	// Scope claims.
	iss.ScopeClaims = DefaultScopeClaims
	if len(spec.ScopeClaims) > 0 {
		iss.ScopeClaims = nil
		for i, c := range spec.ScopeClaims {
			if c == "" {
				add("scope_claims["+strconv.Itoa(i)+"]", "a scope claim name must not be empty")
				continue
			}
			if !listHas(iss.ScopeClaims, c) {
				iss.ScopeClaims = append(iss.ScopeClaims, c)
			}
		}
	}

	// Device claim.
	if c := spec.DeviceClaim; c != "" {
		switch {
		case listHas(reservedClaims, c) || listHas(iss.ScopeClaims, c):
			add("device_claim", "claim "+untrusted(c)+" has a meaning of its own; name the claim that holds the device id, e.g. did or device_id")
		case strings.ContainsAny(c, " \t\r\n"):
			add("device_claim", "a claim name has no whitespace; name the claim that holds the device id, e.g. did or device_id")
		default:
			iss.DeviceClaim = c
		}
	}

	// Key source: exactly one of jwks_file, jwks_url and discovery.
	discovery := spec.Discovery || spec.OpenIDConfigurationURL != ""
	sources := 0
	for _, set := range []bool{spec.JWKSFile != "", spec.JWKSURL != "", discovery} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0:
		add("", "set jwks_file (a JWKS file), jwks_url (an https JWKS endpoint) or discovery: true (keys from the issuer's discovery document) so this issuer's tokens can be verified")
	case sources > 1:
		add("", "set only one of jwks_file, jwks_url and discovery (or openid_configuration_url)")
	case discovery:
		if spec.OpenIDConfigurationURL != "" {
			if msg := checkFetchURL("openid_configuration_url", spec.OpenIDConfigurationURL); msg != "" {
				add("openid_configuration_url", msg)
			}
		} else if msg := checkFetchURL("with discovery, the issuer", spec.Issuer); msg != "" && strings.TrimSpace(spec.Issuer) != "" {
			add("issuer", msg+"; or set openid_configuration_url")
		}
	case spec.JWKSURL != "":
		if msg := checkJWKSURL(spec.JWKSURL); msg != "" {
			add("jwks_url", msg)
		}
	default:
		if spec.JWKSCAFile != "" {
			warn("jwks_ca_file", "jwks_ca_file applies only to jwks_url and discovery; it is ignored with jwks_file")
		}
		if spec.JWKSRefreshInterval != nil || spec.JWKSMinRefreshInterval != nil {
			warn("jwks_file", "jwks_refresh_interval and jwks_min_refresh_interval apply only to jwks_url and discovery; a jwks_file is reloaded when it changes")
		}
	}
	if spec.JWKSRefreshInterval != nil && spec.JWKSRefreshInterval.Duration <= 0 {
		add("jwks_refresh_interval", "the refresh interval must be positive, e.g. \"5m\"")
	}
	if spec.JWKSRefreshInterval != nil && spec.JWKSMinRefreshInterval != nil &&
		spec.JWKSMinRefreshInterval.Duration > spec.JWKSRefreshInterval.Duration {
		add("jwks_min_refresh_interval", "the minimum refresh interval ("+spec.JWKSMinRefreshInterval.String()+") must not exceed jwks_refresh_interval ("+spec.JWKSRefreshInterval.String()+")")
	}

	iss.Introspection = compileIntrospection(spec, iss, baseDir, add, warn)
	iss.Fingerprint = fingerprintIssuer(iss, spec)
	if problemsHaveError(probs) {
		return nil, probs
	}
	iss.KeyRef = keyRefOf(spec, baseDir)
	if iss.Introspection != nil {
		iss.Introspection.KeyRef = &iss.KeyRef
	}
	iss.bound = new(atomic.Pointer[boundKeys])
	if readKeys && iss.KeyRef.File != "" {
		keys, err := ReadKeyFile(iss.KeyRef.File)
		if err != nil {
			add("jwks_file", "cannot read keys from "+spec.JWKSFile+": "+err.Error())
			return nil, probs
		}
		iss.FileKeys = keys
	}
	return iss, probs
}

// keyRefOf is the key set reference of an issuer whose spec is valid.
func keyRefOf(spec *IssuerSpec, baseDir string) KeyRef {
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	ref := KeyRef{Issuer: spec.Issuer}
	if spec.JWKSFile != "" {
		ref.File = resolve(spec.JWKSFile)
	} else {
		ref.URL = spec.JWKSURL
		if spec.JWKSURL == "" {
			ref.Discovery, ref.ConfigURL = true, spec.OpenIDConfigurationURL
		}
		ref.CAFile = resolve(spec.JWKSCAFile)
		if spec.JWKSRefreshInterval != nil {
			ref.RefreshInterval = spec.JWKSRefreshInterval.Duration
		}
		if spec.JWKSMinRefreshInterval != nil {
			ref.MinRefreshInterval = spec.JWKSMinRefreshInterval.Duration
		}
	}
	ref.id = keyRefID(&ref)
	return ref
}

// checkJWKSURL returns why u cannot be a JWKS endpoint, or "".
func checkJWKSURL(u string) string {
	if msg := checkFetchURL("jwks_url", u); msg != "" {
		if strings.HasSuffix(msg, "an absolute URL") {
			msg += " such as https://login.example.com/.well-known/jwks.json"
		}
		return msg
	}
	return ""
}

// checkFetchURL returns why u, which field names, cannot be fetched for
// keys or metadata, or "".
func checkFetchURL(field, u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return field + " must be an absolute URL"
	}
	if p.User != nil {
		return field + " must not carry credentials"
	}
	switch p.Scheme {
	case "https":
		return ""
	case "http":
		// Plain http is allowed only to this host (tests and local sidecars):
		// keys fetched over an open network must be authenticated by TLS.
		h := p.Hostname()
		if h == "localhost" {
			return ""
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return ""
		}
		return field + " must use https (plain http is accepted only for localhost / 127.0.0.1)"
	default:
		return field + " must use https"
	}
}

// fingerprintIssuer hashes every setting that affects how a token of this
// issuer is validated, so the token cache can tell when a reload changed it.
func fingerprintIssuer(iss *Issuer, spec *IssuerSpec) uint64 {
	h := fnv.New64a()
	str := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	list := func(l []string) {
		str(strconv.Itoa(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	str(iss.Name)
	list(iss.Audiences)
	list(iss.Algorithms)
	str(iss.ClockSkew.String())
	if iss.RequireATJWT {
		str("at+jwt")
	} else {
		str("")
	}
	list(iss.ScopeClaims)
	if iss.DeviceClaim != "" {
		str("device_claim")
		str(iss.DeviceClaim)
	}
	str(spec.JWKSFile)
	str(spec.JWKSURL)
	str(spec.JWKSCAFile)
	if spec.Discovery || spec.OpenIDConfigurationURL != "" {
		str("discovery")
		str(spec.OpenIDConfigurationURL)
	}
	iss.Introspection.fingerprint(str)
	return h.Sum64()
}

func problemsHaveError(probs []Problem) bool {
	for _, p := range probs {
		if !p.Warning {
			return true
		}
	}
	return false
}
