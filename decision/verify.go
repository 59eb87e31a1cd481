package decision

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
	"github.com/valyala/fastjson"
)

// negativeTTL is how long a token that failed for a reason only a key-set
// or policy change can alter is remembered as failed, so a flood of one bad
// token costs one verification.
const negativeTTL = 30 * time.Second

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
const minRSABits = 2048

// maxNumericDate bounds NumericDate claims (about the year 2242) so that
// nanosecond arithmetic never overflows.
const maxNumericDate = 1 << 33

// jose64 decodes JOSE base64url: no padding, no non-canonical trailing bits, so
// that one token has exactly one spelling.
var jose64 = base64.RawURLEncoding.Strict()

// verifiedToken is a token whose signature and claims were verified, as the
// token cache holds it. Everything but view is immutable once cached. It
// is kept small (384 bytes, one size class; TestVerifiedTokenSize): a
// cache of many tokens is mostly these.
type verifiedToken struct {
	Token Token
	// view caches the token's scopes as a bitset over the policy in force.
	view atomic.Pointer[scopeView]

	// fingerprint and epoch are the issuer's settings and key set the token
	// was verified under; a cache hit under other ones re-verifies.
	fingerprint uint64
	epoch       uint64
	// gen is the cache generation the token was verified in (purge).
	gen uint64
	// cost is what the token cache charges for the entry (tokencache.go);
	// claimBytes is the heap of what was read from the claims: the strings
	// (one allocation) and the Scopes, AMR and Audience slices, but not an
	// audience that is the policy's own slice.
	cost       atomic.Int32 // read by ristretto's goroutine (Cost) while recharge adds
	claimBytes int32
	// opaque is set for an introspected token, which keeps no raw token.
	opaque *opaqueEntry
}

// verifierConfig configures a verifier.
type verifierConfig struct {
	// MaxBytes bounds the token cache's heap (default
	// DefaultTokenCacheBytes); MaxEntries, when positive, also bounds its
	// entries.
	MaxBytes   int64
	MaxEntries int64
	// Keys resolves issuers' key sets (Options.Keys).
	Keys KeyResolver
	// Introspector asks issuers about opaque tokens (Options.Introspector).
	Introspector Introspector
}

// verifier verifies bearer tokens against a policy's issuers and caches the
// results under the whole token string.
type verifier struct {
	cache *tokenCache
	// gen is bumped by purge; entries of older generations are ignored, so
	// purging is safe while decisions run.
	gen atomic.Uint64
	// colds counts full (uncached) verifications.
	colds atomic.Uint64
	// lookups counts every verification asked for, cached or not (stats.go).
	lookups lookupCounter
	// headers remembers recently seen protected headers.
	headers headerMemo
	// keys finds each issuer's key set.
	keys keyBinder
	// introspector asks about opaque tokens; introspections counts its
	// calls and opaqueHits the opaque tokens answered from the cache.
	introspector   Introspector
	introspections atomic.Uint64
	opaqueHits     lookupCounter
}

func newVerifier(cfg verifierConfig) (*verifier, error) {
	c, err := newTokenCache(tokenCacheConfig{MaxBytes: cfg.MaxBytes, MaxEntries: cfg.MaxEntries})
	if err != nil {
		return nil, err
	}
	return &verifier{cache: c, keys: newKeyBinder(cfg.Keys), introspector: cfg.Introspector}, nil
}

// close stops the cache's goroutines; later verifications run uncached.
func (v *verifier) close() { v.cache.c.Close() }

// purge forgets every cached verification and failure. It is safe while
// decisions run: entries of older generations are ignored, then evicted.
func (v *verifier) purge() { v.gen.Add(1) }

// wait hands the pending entries to the cache and blocks until it has
// applied them (it admits entries asynchronously).
func (v *verifier) wait() {
	v.cache.flush()
	v.cache.c.Wait()
}

