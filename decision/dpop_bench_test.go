package decision_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/scopegate/scopegate/decision"
)

// The DPoP path against its parts: one bare ES256 verification of a proof
// (through jws, and with crypto/ecdsa alone: the floor), a cached bearer
// decision of the same token, and a DPoP decision (cached
// token, proof verified, jti claimed). The proof is minted outside the
// timed loop; every iteration uses a fresh jti, so the replay cache is
// exercised as in service.

func benchProofs(b *testing.B, f *dpopFixture, tok string) []string {
	b.Helper()
	proofs := make([]string, b.N)
	for i := range proofs {
		proofs[i] = f.proof(b, nil, f.claims("GET", dpopURL, tok))
	}
	return proofs
}

func BenchmarkDPoPVerifyES256(b *testing.B) {
	f := newDPoPFixture(b, dpopPolicy, decision.Options{})
	tok := f.token(b, testIssuer, f.prover.JKT)
	proof := []byte(f.proof(b, nil, f.claims("GET", dpopURL, tok)))
	pub := f.prover.Signer.Key.Public().(*ecdsa.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jws.VerifyCompactFast(pub, proof, jwa.ES256()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDPoPVerifyECDSA(b *testing.B) {
	f := newDPoPFixture(b, dpopPolicy, decision.Options{})
	tok := f.token(b, testIssuer, f.prover.JKT)
	proof := f.proof(b, nil, f.claims("GET", dpopURL, tok))
	pub := f.prover.Signer.Key.Public().(*ecdsa.PublicKey)
	dot := strings.LastIndexByte(proof, '.')
	b.ReportAllocs()
	for b.Loop() {
		sig, err := base64.RawURLEncoding.DecodeString(proof[dot+1:])
		if err != nil || len(sig) != 64 {
			b.Fatal("bad signature encoding")
		}
		digest := sha256.Sum256([]byte(proof[:dot]))
		if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			b.Fatal("signature does not verify")
		}
	}
}

func BenchmarkDPoPBearerCached(b *testing.B) {
	f := newDPoPFixture(b, dpopPolicy, decision.Options{})
	tok := f.token(b, testIssuer, "")
	req := &decision.Request{Method: "GET", Path: "/orders/42", Authorization: "Bearer " + tok, AuthorizationCount: 1}
	ctx := context.Background()
	f.engine.Decide(ctx, req)
	f.engine.WaitTokenCache()
	b.ReportAllocs()
	for b.Loop() {
		if d := f.engine.DecideEnforced(ctx, req); !d.Allow {
			b.Fatal(d.Code)
		}
	}
}

func BenchmarkDPoPDecision(b *testing.B) {
	f := newDPoPFixture(b, dpopPolicy, decision.Options{ReplayCacheBytes: 1 << 30})
	tok := f.token(b, testIssuer, f.prover.JKT)
	ctx := context.Background()
	f.engine.Decide(ctx, dpopRequest("GET", "/orders/42", tok, f.proof(b, nil, f.claims("GET", dpopURL, tok))))
	f.engine.WaitTokenCache()
	proofs := benchProofs(b, f, tok)
	req := dpopRequest("GET", "/orders/42", tok, "x")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.DPoP = proofs[i]
		if d := f.engine.DecideEnforced(ctx, req); !d.Allow {
			b.Fatal(d.Code, d.Message())
		}
	}
}
