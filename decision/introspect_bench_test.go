package decision_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// The cost of an opaque token's decision beside a JWT's, on one engine
// and one route: cached (the target is within 1.2x of a cached JWT), and
// uncached with an introspector that answers at once, i.e. the engine's
// own cost of reading an answer (the network is the AS's).

func benchRequest(tok string) *decision.Request {
	return &decision.Request{Method: "GET", Path: "/orders/42", Authorization: "Bearer " + tok, AuthorizationCount: 1}
}

func benchDecide(b *testing.B, f *introFixture, req *decision.Request) {
	b.Helper()
	ctx := context.Background()
	if d := f.eng.Decide(ctx, req); !d.Allow {
		b.Fatalf("setup: %s %s", d.Code, d.Detail)
	}
	waitCached(b, f.eng, req)
	b.ReportAllocs()
	for b.Loop() {
		if d := f.eng.Decide(ctx, req); !d.Allow {
			b.Fatal(d.Code)
		}
	}
}

func BenchmarkDecideCachedJWTBeside(b *testing.B) {
	f := newIntroFixture(b)
	tok, err := f.signer.Mint(decisiontest.StandardClaims("https://as.example.com", "orders-api", "alice", "app", "orders:read", time.Hour, *f.now), nil)
	if err != nil {
		b.Fatal(err)
	}
	benchDecide(b, f, benchRequest(tok))
}

func BenchmarkDecideCachedOpaque(b *testing.B) {
	f := newIntroFixture(b)
	f.active("Xk3bL9ZqPq1w8s7d6f5g4h3j2k1l0mNbVcXzAsDfGhJ", "orders:read", nil)
	benchDecide(b, f, benchRequest("Xk3bL9ZqPq1w8s7d6f5g4h3j2k1l0mNbVcXzAsDfGhJ"))
}

func BenchmarkDecideUncachedOpaque(b *testing.B) {
	f := newIntroFixture(b)
	const n = 512
	reqs := make([]*decision.Request, n)
	for i := range reqs {
		tok := "opaque-bench-token-" + strconv.Itoa(i)
		f.active(tok, "orders:read", nil)
		reqs[i] = benchRequest(tok)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%n == 0 {
			f.eng.PurgeTokenCache()
		}
		if d := f.eng.Decide(ctx, reqs[i%n]); !d.Allow {
			b.Fatal(d.Code)
		}
		i++
	}
}
