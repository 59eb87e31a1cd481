package decision

import (
	"strconv"
	"strings"
	"sync/atomic"
)

// Details of the bearer-extraction failures. They are constants so that a
// rejected request costs no allocation.
const (
	detailNoAuthorization = "the request carries no Authorization header (tokens in the query string or body are not accepted)"
	detailManyAuthz       = "the request carries more than one Authorization header"
	detailNotBearer       = "the Authorization header does not use the Bearer scheme"
	detailEmptyBearer     = "the Authorization header names the Bearer scheme but carries no token"
	detailBadBearerChars  = "the bearer token contains characters outside the RFC 6750 b64token alphabet (A-Z a-z 0-9 - . _ ~ + / and trailing =)"
)

// b64tokenChar marks the bytes of RFC 6750's b64token, padding excluded.
var b64tokenChar = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()

// extractBearer returns the token of an "Authorization: Bearer <token>"
// header (RFC 6750 §2.1), or the reason it cannot. Its characters are
// checked by checkB64Token, before any verification. count is how many
// Authorization headers the request carried; maxBytes bounds the token. It
// allocates nothing unless the token is too long.
func extractBearer(authz string, count int, maxBytes int) (token string, code Code, detail string) {
	return extractScheme(authz, count, maxBytes, "bearer")
}

// extractCredential is extractBearer that also accepts the DPoP scheme
// (RFC 9449 §7.1, "Authorization: DPoP <token>"), saying which one the
// request used.
func extractCredential(authz string, count int, maxBytes int) (token string, dpop bool, code Code, detail string) {
	const scheme = "dpop"
	if a := trimHeaderOWS(authz); count == 1 && len(a) > len(scheme) && a[len(scheme)] == ' ' && equalFoldBearer(a[:len(scheme)], scheme) {
		token, code, detail = extractScheme(authz, count, maxBytes, scheme)
		return token, true, code, detail
	}
	token, code, detail = extractScheme(authz, count, maxBytes, "bearer")
	return token, false, code, detail
}

// extractScheme is extractBearer for the auth scheme named scheme (lower
// case).
func extractScheme(authz string, count int, maxBytes int, scheme string) (token string, code Code, detail string) {
	if count > 1 {
		return "", RequestInvalid, detailManyAuthz
	}
	// Field values have optional whitespace around them (RFC 9110 §5.5).
	authz = trimHeaderOWS(authz)
	if count <= 0 || authz == "" {
		return "", TokenMissing, detailNoAuthorization
	}
	// Refuse oversized values before scanning them. The slack covers the
	// scheme and its spaces; the token itself is measured exactly below.
	if len(authz) > maxBytes+len("Bearer")+16 {
		return "", TokenInvalid, bearerTooLong(maxBytes)
	}
	if strings.IndexByte(authz, ',') >= 0 {
		// Proxies merge repeated headers into one value joined by commas.
		return "", RequestInvalid, detailManyAuthz
	}
	if len(authz) < len(scheme) || !equalFoldBearer(authz[:len(scheme)], scheme) {
		return "", TokenMissing, detailNotBearer
	}
	rest := authz[len(scheme):]
	if rest == "" {
		return "", TokenInvalid, detailEmptyBearer
	}
	if rest[0] != ' ' {
		// "Bearerx..." is another scheme, not a malformed bearer header.
		return "", TokenMissing, detailNotBearer
	}
	i := 0
	for i < len(rest) && rest[i] == ' ' {
		i++
	}
	token = rest[i:]
	if token == "" {
		return "", TokenInvalid, detailEmptyBearer
	}
	if len(token) > maxBytes {
		return "", TokenInvalid, bearerTooLong(maxBytes)
	}
	return token, OK, ""
}

// checkB64Token checks token against RFC 6750's b64token alphabet. It is
// not part of extractBearer: the verifier runs it on a cache miss only,
// since every cached token passed it, and on a hit a scan of 850 bytes
// would be a third of the decision.
func checkB64Token(token string) (Code, string) {
	j := 0
	for j < len(token) && b64tokenChar[token[j]] {
		j++
	}
	if j == 0 {
		return TokenInvalid, detailBadBearerChars
	}
	for j < len(token) && token[j] == '=' {
		j++
	}
	if j != len(token) {
		return TokenInvalid, detailBadBearerChars
	}
	return OK, ""
}

// tooLongMsg caches the oversize detail for the engine's limit, so a flood
// of oversized headers allocates nothing either.
type tooLongMsg struct {
	n int
	s string
}

var lastTooLong atomic.Pointer[tooLongMsg]

func bearerTooLong(maxBytes int) string {
	if m := lastTooLong.Load(); m != nil && m.n == maxBytes {
		return m.s
	}
	m := &tooLongMsg{n: maxBytes, s: "the bearer token is longer than " + strconv.Itoa(maxBytes) + " bytes"}
	lastTooLong.Store(m)
	return m.s
}

func trimHeaderOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// equalFoldASCII reports whether s equals lower (already lower-case) under
// ASCII case folding.
func equalFoldBearer(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
