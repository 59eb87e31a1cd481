package decision

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
	"github.com/valyala/fastjson"
)

// DPoP (RFC 9449) proof checks. They are pure: the proof header, the
// request's method, scheme, host and path, the access token and the clock
// are all the input; the replay cache (dpop_replay.go) is the one lookup,
// made last, through an interface.

// maxProofBytes bounds a DPoP header: a proof with an RSA-4096 jwk is
// about 1.5 KiB.
const maxProofBytes = 8 << 10

// dpopTyp is the JOSE typ of a DPoP proof (RFC 9449 §4.2).
const dpopTyp = "dpop+jwt"

// privateJWKMembers are JWK members that only a private or symmetric key
// has (RFC 7518 §6.2.2, §6.3.2, §6.4.1, RFC 8037 §2).
var privateJWKMembers = [...]string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Details of DPoP denies that do not depend on the request. They are
// constants so that a refused proof costs no allocation for its message.
const (
	detailDPoPNoProof       = "the request uses Authorization: DPoP but carries no DPoP proof header"
	detailDPoPManyProofs    = "the request carries more than one DPoP proof header (RFC 9449 §4.3: exactly one)"
	detailDPoPRequired      = "the route or issuer requires a DPoP-bound token: present it with Authorization: DPoP and a DPoP proof"
	detailDPoPDowngrade     = "the token is DPoP-bound (cnf.jkt) but was presented as Bearer: present it with Authorization: DPoP and a DPoP proof"
	detailDPoPTooLong       = "the DPoP proof is longer than 8192 bytes"
	detailDPoPNotCompact    = "the DPoP proof is not a JWS in compact serialization (three base64url parts)"
	detailDPoPHeader        = "the DPoP proof's protected header is not a JSON object"
	detailDPoPTyp           = "the DPoP proof's header typ must be dpop+jwt"
	detailDPoPAlgNone       = "the DPoP proof is unsigned (alg none); sign it with an asymmetric algorithm"
	detailDPoPAlgHMAC       = "the DPoP proof uses an HMAC algorithm; a proof is signed with the client's private key (asymmetric alg)"
	detailDPoPAlg           = "the DPoP proof's alg is not one the policy accepts (dpop.algorithms)"
	detailDPoPNoJWK         = "the DPoP proof's header carries no jwk (the public key it is signed with)"
	detailDPoPPrivateJWK    = "the DPoP proof's jwk carries private or symmetric key material (d, p, q, dp, dq, qi, oth or k); send the public key only"
	detailDPoPBadJWK        = "the DPoP proof's jwk is not a usable public key"
	detailDPoPKeyAlg        = "the DPoP proof's jwk does not fit its alg (key type, curve, or an RSA key under 2048 bits)"
	detailDPoPCrit          = "the DPoP proof's header names critical extensions (crit), which are not supported"
	detailDPoPSignature     = "the DPoP proof's signature does not verify with the jwk it embeds"
	detailDPoPClaims        = "the DPoP proof's claims are not a JSON object with string htm, htu, jti and ath and a numeric iat"
	detailDPoPUnbound       = "the token is presented with Authorization: DPoP but is not bound to a key (no cnf.jkt)"
	detailDPoPThumbprint    = "the DPoP proof's jwk thumbprint (RFC 7638) is not the token's cnf.jkt"
	detailDPoPMethod        = "the DPoP proof's htm is not the request's method"
	detailDPoPBadHTU        = "the DPoP proof's htu is not an absolute http or https URI"
	detailDPoPNoScheme      = "the proxy reported no scheme or host for the request, so the DPoP proof's htu cannot be checked: forward them (X-Forwarded-Proto and X-Forwarded-Host for forward-auth)"
	detailDPoPURI           = "the DPoP proof's htu is not the request's URI (scheme, host, port and path; query and fragment ignored)"
	detailDPoPOld           = "the DPoP proof's iat is older than dpop.max_age (plus dpop.clock_skew)"
	detailDPoPFuture        = "the DPoP proof's iat is in the future (beyond dpop.clock_skew)"
	detailDPoPAth           = "the DPoP proof's ath is not base64url(SHA-256) of the access token it comes with"
	detailDPoPNoNonce       = "the DPoP proof carries no nonce; retry with the nonce sent in the DPoP-Nonce header"
	detailDPoPBadNonce      = "the DPoP proof's nonce is unknown or expired; retry with the nonce sent in the DPoP-Nonce header"
	detailDPoPNoNonceSecret = "dpop.nonce is required but the server has no nonce secret configured"
	detailDPoPReplayed      = "the DPoP proof's jti was already used: send a fresh proof with each request"
	detailDPoPReplayDown    = "the DPoP replay cache did not answer, so the proof's jti cannot be checked; denied to fail closed"
)

// proofClaims are what a verified proof says.
type proofClaims struct {
	jkt   string // RFC 7638 thumbprint of the jwk, base64url
	htm   string
	htu   string
	jti   string
	ath   string
	nonce string
	iat   int64 // Unix seconds
}

// dpopConf is the compiled dpop block of a policy.
type dpopConf struct {
	algs          []string
	algsAttr      string // the algs attribute of a challenge: algs joined by spaces
	maxAge        time.Duration
	skew          time.Duration
	nonceRequired bool
}

