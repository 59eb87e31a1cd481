package decision

import (
	"context"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Introspector asks an issuer's introspection endpoint about a token (RFC
// 7662). The server's implementation is store/introspect, which does the
// HTTP call, the client authentication, coalescing of concurrent calls for
// one token, the timeout and a circuit breaker; the engine reads the
// answer, caches it and decides exactly as for a JWT's claims.
type Introspector interface {
	// Introspect returns the endpoint's answer for token, or an error when
	// it could not be had (unreachable, timed out, circuit open, an error
	// status): the token is then denied with introspection_unavailable.
	// The error must not contain the token.
	Introspect(ctx context.Context, in *Introspection, token string) (IntrospectionResponse, error)
}

// IntrospectionResponse is an introspection endpoint's answer.
type IntrospectionResponse struct {
	// Body is the JSON object of RFC 7662, or with JWT the compact JWT of
	// RFC 9701 (application/token-introspection+jwt) that holds it.
	Body []byte
	JWT  bool
}

// opaqueEntry is what an introspected token's cache entry holds instead of
// the token: a keyed hash to match it by (the cache's key is another,
// independent one, so 128 bits tell two tokens apart) and the end of its
// cache TTL, which may come before exp.
type opaqueEntry struct {
	digest uint64
	until  int64 // Unix nanoseconds
}

// matches reports whether vt, found in the cache under raw's key, stands
// for raw and may still be used at nowN.
func (vt *verifiedToken) matches(raw string, nowN int64) bool {
	if o := vt.opaque; o != nil {
		return nowN < o.until && o.digest == tokenDigest(raw)
	}
	return vt.Token.raw == raw
}

// introspectionFailure is why an introspected token is refused; inactive
// ones are remembered for the issuer's negative_cache_ttl.
type introspectionFailure struct {
	code     Code
	detail   string
	inactive bool
}

const detailInactive = "the authorization server reports the token inactive (RFC 7662 active is not true): it expired, was revoked or was never issued"

// introspect decides an opaque token of iss from the issuer's answer and
// caches the result by a keyed hash of the token.
func (v *verifier) introspect(ctx context.Context, raw string, iss *Issuer, pol *Policy, now time.Time) (*verifiedToken, Code, string) {
	if code, detail := checkB64Token(raw); code != OK {
		return nil, code, detail
	}
	in := iss.Introspection
	if v.introspector == nil {
		return nil, IntrospectionUnavailable, "issuer " + untrusted(iss.Name) + " introspects opaque tokens, but no introspection client is configured"
	}
	nowN := now.UnixNano()
	gen := v.gen.Load()
	v.introspections.Add(1)
	resp, err := v.introspector.Introspect(ctx, in, raw)
	if err != nil {
		return nil, IntrospectionUnavailable, "the introspection endpoint of issuer " + untrusted(iss.Name) + " did not answer: " + err.Error()
	}
	vt, f := v.readIntrospection(resp, iss, nowN)
	if f != nil {
		if f.inactive {
			var epoch uint64
			if src := v.keys.source(iss); src != nil {
				epoch = src.Epoch()
			}
			v.cache.setInactive(raw, &negativeEntry{
				digest: tokenDigest(raw), gen: gen, until: nowN + int64(in.NegativeTTL),
				fingerprint: iss.Fingerprint, epoch: epoch, issuer: iss.Name, detail: f.detail, code: f.code,
			}, in.NegativeTTL)
		}
		return nil, f.code, f.detail
	}
	vt.gen = gen
	ttl := min(in.CacheTTL, time.Duration(vt.Token.exp.nanos(0)-nowN))
	vt.opaque = &opaqueEntry{digest: tokenDigest(raw), until: nowN + int64(ttl)}
	if ttl > 0 {
		v.cache.setOpaque(raw, vt, pol, ttl)
	}
	if code, detail := checkTimes(vt, iss.ClockSkew, nowN); code != OK {
		return nil, code, detail
	}
	return vt, OK, ""
}

// readIntrospection reads an introspection answer into a verified token.
func (v *verifier) readIntrospection(resp IntrospectionResponse, iss *Issuer, nowN int64) (*verifiedToken, *introspectionFailure) {
	in := iss.Introspection
	invalid := func(detail string) *introspectionFailure {
		return &introspectionFailure{code: IntrospectionUnavailable, detail: "the introspection answer of issuer " + untrusted(iss.Name) + " " + detail}
	}
	body := resp.Body
	if resp.JWT {
		payload, detail := v.verifyIntrospectionJWT(string(body), iss)
		if detail != "" {
			return nil, invalid(detail)
		}
		body = payload
	} else if in.JWTResponse {
		return nil, invalid("is not the signed JWT (RFC 9701) jwt_response asks for")
	}
	p := claimParsers.Get()
	defer claimParsers.Put(p)
	obj, vf := parseClaimsSet(p, body)
	if vf != nil {
		return nil, invalid("is not a JSON object")
	}
	if resp.JWT {
		// RFC 9701 section 5: the answer is the token_introspection member.
		ti := obj.Get("token_introspection")
		if ti == nil || ti.Type() != fastjson.TypeObject {
			return nil, invalid("is a JWT without a token_introspection object")
		}
		obj, _ = ti.Object()
		if dup := duplicateKey(obj); dup != "" {
			return nil, invalid("names member " + untrusted(dup) + " twice")
		}
	}
	if a := obj.Get("active"); a == nil || a.Type() != fastjson.TypeTrue {
		return nil, &introspectionFailure{code: TokenInvalid, detail: detailInactive, inactive: true}
	}
	if s := obj.Get("iss"); s != nil && (s.Type() != fastjson.TypeString || jsonString(s) != iss.Name) {
		return nil, &introspectionFailure{code: IssuerUnknown, detail: "the introspection answer names another issuer than " + untrusted(iss.Name)}
	}
	if obj.Get("exp") == nil {
		// RFC 7662 makes exp optional: the cache TTL is then the bound.
		var a fastjson.Arena
		obj.Set("exp", a.NewNumberInt(int((nowN+int64(in.CacheTTL))/int64(time.Second))))
	}
	vt := &verifiedToken{fingerprint: iss.Fingerprint}
	t := &vt.Token
	t.Issuer = iss.Name
	if detail := readTokenClaims(obj, vt, iss); detail != "" {
		return nil, &introspectionFailure{code: TokenInvalid, detail: "the introspected token's " + strings.TrimPrefix(detail, "the token's ")}
	}
	if !audienceMatches(t.Audience, in.Audiences) {
		if len(t.Audience) == 0 {
			return nil, &introspectionFailure{code: AudienceMismatch, detail: "the introspection answer has no aud; issuer " + untrusted(iss.Name) + " requires one of: " + strings.Join(in.Audiences, ", ")}
		}
		return nil, &introspectionFailure{code: AudienceMismatch, detail: "the introspected token's audience [" + untrustedList(t.Audience) + "] names none of: " + strings.Join(in.Audiences, ", ")}
	}
	// Claim conditions read every claim: the map is built now, while the
	// answer is at hand (an opaque token has no payload to decode later).
	m := make(map[string]any, obj.Len())
	obj.Visit(func(k []byte, e *fastjson.Value) { m[string(k)] = jsonAny(e) })
	c := &claimsMemo{m: m, bytes: mapBytes(m)}
	c.charged.Store(true)
	t.claims.Store(c)
	return vt, nil
}

// introspectionJWTTypes are the typ values of an RFC 9701 answer.
var introspectionJWTTypes = []string{"token-introspection+jwt", "application/token-introspection+jwt"}

// verifyIntrospectionJWT checks an RFC 9701 answer with the issuer's keys
// and returns its payload, or why it is refused.
func (v *verifier) verifyIntrospectionJWT(raw string, iss *Issuer) ([]byte, string) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, "is not a compact JWS"
	}
	h, f := parseHeader(parts[0])
	if f != nil {
		return nil, "has a bad header: " + f.detail
	}
	if !listHas(introspectionJWTTypes, strings.ToLower(h.typ)) {
		return nil, "has typ " + untrusted(h.typ) + ", not token-introspection+jwt (RFC 9701)"
	}
	if !listHas(iss.Algorithms, h.alg) {
		return nil, "is signed with alg " + untrusted(h.alg) + ", not one of the issuer's algorithms (" + strings.Join(iss.Algorithms, ", ") + ")"
	}
	src := v.keys.source(iss)
	if src == nil || len(src.Keys()) == 0 {
		return nil, "cannot be verified: the issuer's key set is not loaded"
	}
	key, detail, _ := pickVerifyKey(src.Keys(), h.kid, h.alg)
	if key == nil {
		return nil, "cannot be verified: " + detail
	}
	sig, err := jose64.DecodeString(parts[2])
	if err != nil {
		return nil, "has a signature that is not base64url"
	}
	if err := verifySignature(key.Public, h.alg, raw[:len(parts[0])+1+len(parts[1])], sig); err != nil {
		return nil, "has a signature that does not verify with key " + untrusted(key.Kid)
	}
	payload, err := jose64.DecodeString(parts[1])
	if err != nil {
		return nil, "has a payload that is not base64url"
	}
	p := claimParsers.Get()
	defer claimParsers.Put(p)
	obj, vf := parseClaimsSet(p, payload)
	if vf != nil {
		return nil, "has a payload that is not a JSON object"
	}
	if s := obj.Get("iss"); s == nil || s.Type() != fastjson.TypeString || jsonString(s) != iss.Name {
		return nil, "is a JWT whose iss is not " + untrusted(iss.Name)
	}
	if !jwtAudienceHas(obj.Get("aud"), iss.Introspection.ClientID) {
		return nil, "is a JWT for another audience than scopegate's client " + untrusted(iss.Introspection.ClientID)
	}
	return payload, ""
}