// verify returns the verified token raw stands for, or the reason it is
// rejected. A cache hit costs no signature check and allocates nothing.
func (v *verifier) verify(ctx context.Context, raw string, pol *Policy, now time.Time) (*verifiedToken, Code, string) {
	nowN := now.UnixNano()
	v.lookups.Add(1)
	if e, ok := v.cache.get(raw); ok {
		if vt := e.vt; vt != nil {
			if vt.gen == v.gen.Load() && vt.matches(raw, nowN) {
				// An introspected token depends on no key set.
				if iss := pol.Issuers[vt.Token.Issuer]; iss != nil && iss.Fingerprint == vt.fingerprint && (vt.opaque != nil || v.keysAt(iss, vt.epoch)) {
					if code, detail := checkTimes(vt, iss.ClockSkew, nowN); code != OK {
						return nil, code, detail
					}
					if vt.opaque != nil {
						v.opaqueHits.Add(1)
					}
					if c := vt.Token.claims.Load(); c != nil && !c.charged.Load() {
						v.cache.recharge(vt, c, nowN)
					}
					return vt, OK, ""
				}
			}
		} else if n := e.neg; n != nil && nowN < n.until && n.gen == v.gen.Load() && n.digest == tokenDigest(raw) && n.stillHolds(v, pol) {
			return nil, n.code, n.detail
		}
	}
	return v.verifyCold(ctx, raw, pol, now)
}

// keysAt reports whether iss's key set is still at epoch.
func (v *verifier) keysAt(iss *Issuer, epoch uint64) bool {
	src := v.keys.source(iss)
	return src != nil && src.Epoch() == epoch
}

// stillHolds reports whether a cached failure would still happen under pol:
// the issuer's settings and key set are those it failed under.
func (n *negativeEntry) stillHolds(v *verifier, pol *Policy) bool {
	iss := pol.Issuers[n.issuer]
	return iss != nil && iss.Fingerprint == n.fingerprint && v.keysAt(iss, n.epoch)
}

// checkTimes checks exp, nbf and iat against now with the issuer's skew.
func checkTimes(vt *verifiedToken, skew time.Duration, nowN int64) (Code, string) {
	s := int64(skew)
	t := &vt.Token
	if nowN-s >= t.exp.nanos(math.MinInt64) {
		return TokenExpired, "the token expired at " + t.Expiry().UTC().Format(time.RFC3339) + " (clock skew tolerated: " + skew.String() + ")"
	}
	if t.nbf.nanos(math.MinInt64) > nowN+s {
		return TokenNotYetValid, "the token is not valid before " + t.NotBefore().UTC().Format(time.RFC3339) + " (nbf; clock skew tolerated: " + skew.String() + ")"
	}
	if t.iat.nanos(math.MinInt64) > nowN+s {
		return TokenNotYetValid, "the token's iat is in the future (" + t.IssuedAt().UTC().Format(time.RFC3339) + "; clock skew tolerated: " + skew.String() + ")"
	}
	return OK, ""
}

// verifyFailure is a cold-path rejection. Only a failure that cost a
// signature check is worth remembering (cacheable, with the issuer and key
// set it depends on): a malformed token, an unknown issuer or a refused
// algorithm is rejected again for less than a cache entry would cost, and
// remembering them would let a flood of distinct garbage fill the cache.
type verifyFailure struct {
	code      Code
	detail    string
	cacheable bool
	issuer    *Issuer
	epoch     uint64
}

// malformed is a failure that no policy or key set can change.
func malformedToken(detail string) *verifyFailure {
	return &verifyFailure{code: TokenInvalid, detail: detail}
}

// verifyCold verifies raw from scratch and caches the outcome.
func (v *verifier) verifyCold(ctx context.Context, raw string, pol *Policy, now time.Time) (*verifiedToken, Code, string) {
	nowN := now.UnixNano()
	v.colds.Add(1)
	if iss := pol.opaque.issuerOf(raw); iss != nil {
		return v.introspect(ctx, raw, iss, pol, now)
	}
	gen := v.gen.Load()
	vt, f := v.verifyToken(ctx, raw, pol)
	if f != nil {
		if f.cacheable {
			v.cache.setFailure(raw, &negativeEntry{
				digest: tokenDigest(raw), gen: gen, until: nowN + int64(v.cache.negativeTTL),
				fingerprint: f.issuer.Fingerprint, epoch: f.epoch, issuer: f.issuer.Name,
				detail: f.detail, code: f.code,
			})
		}
		return nil, f.code, f.detail
	}
	// Cached until exp, never beyond; a hit re-checks every time claim.
	vt.gen = gen
	if ttl := time.Duration(vt.Token.exp.nanos(0) - nowN); ttl > 0 {
		v.cache.setVerified(vt, pol, ttl)
	}
	if code, detail := checkTimes(vt, pol.Issuers[vt.Token.Issuer].ClockSkew, nowN); code != OK {
		return nil, code, detail
	}
	return vt, OK, ""
}

