package decision

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"sync"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// A client signs every DPoP proof with the same key and sends the same jwk
// in every proof header, so the engine remembers the keys it has parsed:
// SHA-256 of the exact jwk bytes the parser is given → the public key and
// its RFC 7638 thumbprint. A key is checked in full on first sight
// (parseProofKey); a later proof with the same bytes skips the JWK parse,
// the point validation and the thumbprint, never the signature.

// proofKeyCacheSize bounds the remembered proof keys (about 300 bytes each
// for an EC key, 700 for RSA-4096).
const proofKeyCacheSize = 4096

// proofKey is a parsed, validated DPoP proof key.
type proofKey struct {
	pub any // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	ec  *ecdsa.PublicKey
	jkt string // RFC 7638 thumbprint, base64url
}

// proofKeyCache is a bounded map in two generations: entries go into cur;
// when cur holds half the bound it becomes old and a new cur starts, so
// the keys in use survive (a hit in old moves the key to cur) and the
// others age out. A fixed map, not the token cache's ristretto: a key is
// usable from the proof after the one that brought it, and a hit costs no
// allocation.
type proofKeyCache struct {
	mu   sync.Mutex
	half int
	cur  map[[sha256.Size]byte]*proofKey
	old  map[[sha256.Size]byte]*proofKey
}

func newProofKeyCache(size int) *proofKeyCache {
	half := max(size/2, 1)
	return &proofKeyCache{half: half, cur: make(map[[sha256.Size]byte]*proofKey, half)}
}

func (c *proofKeyCache) get(h *[sha256.Size]byte) *proofKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.cur[*h]; k != nil {
		return k
	}
	k := c.old[*h]
	if k != nil {
		delete(c.old, *h)
		c.putLocked(h, k)
	}
	return k
}

func (c *proofKeyCache) put(h *[sha256.Size]byte, k *proofKey) {
	c.mu.Lock()
	c.putLocked(h, k)
	c.mu.Unlock()
}

func (c *proofKeyCache) putLocked(h *[sha256.Size]byte, k *proofKey) {
	if len(c.cur) >= c.half {
		c.old, c.cur = c.cur, make(map[[sha256.Size]byte]*proofKey, c.half)
	}
	c.cur[*h] = k
}

// len returns how many keys are remembered.
func (c *proofKeyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}

// parseProofKey parses and checks the jwk of a proof header (already known
// to be a JSON object without private members): a public key of a type
// the proof algorithms use, and its thumbprint.
func parseProofKey(raw []byte) (*proofKey, string) {
	key, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, detailDPoPBadJWK
	}
	if priv, err := jwk.IsPrivateKey(key); err != nil || priv {
		return nil, detailDPoPPrivateJWK
	}
	pk := &proofKey{}
	if err := jwk.Export(key, &pk.pub); err != nil {
		return nil, detailDPoPBadJWK
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, detailDPoPBadJWK
	}
	pk.jkt = base64.RawURLEncoding.EncodeToString(tp)
	pk.ec, _ = pk.pub.(*ecdsa.PublicKey)
	return pk, ""
}
