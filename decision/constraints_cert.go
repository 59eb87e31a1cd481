package decision

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"hash/maphash"
	"net/url"
	"strings"
	"sync/atomic"
)

// certCache remembers the RFC 8705 thumbprint of recently presented client
// certificates, keyed by the certificate exactly as forwarded, so that a
// client sending the same certificate on every request costs a hash and a
// string comparison, not a PEM decode and a SHA-256. It is direct-mapped
// and lock-free: a collision only evicts.
type certCache struct {
	seed  maphash.Seed
	slots [certCacheSlots]atomic.Pointer[certEntry]
}

const certCacheSlots = 256

type certEntry struct {
	cert string
	x5t  string // "" when the value is not a certificate
}

func newCertCache() *certCache { return &certCache{seed: maphash.MakeSeed()} }

// thumbprint returns base64url(SHA-256(DER)) of the certificate cert
// carries, or ok=false when cert holds no certificate.
func (c *certCache) thumbprint(cert string) (x5t string, ok bool) {
	slot := &c.slots[c.slotOf(cert)]
	if e := slot.Load(); e != nil && e.cert == cert {
		return e.x5t, e.x5t != ""
	}
	x5t, ok = certThumbprint(cert)
	slot.Store(&certEntry{cert: strings.Clone(cert), x5t: x5t})
	return x5t, ok
}

// slotOf picks the slot of cert from its length and its last bytes: the
// end of a certificate is its signature, which differs between any two
// certificates, so hashing the whole (often kilobyte-long) string would add
// time without spreading better. Entries are matched on the whole string.
func (c *certCache) slotOf(cert string) uint64 {
	tail := cert
	if len(tail) > 64 {
		tail = tail[len(tail)-64:]
	}
	return (maphash.String(c.seed, tail) ^ uint64(len(cert))*0x9e3779b97f4a7c15) % certCacheSlots
}

// certThumbprint computes the x5t#S256 thumbprint of a forwarded client
// certificate, in any of the forms translators pass on:
//
//   - URL-encoded PEM (Envoy's source.certificate, XFCC Cert=),
//   - PEM,
//   - an RFC 9440 Client-Cert byte sequence ":base64(DER):",
//   - bare base64 DER,
//   - the hex SHA-256 of the DER (XFCC Hash=), 64 hex digits.
//
// Of a PEM chain, the first certificate (the client's) counts.
func certThumbprint(cert string) (string, bool) {
	s := strings.TrimSpace(cert)
	if len(s) == 64 {
		if sum, err := hex.DecodeString(s); err == nil {
			return base64.RawURLEncoding.EncodeToString(sum), true
		}
	}
	var der []byte
	switch {
	case len(s) >= 2 && s[0] == ':' && s[len(s)-1] == ':':
		b, err := base64.StdEncoding.DecodeString(s[1 : len(s)-1])
		if err != nil {
			return "", false
		}
		der = b
	default:
		if strings.Contains(s, "%") {
			// PathUnescape, not QueryUnescape: a '+' of the base64 body is
			// a '+', never a space.
			u, err := url.PathUnescape(s)
			if err != nil {
				return "", false
			}
			s = u
		}
		if strings.Contains(s, "-----BEGIN") {
			b, ok := pemFirstBody(s)
			if !ok {
				return "", false
			}
			der = b
		} else {
			b, err := base64.StdEncoding.DecodeString(stripSpace(s))
			if err != nil {
				return "", false
			}
			der = b
		}
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return "", false
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), true
}

// pemFirstBody decodes the body of the first PEM block of s. It tolerates
// a label written with '+' for spaces (form-encoded by some proxies).
func pemFirstBody(s string) ([]byte, bool) {
	i := strings.Index(s, "-----BEGIN")
	if i < 0 {
		return nil, false
	}
	s = s[i+len("-----BEGIN"):]
	j := strings.Index(s, "-----")
	if j < 0 {
		return nil, false
	}
	label := strings.TrimSpace(strings.ReplaceAll(s[:j], "+", " "))
	if label != "CERTIFICATE" {
		return nil, false
	}
	s = s[j+5:]
	k := strings.Index(s, "-----END")
	if k < 0 {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(stripSpace(s[:k]))
	if err != nil {
		return nil, false
	}
	return b, true
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}

// equalConstantTime compares two strings in time that depends only on
// their lengths.
func equalConstantTime(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return v == 0
}