// headerMemoSize is the number of parsed protected headers remembered. An
// issuer signs every token with one of a few headers, so a small table
// saves the header decoding on most cold verifications.
const headerMemoSize = 64

// parsedHeader is the part of a protected header verification uses.
type parsedHeader struct {
	b64           string // the encoded header, as in the token
	alg, kid, typ string
}

// headerMemo maps encoded headers to their parse, lock-free: a slot holds
// the last valid header that hashed to it. Only headers that parsed are
// stored, and the parse is a pure function of the header bytes.
type headerMemo [headerMemoSize]atomic.Pointer[parsedHeader]

func (m *headerMemo) parse(b64 string) (*parsedHeader, *verifyFailure) {
	h := uint32(2166136261)
	for i := 0; i < len(b64); i++ {
		h = (h ^ uint32(b64[i])) * 16777619
	}
	slot := &m[h%headerMemoSize]
	if p := slot.Load(); p != nil && p.b64 == b64 {
		return p, nil
	}
	p, f := parseHeader(b64)
	if f == nil {
		// b64 may point into a whole request; the memo keeps a copy.
		p.b64 = strings.Clone(b64)
		slot.Store(p)
	}
	return p, f
}

// jwsHeaderNames are the protected header members verification reads.
// jku, x5u, jwk and x5c are deliberately not read: keys come only from
// the issuer's key source.
var jwsHeaderNames = [...]string{"alg", "kid", "typ", "crit"}

// parseHeader decodes a protected header: strict UTF-8 JSON, an object, no
// member named twice, and member names matched exactly. RFC 7515 section 4
// makes header names case-sensitive and unique, so {"ALG":...} is not alg;
// a case variant of a name read here is refused rather than ignored, as a
// verifier elsewhere might read it as the real member.
func parseHeader(b64 string) (*parsedHeader, *verifyFailure) {
	hdrJSON, err := jose64.DecodeString(b64)
	if err != nil {
		return nil, malformedToken("the token's header is not base64url without padding")
	}
	if !utf8.Valid(hdrJSON) {
		return nil, malformedToken("the token's header is not UTF-8 JSON")
	}
	if err := fastjson.ValidateBytes(hdrJSON); err != nil {
		return nil, malformedToken("the token's header is not a JSON object")
	}
	parser := claimParsers.Get()
	defer claimParsers.Put(parser)
	root, err := parser.ParseBytes(hdrJSON)
	if err != nil || root.Type() != fastjson.TypeObject {
		return nil, malformedToken("the token's header is not a JSON object")
	}
	obj, _ := root.Object()
	if dup := duplicateKey(obj); dup != "" {
		return nil, malformedToken("the token's header names member " + untrusted(dup) + " twice; header names must be unique (RFC 7515 section 4)")
	}
	p := &parsedHeader{b64: b64}
	var alg, kid, typ *fastjson.Value
	detail := ""
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if detail != "" {
			return
		}
		switch string(k) {
		case "alg":
			alg = v
		case "kid":
			kid = v
		case "typ":
			typ = v
		case "crit":
			detail = "the token's header has a crit member; crit header not supported"
		default:
			for _, name := range jwsHeaderNames {
				if strings.EqualFold(string(k), name) {
					detail = "the token's header has a member " + untrusted(string(k)) + "; header names are case-sensitive (RFC 7515 section 4): the member is " + name
					return
				}
			}
		}
	})
	switch {
	case detail != "":
		return nil, malformedToken(detail)
	case alg == nil || alg.Type() == fastjson.TypeNull:
		return nil, malformedToken("the token's header has no alg")
	case alg.Type() != fastjson.TypeString:
		return nil, malformedToken("the token's header alg is not a string")
	}
	p.alg = jsonString(alg)
	if kid != nil && kid.Type() != fastjson.TypeNull {
		if kid.Type() != fastjson.TypeString {
			return nil, malformedToken("the token's header kid is not a string")
		}
		p.kid = jsonString(kid)
	}
	if typ != nil && typ.Type() != fastjson.TypeNull {
		if typ.Type() != fastjson.TypeString {
			return nil, malformedToken("the token's header typ is not a string")
		}
		p.typ = jsonString(typ)
	}
	return p, nil
}

