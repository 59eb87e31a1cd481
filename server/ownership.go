package server

import (
	"time"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/store/cache"
)

// ownershipCache puts the caching decorator in front of the configured
// ownership store, with the per-lookup lifetimes the policy gives
// (lookups.<name>.cache_ttl and negative_ttl), so that a cached answer costs
// the engine a map read and no goroutine. A store that already caches is
// used as it is. The lifetimes are read from the policy at start; a reload
// keeps them.
func ownershipCache(inner decision.OwnershipStore, pol *decision.Policy) (decision.OwnershipStore, *cache.Ownership, error) {
	if inner == nil {
		return nil, nil, nil
	}
	if _, ok := inner.(decision.CachedOwnershipStore); ok {
		return inner, nil, nil
	}
	cfg := cache.Config{Lookups: map[string]cache.TTLs{}}
	if pol != nil && pol.File != nil {
		for name, l := range pol.File.Lookups {
			if l == nil {
				continue
			}
			var t cache.TTLs
			t.TTL = durationOf(l.CacheTTL)
			t.NegativeTTL = durationOf(l.NegativeTTL)
			cfg.Lookups[name] = t
		}
	}
	c, err := cache.NewOwnership(inner, cfg)
	if err != nil {
		return nil, nil, err
	}
	return c, c, nil
}

func durationOf(d *decision.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}
