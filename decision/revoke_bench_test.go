package decision_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/scopegate/scopegate/decision"
)

// millionJTIs is a set of 1,000,000 token revocations of the test issuer,
// built once per test binary (it takes about a second and some hundred MB).
var millionJTIs = sync.OnceValue(func() *decision.RevocationSet {
	revs := make([]decision.Revocation, 1_000_000)
	for i := range revs {
		revs[i] = decision.Revocation{ID: fmt.Sprintf("r%07d", i), Kind: decision.RevokeToken, Issuer: testIssuer, JTI: fmt.Sprintf("%032x", i), Reason: "bench"}
	}
	return decision.NewRevocationSet(revs)
})

// BenchmarkDecideRevoked measures a cached, allowed decision with no
// revocation set, an empty one, and 1,000,000 revoked jtis (none of them
// the token's). The target: jtis=1000000 within 1.1x of jtis=0.
func BenchmarkDecideRevoked(b *testing.B) {
	for _, n := range []int{-1, 0, 1_000_000} {
		name := fmt.Sprintf("jtis=%d", n)
		if n < 0 {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			f := newRevFixture(b, decision.Options{})
			switch {
			case n == 0:
				f.engine.SetRevocations(decision.NewRevocationSet(nil))
			case n > 0:
				f.engine.SetRevocations(millionJTIs())
				runtime.GC()
			}
			raw := f.mint(b, tok{jti: "not-revoked", scope: "orders:read"})
			req := &decision.Request{Method: "GET", Path: "/orders/42", Authorization: "Bearer " + raw, AuthorizationCount: 1}
			ctx := context.Background()
			waitCached(b, f.engine, req)
			b.ReportAllocs()
			for b.Loop() {
				if d := f.engine.Decide(ctx, req); !d.Allow {
					b.Fatal(d.Code)
				}
			}
		})
	}
}

// BenchmarkRevocationSetApply measures one revocation added to a set of
// 1,000,000: what each change costs a replica before the pointer swap.
func BenchmarkRevocationSetApply(b *testing.B) {
	set := millionJTIs()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		set = set.Apply([]decision.Revocation{{ID: fmt.Sprint("new-", i), Kind: decision.RevokeSubject, Subject: fmt.Sprint("s", i), Reason: "bench"}}, nil)
		i++
	}
}

// BenchmarkCheckRevoked measures the revocation step alone (what the
// revocations add to a cached decision), which is steadier than the
// difference of two whole-decision benchmarks on a busy machine.
func BenchmarkCheckRevoked(b *testing.B) {
	for _, n := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("jtis=%d", n), func(b *testing.B) {
			f := newRevFixture(b, decision.Options{})
			set := decision.NewRevocationSet(nil)
			if n > 0 {
				set = millionJTIs()
			}
			f.engine.SetRevocations(set)
			tok := &decision.Token{Issuer: testIssuer, JTI: "0123456789abcdef0123456789abcdef", Subject: "alice", ClientID: "web-app"}
			b.ReportAllocs()
			for b.Loop() {
				if decision.CheckRevoked(f.engine, tok) != decision.OK {
					b.Fatal("revoked")
				}
			}
		})
	}
}
