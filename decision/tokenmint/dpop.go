package tokenmint

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Prover is a DPoP client's key pair (RFC 9449): it signs proofs and names
// the thumbprint (JKT) an authorization server binds its tokens to, in
// cnf.jkt.
type Prover struct {
	Signer *Signer
	// JWK is the public key as a JSON object, as proofs embed it.
	JWK map[string]any
	// JKT is the RFC 7638 SHA-256 thumbprint of JWK, base64url.
	JKT string
}

// NewProver returns a Prover over a fresh key of kind (KindEC signs ES256,
// KindRSA RS256, KindEd25519 EdDSA).
func NewProver(kind string) (*Prover, error) {
	s, err := NewSignerOfKind(kind, "")
	if err != nil {
		return nil, err
	}
	return ProverOf(s)
}

// ProverOf returns a Prover that signs with s.
func ProverOf(s *Signer) (*Prover, error) {
	pub, err := jwk.PublicKeyOf(s.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("tokenmint: public jwk: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("tokenmint: thumbprint: %w", err)
	}
	b, err := json.Marshal(pub)
	if err != nil {
		return nil, fmt.Errorf("tokenmint: encode jwk: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("tokenmint: decode jwk: %w", err)
	}
	return &Prover{Signer: s, JWK: m, JKT: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// ATH returns the ath claim of a proof for token: base64url(SHA-256(token)).
func ATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Proof returns a well-formed proof for a request of method to htu carrying
// token, issued at iat, with a fresh jti.
func (p *Prover) Proof(method, htu, token string, iat time.Time) (string, error) {
	return p.ProofWith(nil, Claims{"htm": method, "htu": htu, "ath": ATH(token), "iat": iat.Unix(), "jti": RandomID()})
}

// ProofWith signs claims under a protected header of typ dpop+jwt, the
// prover's alg and its public jwk; header overrides or adds members, and a
// member set to nil is left out. An alg other than the prover's forges the
// proof (the signature is still the prover's algorithm), as Signer.Mint
// does.
func (p *Prover) ProofWith(header map[string]any, claims Claims) (string, error) {
	h := map[string]any{"typ": "dpop+jwt", "alg": p.Signer.Alg, "jwk": p.JWK}
	for k, v := range header {
		if v == nil {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("tokenmint: encode claims: %w", err)
	}
	return p.Signer.MintRaw(h, payload)
}
