package server

import (
	"testing"
	"time"
)

// TestMetricsTokenCache: the token cache's bytes in use, budget and
// evictions are exported, and the bytes follow what is cached.
func TestMetricsTokenCache(t *testing.T) {
	e := startE2E(t, nil)
	ctx := ctxT(t)
	before := gather(t, e.srv.Metrics().Registry())
	if v, ok := before.value(metricTokenCacheMaxBytes); !ok || v != float64(DefaultTokenCacheBytes) {
		t.Fatalf("%s = %v (exported %v), want %d", metricTokenCacheMaxBytes, v, ok, DefaultTokenCacheBytes)
	}
	used0, ok := before.value(metricTokenCacheBytes)
	if !ok {
		t.Fatalf("%s is not exported", metricTokenCacheBytes)
	}
	for _, cause := range []string{"capacity", "expired", "rejected"} {
		if v, ok := before.value(metricTokenCacheEvictions, "cause", cause); !ok || v != 0 {
			t.Errorf("%s{cause=%q} = %v (exported %v), want 0", metricTokenCacheEvictions, cause, v, ok)
		}
	}
	tok := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	if resp, err := e.extauthz.Check(ctx, extAuthzRequest("GET", "/api/items/1", "Bearer "+tok)); err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("allow: %v %v", resp.GetStatus(), err)
	}
	e.srv.engine.WaitTokenCache()
	used, _ := gather(t, e.srv.Metrics().Registry()).value(metricTokenCacheBytes)
	if grown := used - used0; grown < float64(len(tok)) || grown > 8192 {
		t.Errorf("%s grew by %v bytes for one %d-byte token, want the token and a few hundred bytes", metricTokenCacheBytes, grown, len(tok))
	}
}
