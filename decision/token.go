package decision

import (
	"context"
	"crypto"
	"sync/atomic"
	"time"
)

// Token holds the verified, parsed claims of an access token that decisions
// need. A Token is immutable once built and shared by every decision that
// presents the same token string (it lives in the verified-token cache).
type Token struct {
	Issuer   string
	Subject  string
	ClientID string // client_id, else azp
	JTI      string
	// SessionID is the sid claim (OpenID Connect front/back-channel
	// logout, CAEP session-revoked), "" if absent.
	SessionID string
	// DeviceID is the claim its issuer's device_claim names (the device
	// the token was issued to, CAEP device-compliance-change), "" if the
	// issuer names none or the token lacks it.
	DeviceID string
	Type     string // the JOSE "typ" header, as sent
	Alg      string
	Audience []string
	// Scopes are the granted scopes, in token order, duplicates removed.
	Scopes []string
	// ScopeString is Scopes joined by single spaces, as sent upstream.
	ScopeString string

	// iat, nbf, exp and authTime are the NumericDate claims (IssuedAt,
	// NotBefore, Expiry, AuthTime): 8 bytes each where a time.Time takes
	// 24, and a cached token is mostly this struct.
	iat, nbf, exp, authTime numericDate

	ACR string
	AMR []string
	// CnfX5tS256 is cnf["x5t#S256"] (RFC 8705), CnfJKT is cnf["jkt"] (RFC 9449).
	CnfX5tS256 string
	CnfJKT     string

	// raw is the compact token; Claims decodes its payload on first use
	// (claims.go), so a cached token keeps no second copy of its claims.
	raw    string
	claims atomic.Pointer[claimsMemo]

	// Per-token memos of lookups whose inputs are immutable: the drift
	// found under one policy and grant phase (governance_drift.go), and the
	// revocation set under which no whole revocation applied (revoke.go).
	// A cached token thus skips two hash lookups in maps that may hold
	// millions of keys (a cache miss each).
	drift      atomic.Pointer[driftMemo]
	notRevoked atomic.Pointer[revocationMemo]
}

// IssuedAt is the iat claim, the zero time if absent.
func (t *Token) IssuedAt() time.Time { return t.iat.time() }

// NotBefore is the nbf claim, the zero time if absent.
func (t *Token) NotBefore() time.Time { return t.nbf.time() }

// Expiry is the exp claim (a verified token always has one).
func (t *Token) Expiry() time.Time { return t.exp.time() }

// AuthTime is the auth_time claim, the zero time if absent.
func (t *Token) AuthTime() time.Time { return t.authTime.time() }

// numericDate is a NumericDate claim in Unix nanoseconds, biased by one
// from 0 up so that its zero value means absent: a Token built without
// the claim has none, and 1970-01-01T00:00:00Z stays representable.
// Claims are bounded by maxNumericDate, far from overflowing.
type numericDate int64

func dateAt(nanos int64) numericDate {
	if nanos >= 0 {
		return numericDate(nanos + 1)
	}
	return numericDate(nanos)
}

// nanos is the date in Unix nanoseconds, or absent when there is none.
func (d numericDate) nanos(absent int64) int64 {
	switch {
	case d == 0:
		return absent
	case d > 0:
		return int64(d) - 1
	}
	return int64(d)
}

func (d numericDate) time() time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.nanos(0))
}

// Key is one verification key of an issuer, as exported from a JWK.
type Key struct {
	Kid string
	// Alg is the JWK "alg" member, or "" when the JWK does not pin one.
	Alg string
	// Public is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Public crypto.PublicKey
}

// KeySource serves one issuer's verification keys. Implementations live in
// store/jwks (a JWKS file or an https JWKS URL refreshed in the background);
// tests use StaticKeys.
type KeySource interface {
	// Keys returns the current key set. It never blocks on the network.
	Keys() []Key
	// RefreshUnknownKid is called when a token names a kid that Keys does not
	// hold. It may refetch the key set (rate-limited, coalesced) and returns
	// the key set to retry with, or ok=false when no refetch happened.
	RefreshUnknownKid(ctx context.Context, kid string) (keys []Key, ok bool)
	// Epoch changes whenever the key set changes; cached verification results
	// made under an older epoch are re-checked.
	Epoch() uint64
}

// StaticKeys is a KeySource over a fixed key set.
type StaticKeys []Key

// Keys implements KeySource.
func (s StaticKeys) Keys() []Key { return s }

// RefreshUnknownKid implements KeySource; a static set never refreshes.
func (s StaticKeys) RefreshUnknownKid(context.Context, string) ([]Key, bool) { return nil, false }

// Epoch implements KeySource.
func (s StaticKeys) Epoch() uint64 { return 0 }