// verifyToken parses and verifies raw against pol without the cache.
func (v *verifier) verifyToken(ctx context.Context, raw string, pol *Policy) (*verifiedToken, *verifyFailure) {
	// 1. Compact JWS: exactly three base64url parts.
	if strings.HasPrefix(raw, "{") {
		return nil, malformedToken("the token is a JWS JSON serialization; only the compact form header.payload.signature is accepted")
	}
	// The alphabet is checked here, on a miss, rather than on every
	// request: each cached token passed it.
	if code, detail := checkB64Token(raw); code != OK {
		return nil, &verifyFailure{code: code, detail: detail}
	}
	d1 := strings.IndexByte(raw, '.')
	if d1 < 0 {
		return nil, malformedToken("the token is not a JWT: it has no '.'-separated parts")
	}
	d2 := strings.IndexByte(raw[d1+1:], '.')
	if d2 < 0 {
		return nil, malformedToken("the token has 2 parts; a signed JWT has 3 (header.payload.signature)")
	}
	d2 += d1 + 1
	if n := strings.Count(raw[d2+1:], "."); n != 0 {
		if n == 2 {
			return nil, malformedToken("the token has 5 parts: it is an encrypted JWT (JWE), which is not accepted; send a signed JWT")
		}
		return nil, malformedToken("the token has " + strconv.Itoa(n+3) + " parts; a signed JWT has 3 (header.payload.signature)")
	}
	hdrB64, payB64, sigB64 := raw[:d1], raw[d1+1:d2], raw[d2+1:]
	if hdrB64 == "" {
		return nil, malformedToken("the token's header part is empty")
	}
	if payB64 == "" {
		return nil, malformedToken("the token's payload part is empty")
	}
	if sigB64 == "" {
		return nil, malformedToken("the token has no signature (unsecured JWTs are never accepted)")
	}

	// 2. Header.
	h, f := v.headers.parse(hdrB64)
	if f != nil {
		return nil, f
	}
	alg, kid, typ := h.alg, h.kid, h.typ

	// 3. Payload, parsed once; the parser's values live until it is put
	// back. The payload and the signature are decoded into one pooled
	// buffer: neither outlives the verification (the parser copies what
	// it reads, the signature check keeps nothing).
	buf := decodeBufs.get(jose64.DecodedLen(len(payB64)) + jose64.DecodedLen(len(sigB64)))
	defer decodeBufs.put(buf)
	payJSON, err := decodeInto(*buf, payB64)
	if err != nil {
		return nil, malformedToken("the token's payload is not base64url without padding")
	}
	sig, err := decodeInto((*buf)[len(payJSON):], sigB64)
	if err != nil {
		return nil, malformedToken("the token's signature is not base64url without padding")
	}
	p := claimParsers.Get()
	defer claimParsers.Put(p)
	claims, f := parseClaimsSet(p, payJSON)
	if f != nil {
		return nil, f
	}

	// 4. Issuer, read before anything else because it selects the keys.
	issV := claims.Get("iss")
	if issV == nil {
		return nil, &verifyFailure{code: IssuerUnknown, detail: "the token has no iss claim"}
	}
	if issV.Type() != fastjson.TypeString {
		return nil, &verifyFailure{code: IssuerUnknown, detail: "the token's iss claim is not a string"}
	}
	issBytes, _ := issV.StringBytes()
	iss := pol.Issuers[string(issBytes)]
	if iss == nil {
		return nil, &verifyFailure{code: IssuerUnknown, detail: "issuer " + untrusted(string(issBytes)) + " is not one of the policy's issuers"}
	}
	// The policy's string, not a copy per token.
	issName := iss.Name
	src := v.keys.source(iss)
	if src == nil {
		return nil, &verifyFailure{code: KeySetUnavailable, detail: "the key set of issuer " + untrusted(issName) + " is not available yet"}
	}
	// The epoch is read before the keys: a result is never recorded under
	// an epoch newer than the keys it was verified with.
	epoch := src.Epoch()
	// refuse is a failure found before any key was looked up; fail one
	// found after the signature check, remembered.
	refuse := func(code Code, detail string) *verifyFailure {
		return &verifyFailure{code: code, detail: detail}
	}
	fail := func(code Code, detail string) *verifyFailure {
		return &verifyFailure{code: code, detail: detail, cacheable: true, issuer: iss, epoch: epoch}
	}

	// 5. Algorithm and type.
	if alg == "none" {
		return nil, refuse(AlgorithmNotAllowed, "alg none (an unsigned token) is never accepted")
	}
	if !listHas(iss.Algorithms, alg) {
		detail := "alg " + untrusted(alg) + " is not allowed for issuer " + untrusted(issName) + " (allowed: " + strings.Join(iss.Algorithms, ", ") + ")"
		if strings.HasPrefix(alg, "HS") {
			detail = "alg " + untrusted(alg) + " (HMAC, a shared secret) is never accepted for access tokens; issuer " + untrusted(issName) + " allows " + strings.Join(iss.Algorithms, ", ")
		}
		return nil, refuse(AlgorithmNotAllowed, detail)
	}
	if detail := checkTokenTyp(typ, iss.RequireATJWT); detail != "" {
		return nil, refuse(TokenInvalid, detail)
	}

	// 6. Key.
	keys := src.Keys()
	if len(keys) == 0 {
		// Never remembered: the first key set may arrive at any moment.
		return nil, &verifyFailure{code: KeySetUnavailable, detail: "the key set of issuer " + untrusted(issName) + " has not been loaded yet (" + iss.KeyRef.Location() + ")"}
	}
	key, detail, missing := pickVerifyKey(keys, kid, alg)
	if missing && kid != "" {
		if keys, refreshed := src.RefreshUnknownKid(ctx, kid); refreshed {
			key, detail, _ = pickVerifyKey(keys, kid, alg)
		}
	}
	if key == nil {
		// Never remembered: the key set may gain the key at any moment.
		return nil, &verifyFailure{code: KeyNotFound, detail: detail + " of issuer " + untrusted(issName)}
	}

	// 7. Signature over the exact bytes "header.payload".
	if err := verifySignature(key.Public, alg, raw[:d2], sig); err != nil {
		return nil, fail(TokenInvalid, "the token's signature does not verify with key "+untrusted(key.Kid)+" of issuer "+untrusted(issName))
	}

	// 8. Claims.
	// raw is usually a substring of a whole decoded request; the cached
	// token keeps a copy of its own, not the request.
	vt := &verifiedToken{fingerprint: iss.Fingerprint, epoch: epoch}
	t := &vt.Token
	t.Issuer, t.Alg, t.Type, t.raw = issName, alg, typ, strings.Clone(raw)
	if detail := readTokenClaims(claims, vt, iss); detail != "" {
		return nil, fail(TokenInvalid, detail)
	}
	if !audienceMatches(t.Audience, iss.Audiences) {
		if len(t.Audience) == 0 {
			return nil, fail(AudienceMismatch, "the token has no aud claim; issuer "+untrusted(issName)+" requires one of: "+strings.Join(iss.Audiences, ", "))
		}
		return nil, fail(AudienceMismatch, "the token's audience ["+untrustedList(t.Audience)+"] names none of: "+strings.Join(iss.Audiences, ", "))
	}
	return vt, nil
}

