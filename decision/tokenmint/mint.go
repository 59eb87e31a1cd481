package tokenmint

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// Claims is a token payload. Values are encoded with encoding/json, so
// numbers, strings, slices and nested maps all work; times must be given as
// Unix seconds (int64), as JWT requires.
type Claims map[string]any

// StandardClaims returns the claims of an RFC 9068 access token: iss, aud,
// sub, client_id, scope, iat and nbf at now, exp at now+ttl, and a random
// jti. Empty strings are left out, so a test can mint a token without, say,
// a subject; a negative ttl mints a token that has already expired.
func StandardClaims(iss, aud, sub, client, scope string, ttl time.Duration, now time.Time) Claims {
	c := Claims{
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"jti": RandomID(),
	}
	for k, v := range map[string]string{"iss": iss, "aud": aud, "sub": sub, "client_id": client, "scope": scope} {
		if v != "" {
			c[k] = v
		}
	}
	return c
}

// RandomID returns 128 random bits, hex-encoded, for jti and request ids.
func RandomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Mint signs claims into a compact JWS. The protected header always carries
// alg (s.Alg) and kid (s.Kid); header adds fields such as "typ" or "cty",
// may set "kid" to "" to leave the kid out, or to another kid to lie about
// the key. A header "alg" other than s.Alg forges the token: the header
// names that algorithm while the signature is still made with s.Alg, which
// is how algorithm-confusion tests are built.
func (s *Signer) Mint(claims Claims, header map[string]any) (string, error) {
	if s == nil || s.Key == nil {
		return "", errors.New("tokenmint: signer has no key")
	}
	if a, ok := header["alg"]; ok && a != s.Alg {
		h := map[string]any{}
		if s.Kid != "" {
			h["kid"] = s.Kid
		}
		for k, v := range header {
			h[k] = v
		}
		if h["kid"] == "" {
			delete(h, "kid")
		}
		payload, err := json.Marshal(claims)
		if err != nil {
			return "", fmt.Errorf("tokenmint: encode claims: %w", err)
		}
		return s.MintRaw(h, payload)
	}

	alg, ok := jwa.LookupSignatureAlgorithm(s.Alg)
	if !ok {
		return "", fmt.Errorf("tokenmint: unknown signing algorithm %q", s.Alg)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("tokenmint: encode claims: %w", err)
	}
	hdr := jws.NewHeaders()
	kid := s.Kid
	for k, v := range header {
		switch k {
		case "alg":
			// Equal to s.Alg (checked above); jws.Sign sets it.
		case "kid":
			ks, ok := v.(string)
			if !ok {
				return "", fmt.Errorf("tokenmint: header kid must be a string, got %T", v)
			}
			kid = ks
		default:
			if err := hdr.Set(k, v); err != nil {
				return "", fmt.Errorf("tokenmint: header %q: %w", k, err)
			}
		}
	}
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			return "", fmt.Errorf("tokenmint: header kid: %w", err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, s.Key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("tokenmint: sign: %w", err)
	}
	return string(tok), nil
}

// MintRaw signs payload under exactly the protected header given (nothing is
// added: no alg, no kid), with s.Alg and s.Key. It builds tokens a
// well-behaved issuer never sends: a header with no alg, a payload that is
// not JSON, claims of the wrong type.
func (s *Signer) MintRaw(header map[string]any, payload []byte) (string, error) {
	if s == nil || s.Key == nil {
		return "", errors.New("tokenmint: signer has no key")
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("tokenmint: encode header: %w", err)
	}
	input := signingInput(hb, payload)
	sig, err := jwsbb.Sign(s.Key, s.Alg, []byte(input), nil)
	if err != nil {
		return "", fmt.Errorf("tokenmint: sign with %s: %w", s.Alg, err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// MintUnsigned returns an unsecured JWS (alg "none", empty signature) over
// claims, with header's extra fields. Verifiers must reject it; tests prove
// they do.
func MintUnsigned(claims Claims, header map[string]any) (string, error) {
	h := map[string]any{"alg": "none"}
	for k, v := range header {
		h[k] = v
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("tokenmint: encode header: %w", err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("tokenmint: encode claims: %w", err)
	}
	return signingInput(hb, pb) + ".", nil
}

func signingInput(header, payload []byte) string {
	return base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
}