// jwtAudienceHas reports whether the aud claim v names want.
func jwtAudienceHas(v *fastjson.Value, want string) bool {
	if v == nil {
		return false
	}
	if v.Type() == fastjson.TypeString {
		return jsonString(v) == want
	}
	arr, err := v.Array()
	if err != nil {
		return false
	}
	for _, e := range arr {
		if e.Type() == fastjson.TypeString && jsonString(e) == want {
			return true
		}
	}
	return false
}

// setOpaque caches an introspected token under raw's key hash (the token
// itself is not kept) until ttl.
func (tc *tokenCache) setOpaque(raw string, vt *verifiedToken, pol *Policy, ttl time.Duration) {
	n := verifiedTokenBytes(vt, pol) + allocSize(int64(unsafe.Sizeof(opaqueEntry{})))
	if c := vt.Token.claims.Load(); c != nil {
		n += c.bytes + allocSize(int64(unsafe.Sizeof(claimsMemo{})))
	}
	vt.cost.Store(int32(tc.charge(n)))
	tc.set(raw, cacheValue{vt: vt}, ttl)
}

// setInactive remembers an inactive introspection answer for ttl. Unlike
// a JWT's failure it is cached on the first answer: each repetition would
// cost the authorization server a call.
func (tc *tokenCache) setInactive(raw string, e *negativeEntry, ttl time.Duration) {
	e.cost = tc.charge(itemOverhead + allocSize(int64(unsafe.Sizeof(negativeEntry{}))))
	tc.set(raw, cacheValue{neg: e}, ttl)
}

// IntrospectionStats returns how many opaque-token lookups were answered
// from the cache (hits) and how many asked the issuer (misses), since the
// engine started.
func (e *Engine) IntrospectionStats() (hits, misses uint64) {
	misses = e.verifier.introspections.Load()
	return e.verifier.opaqueHits.Load(), misses
}