// decodeBuffers pools the scratch buffers of cold verifications.
type decodeBuffers struct{ p sync.Pool }

// decodeBufs are the buffers verifyToken decodes a token's payload and
// signature into.
var decodeBufs decodeBuffers

// maxPooledDecode bounds the buffers kept in the pool: a rare large token
// gets a buffer of its own, which the pool then drops.
const maxPooledDecode = 4 << 10

func (d *decodeBuffers) get(n int) *[]byte {
	if b, ok := d.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(n, 1024))
	return &b
}

func (d *decodeBuffers) put(b *[]byte) {
	if cap(*b) <= maxPooledDecode {
		d.p.Put(b)
	}
}

// decodeInto decodes JOSE base64url src into the front of dst, which must
// hold jose64.DecodedLen(len(src)) bytes.
func decodeInto(dst []byte, src string) ([]byte, error) {
	n, err := jose64.Decode(dst, unsafe.Slice(unsafe.StringData(src), len(src)))
	return dst[:n:n], err
}

// verifySignature checks sig over the signing input. RS256/384/512, the
// usual access-token algorithms, call crypto/rsa with the digest on the
// stack: jwsbb's generic path hashes into a heap digest, which costs about
// 0.7 µs and 3 allocations per cold verification. Every other algorithm
// goes through jwsbb. pickVerifyKey has already checked the key type.
func verifySignature(pub crypto.PublicKey, alg, input string, sig []byte) error {
	if k, ok := pub.(*rsa.PublicKey); ok {
		switch alg {
		case "RS256":
			d := sha256.Sum256(unsafe.Slice(unsafe.StringData(input), len(input)))
			return rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig)
		case "RS384":
			d := sha512.Sum384(unsafe.Slice(unsafe.StringData(input), len(input)))
			return rsa.VerifyPKCS1v15(k, crypto.SHA384, d[:], sig)
		case "RS512":
			d := sha512.Sum512(unsafe.Slice(unsafe.StringData(input), len(input)))
			return rsa.VerifyPKCS1v15(k, crypto.SHA512, d[:], sig)
		}
	}
	// The signing input is read in place: Verify only hashes it.
	return jwsbb.Verify(pub, alg, unsafe.Slice(unsafe.StringData(input), len(input)), sig)
}

