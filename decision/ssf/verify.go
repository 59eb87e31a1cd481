package ssf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"

	"github.com/scopegate/scopegate/decision"
)

// Error codes of RFC 8935 §2.4 (also used in RFC 8936 setErrs). Every
// refused SET carries one.
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidKey           = "invalid_key"
	ErrInvalidIssuer        = "invalid_issuer"
	ErrInvalidAudience      = "invalid_audience"
	ErrAuthenticationFailed = "authentication_failed"
	ErrAccessDenied         = "access_denied"
)

// Error is why a SET was refused: Code is an RFC 8935 error code,
// Description says what to fix (it names no secret and echoes at most a
// bounded, sanitized part of the input), Reason is the metrics label.
type Error struct {
	Code        string
	Reason      string
	Description string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func refuse(code, reason, format string, a ...any) *Error {
	return &Error{Code: code, Reason: reason, Description: fmt.Sprintf(format, a...)}
}

// Defaults of Transmitter.
const (
	// DefaultMaxAge is how old a SET's iat may be. A SET older than this is
	// refused, so the replay memory only has to remember this long.
	DefaultMaxAge = time.Hour
	// DefaultMaxSkew is how far in the future iat may be.
	DefaultMaxSkew = time.Minute
	// MaxSETBytes bounds one SET.
	MaxSETBytes = 64 << 10
)

// SETType is the media type of a SET (RFC 8417 §2.3) and its JOSE typ.
const (
	SETType      = "secevent+jwt"
	SETMediaType = "application/secevent+jwt"
)

// SET is a verified Security Event Token.
type SET struct {
	JTI      string
	Issuer   string
	Audience []string
	IssuedAt time.Time
	// TimeOfEvent is the optional toe claim.
	TimeOfEvent time.Time
	// TxnID is the optional txn claim.
	TxnID string
	// SubID is the SSF 1.0 top-level sub_id claim (nil if absent).
	SubID *Subject
	// Events maps each event type URI to its payload.
	Events map[string]json.RawMessage
}

// Verify checks raw, a compact JWS, as a SET from tr at now: signature,
// typ, iss, aud, iat window, and the shape of the events claim. It does
// not look at replays (see Seen).
func (tr *Transmitter) Verify(raw []byte, now time.Time) (*SET, *Error) {
	if len(raw) > MaxSETBytes {
		return nil, refuse(ErrInvalidRequest, "too_large", "the SET is %d bytes; at most %d are accepted", len(raw), MaxSETBytes)
	}
	raw = bytes.TrimSpace(raw)
	parts := bytes.Split(raw, []byte("."))
	if len(parts) != 3 || len(parts[0]) == 0 || len(parts[1]) == 0 || len(parts[2]) == 0 {
		return nil, refuse(ErrInvalidRequest, "malformed", "the body is not a compact JWS (header.payload.signature)")
	}
	dec := base64.RawURLEncoding.Strict()
	hb, err1 := dec.DecodeString(string(parts[0]))
	pb, err2 := dec.DecodeString(string(parts[1]))
	sig, err3 := dec.DecodeString(string(parts[2]))
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, refuse(ErrInvalidRequest, "malformed", "a part of the JWS is not base64url without padding")
	}
	var hdr struct {
		Alg  string   `json:"alg"`
		Kid  string   `json:"kid"`
		Typ  string   `json:"typ"`
		Crit []string `json:"crit"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, refuse(ErrInvalidRequest, "malformed", "the JOSE header is not a JSON object")
	}
	if len(hdr.Crit) > 0 {
		return nil, refuse(ErrInvalidRequest, "malformed", "the JOSE header has crit extensions, which are not supported")
	}
	if t := strings.ToLower(hdr.Typ); t != SETType && t != SETMediaType {
		return nil, refuse(ErrInvalidRequest, "typ", "the JOSE header typ must be %q (RFC 8417 §2.3, SSF 1.0)", SETType)
	}
	if hdr.Alg == "" || strings.EqualFold(hdr.Alg, "none") || strings.HasPrefix(hdr.Alg, "HS") {
		return nil, refuse(ErrInvalidRequest, "alg", "alg must name an asymmetric signature algorithm (RS256, ES256, PS256, EdDSA, ...)")
	}
	key := pickKey(tr.Keys.Keys(), hdr.Kid, hdr.Alg)
	if key == nil {
		return nil, refuse(ErrInvalidKey, "unknown_key", "no key of the transmitter's JWKS fits kid and alg %s", sanitize(hdr.Alg))
	}
	input := raw[:len(parts[0])+1+len(parts[1])]
	if err := jwsbb.Verify(key.Public, hdr.Alg, input, sig); err != nil {
		return nil, refuse(ErrInvalidKey, "signature", "the signature does not verify with the transmitter's key %s", sanitize(key.Kid))
	}
	var c struct {
		Iss    string                     `json:"iss"`
		Aud    json.RawMessage            `json:"aud"`
		Iat    *float64                   `json:"iat"`
		Jti    string                     `json:"jti"`
		Toe    *float64                   `json:"toe"`
		Txn    string                     `json:"txn"`
		SubID  *Subject                   `json:"sub_id"`
		Events map[string]json.RawMessage `json:"events"`
		Exp    *float64                   `json:"exp"`
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, refuse(ErrInvalidRequest, "malformed", "the claims set is not a SET: %s", sanitize(err.Error()))
	}
	if c.Iss != tr.Issuer {
		return nil, refuse(ErrInvalidIssuer, "issuer", "iss %s is not the configured transmitter", sanitize(c.Iss))
	}
	aud, ok := Audiences(c.Aud)
	if !ok {
		return nil, refuse(ErrInvalidRequest, "malformed", "aud must be a string or an array of strings")
	}
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(tr.Audience, a) }) {
		return nil, refuse(ErrInvalidAudience, "audience", "aud names none of this receiver's audiences")
	}
	if c.Jti == "" || len(c.Jti) > 256 {
		return nil, refuse(ErrInvalidRequest, "malformed", "jti is required (1 to 256 bytes)")
	}
	if c.Iat == nil {
		return nil, refuse(ErrInvalidRequest, "iat", "iat is required")
	}
	iat, ok := numericDate(*c.Iat)
	if !ok {
		return nil, refuse(ErrInvalidRequest, "iat", "iat is not a NumericDate")
	}
	maxAge, skew := tr.maxAge(), tr.maxSkew()
	if now.Sub(iat) > maxAge {
		return nil, refuse(ErrInvalidRequest, "stale", "iat is %s old; SETs older than %s are refused (replay window)", now.Sub(iat).Truncate(time.Second), maxAge)
	}
	if iat.Sub(now) > skew {
		return nil, refuse(ErrInvalidRequest, "iat", "iat is %s in the future (skew tolerated: %s)", iat.Sub(now).Truncate(time.Second), skew)
	}
	if c.Exp != nil {
		if exp, ok := numericDate(*c.Exp); !ok || !now.Before(exp.Add(skew)) {
			return nil, refuse(ErrInvalidRequest, "expired", "the SET has expired (exp)")
		}
	}
	if len(c.Events) == 0 {
		return nil, refuse(ErrInvalidRequest, "malformed", "events is required and names at least one event type")
	}
	for typ, ev := range c.Events {
		if len(ev) == 0 || ev[0] != '{' {
			return nil, refuse(ErrInvalidRequest, "malformed", "the payload of event %s is not a JSON object", sanitize(typ))
		}
	}
	set := &SET{JTI: c.Jti, Issuer: c.Iss, Audience: aud, IssuedAt: iat, TxnID: c.Txn, SubID: c.SubID, Events: c.Events}
	if c.Toe != nil {
		set.TimeOfEvent, _ = numericDate(*c.Toe)
	}
	return set, nil
}

// Audiences reads an aud claim, a string or an array of strings (RFC
// 7519 §4.1.3); ok is false for anything else. An absent one is empty.
func Audiences(raw json.RawMessage) ([]string, bool) {
	if len(raw) == 0 {
		return nil, true
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, true
	}
	return nil, false
}

func numericDate(f float64) (time.Time, bool) {
	if math.IsNaN(f) || f < 0 || f > 1<<33 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

// pickKey returns the key for kid and alg: the key with that kid, or, with
// no kid, the only key whose type fits alg.
func pickKey(keys []decision.Key, kid, alg string) *decision.Key {
	var found *decision.Key
	n := 0
	for i := range keys {
		k := &keys[i]
		if (kid != "" && k.Kid != kid) || (k.Alg != "" && k.Alg != alg) || !keyFits(k, alg) {
			continue
		}
		if kid != "" {
			return k
		}
		found = k
		n++
	}
	if n == 1 {
		return found
	}
	return nil
}

func keyFits(k *decision.Key, alg string) bool {
	switch k.Public.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA" || alg == "Ed25519"
	}
	return false
}

// sanitize bounds and quotes text taken from a refused SET for an error
// description or a log.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// errNoKeys is returned by Validate for a transmitter without keys.
var errNoKeys = errors.New("ssf: a transmitter needs its keys (jwks_uri or jwks_file)")
