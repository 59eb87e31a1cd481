package jwks

import (
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/scopegate/scopegate/decision"
)

// ParseSet parses a JWKS (or a single JWK) into verification keys. It is
// decision.ParseKeySet, the one parser every command and key source uses.
func ParseSet(data []byte) ([]decision.Key, error) { return decision.ParseKeySet(data) }

// fingerprint identifies a key set's content: kid, alg and public key of
// every key, in order. Two fetches of the same set give the same value, so
// the epoch moves only when the keys really change.
func fingerprint(keys []decision.Key) uint64 {
	h := fnv.New64a()
	put := func(b []byte) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, k := range keys {
		put([]byte(k.Kid))
		put([]byte(k.Alg))
		der, err := x509.MarshalPKIXPublicKey(k.Public)
		if err != nil {
			der = []byte(fmt.Sprintf("%T", k.Public))
		}
		put(der)
	}
	return h.Sum64()
}