// checkTyp returns why the typ header is refused, or "".
func checkTokenTyp(typ string, requireATJWT bool) string {
	at := strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")
	if requireATJWT {
		if at {
			return ""
		}
		if typ == "" {
			return "the token has no typ header; this issuer requires typ at+jwt (RFC 9068 access tokens)"
		}
		return "the token's typ " + untrusted(typ) + " is not at+jwt, which this issuer requires (RFC 9068)"
	}
	if typ == "" || at || strings.EqualFold(typ, "JWT") {
		return ""
	}
	return "the token's typ " + untrusted(typ) + " is not an access token type (JWT, at+jwt or application/at+jwt)"
}

// pickKey finds the key of keys that verifies alg for kid. When none fits
// it returns why, and missing=true when no key has that kid at all.
func pickVerifyKey(keys []Key, kid, alg string) (key *Key, detail string, missing bool) {
	if kid == "" {
		var found *Key
		n := 0
		for i := range keys {
			if keyFitsAlg(&keys[i], alg) == "" {
				if found == nil {
					found = &keys[i]
				}
				n++
			}
		}
		switch n {
		case 1:
			return found, "", false
		case 0:
			return nil, "the token has no kid and no key fits alg " + untrusted(alg) + " in the key set", true
		default:
			return nil, "the token has no kid and " + strconv.Itoa(n) + " keys fit alg " + untrusted(alg) + " in the key set", false
		}
	}
	why := ""
	for i := range keys {
		if keys[i].Kid != kid {
			continue
		}
		if why = keyFitsAlg(&keys[i], alg); why == "" {
			return &keys[i], "", false
		}
	}
	if why != "" {
		return nil, "key " + untrusted(kid) + " " + why, false
	}
	return nil, "no key with kid " + untrusted(kid) + " in the key set", true
}

// keyFits returns why k cannot verify alg, or "".
func keyFitsAlg(k *Key, alg string) string {
	if k.Alg != "" && k.Alg != alg {
		return "is pinned to alg " + untrusted(k.Alg) + ", the token uses " + untrusted(alg)
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		pk, ok := k.Public.(*rsa.PublicKey)
		if !ok || pk == nil || pk.N == nil {
			return "is not an RSA key, which alg " + alg + " needs"
		}
		if pk.N.BitLen() < minRSABits {
			return "is a " + strconv.Itoa(pk.N.BitLen()) + "-bit RSA key; at least " + strconv.Itoa(minRSABits) + " bits are required"
		}
		return ""
	case "ES256", "ES384", "ES512":
		want := elliptic.P256()
		if alg == "ES384" {
			want = elliptic.P384()
		} else if alg == "ES512" {
			want = elliptic.P521()
		}
		pk, ok := k.Public.(*ecdsa.PublicKey)
		if !ok || pk == nil {
			return "is not an EC key, which alg " + alg + " needs"
		}
		if pk.Curve != want {
			return "is not on curve " + want.Params().Name + ", which alg " + alg + " needs"
		}
		return ""
	case "EdDSA":
		pk, ok := k.Public.(ed25519.PublicKey)
		if !ok || len(pk) != ed25519.PublicKeySize {
			return "is not an Ed25519 key, which alg EdDSA needs"
		}
		return ""
	}
	return "cannot verify alg " + untrusted(alg)
}

func audienceMatches(aud, want []string) bool {
	for _, a := range aud {
		if listHas(want, a) {
			return true
		}
	}
	return false
}

func listHas(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// quote renders an untrusted value for a message: quoted, at most 64
// bytes, printable ASCII only.
func untrusted(s string) string {
	const limit = 64
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if i == limit {
			b.WriteString("...")
			break
		}
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			c = '?'
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

func untrustedList(list []string) string {
	parts := make([]string, 0, min(len(list), 8))
	for i, s := range list {
		if i == 8 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, untrusted(s))
	}
	return strings.Join(parts, " ")
}