// verifyProof checks a DPoP proof's form, key and signature (RFC 9449 §4.3
// steps 1-7). It does not compare it with the request.
func verifyProof(proof string, conf *dpopConf) (pc proofClaims, code Code, detail string) {
	if len(proof) > maxProofBytes {
		return pc, DPoPProofInvalid, detailDPoPTooLong
	}
	hdr, _, _, err := jwsbb.SplitCompactString(proof)
	if err != nil || strings.Count(proof, ".") != 2 {
		return pc, DPoPProofInvalid, detailDPoPNotCompact
	}
	hjson, err := jose64.DecodeString(string(hdr))
	if err != nil {
		return pc, DPoPProofInvalid, detailDPoPNotCompact
	}
	var p fastjson.Parser
	h, err := p.ParseBytes(hjson)
	if err != nil || h.Type() != fastjson.TypeObject {
		return pc, DPoPProofInvalid, detailDPoPHeader
	}
	if typ := h.GetStringBytes("typ"); !strings.EqualFold(string(typ), dpopTyp) {
		return pc, DPoPProofInvalid, detailDPoPTyp
	}
	alg := string(h.GetStringBytes("alg"))
	switch {
	case strings.EqualFold(alg, "none"):
		return pc, DPoPProofInvalid, detailDPoPAlgNone
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return pc, DPoPProofInvalid, detailDPoPAlgHMAC
	case !listHas(conf.algs, alg):
		return pc, DPoPProofInvalid, detailDPoPAlg
	}
	if h.Exists("crit") {
		return pc, DPoPProofInvalid, detailDPoPCrit
	}
	jv := h.Get("jwk")
	if jv == nil {
		return pc, DPoPProofInvalid, detailDPoPNoJWK
	}
	if jv.Type() != fastjson.TypeObject {
		return pc, DPoPProofInvalid, detailDPoPBadJWK
	}
	for _, m := range privateJWKMembers {
		if jv.Exists(m) {
			return pc, DPoPProofInvalid, detailDPoPPrivateJWK
		}
	}
	key, err := jwk.ParseKey(jv.MarshalTo(nil))
	if err != nil {
		return pc, DPoPProofInvalid, detailDPoPBadJWK
	}
	if priv, err := jwk.IsPrivateKey(key); err != nil || priv {
		return pc, DPoPProofInvalid, detailDPoPPrivateJWK
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return pc, DPoPProofInvalid, detailDPoPBadJWK
	}
	sigAlg, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok || keyFitsAlg(&Key{Public: raw}, alg) != "" {
		return pc, DPoPProofInvalid, detailDPoPKeyAlg
	}
	payload, err := jws.VerifyCompactFast(raw, []byte(proof), sigAlg)
	if err != nil {
		return pc, DPoPSignatureInvalid, detailDPoPSignature
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return pc, DPoPProofInvalid, detailDPoPBadJWK
	}
	pc.jkt = base64.RawURLEncoding.EncodeToString(tp)

	c, err := p.ParseBytes(payload)
	if err != nil || c.Type() != fastjson.TypeObject {
		return pc, DPoPProofInvalid, detailDPoPClaims
	}
	var okAll = true
	str := func(name string, dst *string, required bool) {
		v := c.Get(name)
		if v == nil {
			okAll = okAll && !required
			return
		}
		b, err := v.StringBytes()
		if err != nil || (required && len(b) == 0) {
			okAll = false
			return
		}
		*dst = string(b)
	}
	str("htm", &pc.htm, true)
	str("htu", &pc.htu, true)
	str("jti", &pc.jti, true)
	str("ath", &pc.ath, true)
	str("nonce", &pc.nonce, false)
	iat := c.Get("iat")
	if iat == nil || iat.Type() != fastjson.TypeNumber {
		okAll = false
	} else if f, err := iat.Float64(); err != nil || f < 0 || f > maxNumericDate || f != math.Trunc(f) {
		okAll = false
	} else {
		pc.iat = int64(f)
	}
	if !okAll || len(pc.jti) > 512 {
		return pc, DPoPProofInvalid, detailDPoPClaims
	}
	return pc, OK, ""
}

// dpopATH returns base64url(SHA-256(token)), the ath a proof for token
// carries (RFC 9449 §4.2).
func dpopATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// htuOf returns the request URI a proof's htu must name: scheme and host
// lower-case, the scheme's default port removed, the canonical path
// (RFC 9449 §4.3 and RFC 3986 §6.2). ok is false when the request has no
// scheme or host.
func htuOf(scheme, host, normPath string) (string, bool) {
	scheme = strings.ToLower(scheme)
	if (scheme != "http" && scheme != "https") || host == "" {
		return "", false
	}
	return scheme + "://" + canonicalHost(scheme, host) + normPath, true
}

// canonicalHost lower-cases host and removes the default port of scheme.
func canonicalHost(scheme, host string) string {
	host = strings.ToLower(host)
	if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	} else {
		host = strings.TrimSuffix(host, ":80")
	}
	return host
}

// normalizeHTU returns a proof's htu in the form htuOf builds, or ok=false
// when it is not an absolute http(s) URI. Query and fragment are dropped;
// the path is normalized as request paths are.
func normalizeHTU(htu string, paths *PathSpec) (string, bool) {
	u, err := url.Parse(htu)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	norm, _, ok := normalizePath(p, paths)
	if !ok {
		return "", false
	}
	return htuOf(u.Scheme, u.Host, norm)
}
