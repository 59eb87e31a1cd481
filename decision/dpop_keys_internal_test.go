package decision

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision/tokenmint"
)

func TestECDSASigDERMatchesASN1(t *testing.T) {
	for _, size := range []int{32, 48, 66} {
		for i := 0; i < 200; i++ {
			raw := make([]byte, 2*size)
			if _, err := rand.Read(raw); err != nil {
				t.Fatal(err)
			}
			switch i % 4 { // leading zero bytes, high bits set
			case 1:
				raw[0], raw[1] = 0, 0
			case 2:
				raw[0], raw[size] = 0x80, 0xff
			case 3:
				raw[size], raw[0] = 0, 0x7f
			}
			got, ok := ecdsaSigDER(nil, raw[:size], raw[size:])
			if !ok {
				t.Fatalf("size %d: refused non-zero r and s", size)
			}
			want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:size]), new(big.Int).SetBytes(raw[size:])})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d: DER %x, want %x", size, got, want)
			}
		}
		zero := make([]byte, size)
		one := append(make([]byte, size-1), 1)
		if _, ok := ecdsaSigDER(nil, zero, one); ok {
			t.Fatalf("size %d: r = 0 accepted", size)
		}
		if _, ok := ecdsaSigDER(nil, one, zero); ok {
			t.Fatalf("size %d: s = 0 accepted", size)
		}
	}
}

func testProver(t *testing.T, alg string, key crypto.Signer) *tokenmint.Prover {
	t.Helper()
	s, err := tokenmint.NewSigner("", alg, key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tokenmint.ProverOf(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testProof(t *testing.T, p *tokenmint.Prover, header map[string]any) string {
	t.Helper()
	pr, err := p.ProofWith(header, tokenmint.Claims{"htm": "GET", "htu": "https://api.example.com/x", "ath": "a", "iat": time.Now().Unix(), "jti": tokenmint.RandomID()})
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// flipSig changes one bit in the middle of a proof's signature.
func flipSig(proof string) string {
	b := []byte(proof)
	i := strings.LastIndexByte(proof, '.') + (len(proof)-strings.LastIndexByte(proof, '.'))/2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// Every accepted algorithm verifies on first sight and on a cache hit, and
// a bad signature is refused both ways.
func TestVerifyProofAlgorithmsCached(t *testing.T) {
	gen := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := tokenmint.NewEd25519Signer("")
	if err != nil {
		t.Fatal(err)
	}
	provers := map[string]*tokenmint.Prover{
		"ES256": testProver(t, "ES256", gen(elliptic.P256())),
		"ES384": testProver(t, "ES384", gen(elliptic.P384())),
		"ES512": testProver(t, "ES512", gen(elliptic.P521())),
		"RS256": testProver(t, "RS256", rk),
		"PS256": testProver(t, "PS256", rk),
		"EdDSA": testProver(t, "EdDSA", ed.Key),
	}
	conf := &dpopConf{algs: DefaultDPoPAlgorithms}
	for alg, p := range provers {
		keys := newProofKeyCache(16)
		if _, code, _ := verifyProof(flipSig(testProof(t, p, nil)), conf, keys); code != DPoPSignatureInvalid {
			t.Errorf("%s: bad signature on first sight: %s, want %s", alg, code, DPoPSignatureInvalid)
		}
		for round := 0; round < 3; round++ {
			pc, code, detail := verifyProof(testProof(t, p, nil), conf, keys)
			if code != OK {
				t.Fatalf("%s round %d: %s: %s", alg, round, code, detail)
			}
			if pc.jkt != p.JKT || pc.htm != "GET" || pc.htu != "https://api.example.com/x" || pc.ath != "a" || len(pc.jti) == 0 {
				t.Fatalf("%s round %d: claims %+v, jkt want %s", alg, round, pc, p.JKT)
			}
			if _, code, _ := verifyProof(flipSig(testProof(t, p, nil)), conf, keys); code != DPoPSignatureInvalid {
				t.Errorf("%s round %d: bad signature on a cached key: %s", alg, round, code)
			}
		}
		if n := keys.len(); n != 1 {
			t.Errorf("%s: %d keys remembered after proofs by one key, want 1", alg, n)
		}
	}
	// A cached key's alg is still checked against each proof: an ES256
	// key under an ES384 header is refused.
	keys := newProofKeyCache(16)
	p := provers["ES256"]
	if _, code, _ := verifyProof(testProof(t, p, nil), conf, keys); code != OK {
		t.Fatal(code)
	}
	if _, code, _ := verifyProof(testProof(t, p, map[string]any{"alg": "ES384"}), conf, keys); code != DPoPProofInvalid {
		t.Errorf("ES256 key under alg ES384 after caching: %s, want %s", code, DPoPProofInvalid)
	}
}

// A remembered key is never used for another key's proof: a proof that
// embeds key A but is signed by key B fails, and B's own proof reports
// B's thumbprint.
func TestProofKeyCacheNoConfusion(t *testing.T) {
	a, err := tokenmint.NewProver(tokenmint.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tokenmint.NewProver(tokenmint.KindEC)
	if err != nil {
		t.Fatal(err)
	}
	conf := &dpopConf{algs: DefaultDPoPAlgorithms}
	keys := newProofKeyCache(16)
	if pc, code, _ := verifyProof(testProof(t, a, nil), conf, keys); code != OK || pc.jkt != a.JKT {
		t.Fatalf("a: %s, jkt %s want %s", code, pc.jkt, a.JKT)
	}
	if _, code, _ := verifyProof(testProof(t, b, map[string]any{"jwk": a.JWK}), conf, keys); code != DPoPSignatureInvalid {
		t.Fatalf("proof by b embedding a's cached jwk: %s, want %s", code, DPoPSignatureInvalid)
	}
	if pc, code, _ := verifyProof(testProof(t, b, nil), conf, keys); code != OK || pc.jkt != b.JKT {
		t.Fatalf("b: %s, jkt %s want %s", code, pc.jkt, b.JKT)
	}
	// The same key with private material added is refused even though
	// its public members are cached.
	priv := map[string]any{"d": "AAAA"}
	for k, v := range a.JWK {
		priv[k] = v
	}
	if _, code, detail := verifyProof(testProof(t, a, map[string]any{"jwk": priv}), conf, keys); code != DPoPProofInvalid || detail != detailDPoPPrivateJWK {
		t.Fatalf("cached key with d: %s %q", code, detail)
	}
}

func TestProofKeyCacheBounded(t *testing.T) {
	c := newProofKeyCache(8)
	hot := sha256.Sum256([]byte("hot"))
	c.put(&hot, &proofKey{jkt: "hot"})
	for i := 0; i < 100; i++ {
		h := sha256.Sum256([]byte{byte(i)})
		c.put(&h, &proofKey{jkt: string(rune('a' + i%26))})
		if c.get(&hot) == nil {
			t.Fatalf("a key in use was forgotten after %d others", i+1)
		}
		if n := c.len(); n > 8 {
			t.Fatalf("%d keys remembered, bound 8", n)
		}
	}
	cold := sha256.Sum256([]byte{0})
	if c.get(&cold) != nil {
		t.Fatal("a key unused for 99 insertions is still remembered")
	}
	if k := c.get(&hot); k == nil || k.jkt != "hot" {
		t.Fatalf("hot key: %+v", k)
	}
}
