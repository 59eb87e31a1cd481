package decision

import (
	"context"
	"strconv"
	"testing"
)

// TestTokenCachePendingServed: a token verified a moment ago, still in the
// batch waiting for admission, is served from it and not verified again;
// the lookup hands the batch over, after which the cache holds it.
func TestTokenCachePendingServed(t *testing.T) {
	k := testKeys(t)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	v := newTestVerifier(t)
	tok := sign(t, k.rsa, "RS256", hdr("RS256", "rsa1"), baseClaims(testNow))
	ctx := context.Background()
	first, code, _ := v.verify(ctx, tok, pol, testNow)
	if code != OK {
		t.Fatal(code)
	}
	if n := v.cache.pending.n; n != 1 {
		t.Fatalf("%d entries pending after one cold verification, want 1", n)
	}
	again, code, _ := v.verify(ctx, tok, pol, testNow)
	if code != OK || again != first || v.colds.Load() != 1 {
		t.Fatalf("second lookup: code %v, same token %v, %d cold verifications (want 1)", code, again == first, v.colds.Load())
	}
	if n := v.cache.pending.n; n != 0 {
		t.Fatalf("%d entries still pending after a lookup found one, want 0", n)
	}
	v.cache.c.Wait()
	if e, ok := v.cache.c.Get(tok); !ok || e.vt != first {
		t.Fatal("the pending entry was not handed to the cache")
	}
	// The claims map built on first use is charged on the next hit, and
	// that update too is counted until ristretto takes it up.
	cost := first.cost.Load()
	first.Token.Claims()
	if _, code, _ := v.verify(ctx, tok, pol, testNow); code != OK {
		t.Fatal(code)
	}
	v.cache.c.Wait()
	if first.cost.Load() <= cost || v.cache.inflight.Load() != 0 {
		t.Fatalf("after the recharge: cost %d (was %d), inflight %d (want 0)", first.cost.Load(), cost, v.cache.inflight.Load())
	}
	if u := v.cache.usage(); u.Bytes != int64(first.cost.Load()) {
		t.Fatalf("the cache charges %d bytes, want the entry's %d", u.Bytes, first.cost.Load())
	}
}

// TestTokenCacheBatchHandedOver: entries are handed over a batch at a
// time, every one is accounted for once ristretto takes it up (inflight
// back to 0), and while ristretto is behind new batches are dropped and
// counted as rejected.
func TestTokenCacheBatchHandedOver(t *testing.T) {
	k := testKeys(t)
	pol := testPolicyWith(testIssuer(StaticKeys(k.issuerKeys())))
	v := newTestVerifier(t)
	ctx := context.Background()
	toks := make([]string, 3*pendingBatch)
	for i := range toks {
		toks[i] = sign(t, k.ed, "EdDSA", hdr("EdDSA", "ed1"), with(baseClaims(testNow), "jti", "j"+strconv.Itoa(i)))
	}
	for _, tok := range toks[:pendingBatch-1] {
		if _, code, _ := v.verify(ctx, tok, pol, testNow); code != OK {
			t.Fatal(code)
		}
	}
	v.cache.c.Wait()
	if n := v.cache.entries(); n != 0 || v.cache.pending.n != pendingBatch-1 {
		t.Fatalf("%d entries cached, %d pending before the batch is full; want 0 and %d", n, v.cache.pending.n, pendingBatch-1)
	}
	if _, code, _ := v.verify(ctx, toks[pendingBatch-1], pol, testNow); code != OK {
		t.Fatal(code)
	}
	v.cache.c.Wait()
	if n := v.cache.entries(); n != pendingBatch || v.cache.pending.n != 0 {
		t.Fatalf("%d entries cached, %d pending after a full batch; want %d and 0", n, v.cache.pending.n, pendingBatch)
	}
	if got := v.cache.inflight.Load(); got != 0 {
		t.Fatalf("inflight %d bytes after ristretto took every entry up, want 0", got)
	}

	// Ristretto behind: the next batch is dropped.
	v.cache.inflight.Store(v.cache.maxInflight + 1)
	rejected := v.cache.rejections.Load()
	for _, tok := range toks[pendingBatch : 2*pendingBatch] {
		if _, code, _ := v.verify(ctx, tok, pol, testNow); code != OK {
			t.Fatal(code)
		}
	}
	v.cache.c.Wait()
	if n := v.cache.entries(); n != pendingBatch {
		t.Fatalf("%d entries cached while ristretto was behind, want the %d from before", n, pendingBatch)
	}
	if got := v.cache.rejections.Load() - rejected; got != pendingBatch {
		t.Fatalf("%d entries counted as rejected, want %d", got, pendingBatch)
	}
	// Caught up: admitted again.
	v.cache.inflight.Store(0)
	for _, tok := range toks[2*pendingBatch:] {
		if _, code, _ := v.verify(ctx, tok, pol, testNow); code != OK {
			t.Fatal(code)
		}
	}
	v.wait()
	if n := v.cache.entries(); n != 2*pendingBatch {
		t.Fatalf("%d entries cached after ristretto caught up, want %d", n, 2*pendingBatch)
	}
}
