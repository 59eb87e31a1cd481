package decision

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"math"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
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

// proofScratch is what verifyProof reuses from one proof to the next: the
// JSON parser and the buffer the jwk is serialized into.
type proofScratch struct {
	p   fastjson.Parser
	jwk []byte
}

var proofScratchPool = sync.Pool{New: func() any { return new(proofScratch) }}

// verifyProof checks a DPoP proof's form, key and signature (RFC 9449 §4.3
// steps 1-7). It does not compare it with the request. keys remembers the
// proof keys already parsed.
func verifyProof(proof string, conf *dpopConf, keys *proofKeyCache) (pc proofClaims, code Code, detail string) {
	if len(proof) > maxProofBytes {
		return pc, DPoPProofInvalid, detailDPoPTooLong
	}
	d1 := strings.IndexByte(proof, '.')
	d2 := strings.LastIndexByte(proof, '.')
	if d1 < 0 || d1 == d2 || strings.Count(proof, ".") != 2 {
		return pc, DPoPProofInvalid, detailDPoPNotCompact
	}
	hjson, err := jose64.DecodeString(proof[:d1])
	if err != nil {
		return pc, DPoPProofInvalid, detailDPoPNotCompact
	}
	sc := proofScratchPool.Get().(*proofScratch)
	defer proofScratchPool.Put(sc)
	h, err := sc.p.ParseBytes(hjson)
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
	// The cache key is the hash of the very bytes the JWK parser reads.
	sc.jwk = jv.MarshalTo(sc.jwk[:0])
	sum := sha256.Sum256(sc.jwk)
	key := keys.get(&sum)
	if key == nil {
		var why string
		if key, why = parseProofKey(sc.jwk); key == nil {
			return pc, DPoPProofInvalid, why
		}
		keys.put(&sum, key)
	}
	if keyFitsAlg(&Key{Public: key.pub}, alg) != "" {
		return pc, DPoPProofInvalid, detailDPoPKeyAlg
	}
	// b64 (RFC 7797) changes what is signed; a proof has no use for it.
	if h.Exists("b64") {
		return pc, DPoPSignatureInvalid, detailDPoPSignature
	}
	payload, ok := verifyProofSignature(proof, d1, d2, alg, key)
	if !ok {
		return pc, DPoPSignatureInvalid, detailDPoPSignature
	}
	pc.jkt = key.jkt
	if !parseProofClaims(&sc.p, payload, &pc) {
		return pc, DPoPProofInvalid, detailDPoPClaims
	}
	return pc, OK, ""
}

// verifyProofSignature verifies the JWS signature of proof (whose dots are
// at d1 and d2) under alg, already checked to fit key, and returns the
// decoded payload. ECDSA, the common case, is verified with crypto/ecdsa
// on the signing input in place; other algorithms through jws.
func verifyProofSignature(proof string, d1, d2 int, alg string, key *proofKey) ([]byte, bool) {
	b := []byte(proof)
	if key.ec == nil {
		sigAlg, ok := jwa.LookupSignatureAlgorithm(alg)
		if !ok {
			return nil, false
		}
		payload, err := jws.VerifyCompactFast(key.pub, b, sigAlg)
		return payload, err == nil
	}
	// RFC 7518 §3.4: the signature is R and S, each as long as the order.
	size := (key.ec.Curve.Params().N.BitLen() + 7) / 8
	var buf [2 * 66]byte
	sig := buf[:]
	if jose64.DecodedLen(len(proof)-d2-1) != 2*size {
		return nil, false
	}
	n, err := jose64.Decode(sig, b[d2+1:])
	if err != nil || n != 2*size {
		return nil, false
	}
	var digest []byte
	switch alg {
	case "ES256":
		s := sha256.Sum256(b[:d2])
		digest = s[:]
	case "ES384":
		s := sha512.Sum384(b[:d2])
		digest = s[:]
	case "ES512":
		s := sha512.Sum512(b[:d2])
		digest = s[:]
	default:
		return nil, false
	}
	var der [8 + 2*67]byte
	asn1Sig, ok := ecdsaSigDER(der[:0], sig[:size], sig[size:2*size])
	if !ok || !ecdsa.VerifyASN1(key.ec, digest, asn1Sig) {
		return nil, false
	}
	payload := make([]byte, jose64.DecodedLen(d2-d1-1))
	n, err = jose64.Decode(payload, b[d1+1:d2])
	return payload[:n], err == nil
}

// ecdsaSigDER appends to dst the ASN.1 DER form ecdsa.VerifyASN1 reads,
// SEQUENCE { INTEGER r, INTEGER s }, of the JOSE form of a signature (r
// and s big-endian, fixed length). It is what ecdsa.Verify builds from
// big.Ints, without their allocations. ok is false when r or s is zero.
func ecdsaSigDER(dst, r, s []byte) ([]byte, bool) {
	r, s = bytes.TrimLeft(r, "\x00"), bytes.TrimLeft(s, "\x00")
	if len(r) == 0 || len(s) == 0 {
		return nil, false
	}
	n := 4 + len(r) + int(r[0]>>7) + len(s) + int(s[0]>>7)
	dst = append(dst, 0x30)
	if n >= 0x80 {
		dst = append(dst, 0x81)
	}
	dst = append(dst, byte(n))
	for _, v := range [2][]byte{r, s} {
		dst = append(dst, 0x02, byte(len(v)+int(v[0]>>7)))
		if v[0] >= 0x80 {
			dst = append(dst, 0)
		}
		dst = append(dst, v...)
	}
	return dst, true
}

// parseProofClaims reads a verified proof's claims into pc, reporting
// whether they are well-formed: string htm, htu, jti and ath, a numeric
// iat, an optional string nonce.
func parseProofClaims(p *fastjson.Parser, payload []byte, pc *proofClaims) bool {
	c, err := p.ParseBytes(payload)
	if err != nil || c.Type() != fastjson.TypeObject {
		return false
	}
	// The claims' strings are copied out in one allocation.
	var vals [5][]byte
	total := 0
	for i, name := range [5]string{"htm", "htu", "jti", "ath", "nonce"} {
		v := c.Get(name)
		if v == nil {
			if name != "nonce" {
				return false
			}
			continue
		}
		b, err := v.StringBytes()
		if err != nil || (name != "nonce" && len(b) == 0) {
			return false
		}
		vals[i] = b
		total += len(b)
	}
	if len(vals[2]) > 512 {
		return false
	}
	iat := c.Get("iat")
	if iat == nil || iat.Type() != fastjson.TypeNumber {
		return false
	}
	f, err := iat.Float64()
	if err != nil || f < 0 || f > maxNumericDate || f != math.Trunc(f) {
		return false
	}
	pc.iat = int64(f)
	var sb strings.Builder
	sb.Grow(total)
	for _, b := range vals {
		sb.Write(b)
	}
	all := sb.String()
	dst := [5]*string{&pc.htm, &pc.htu, &pc.jti, &pc.ath, &pc.nonce}
	for i, b := range vals {
		*dst[i], all = all[:len(b)], all[len(b):]
	}
	return true
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
