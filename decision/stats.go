package decision

import "sync/atomic"

// lookupCounter counts token verifications. It sits alone on its cache
// line so that the cores adding to it on every decision do not also
// invalidate the line holding the verifier's other fields.
type lookupCounter struct {
	_ [64]byte
	atomic.Uint64
	_ [56]byte
}

// TokenCacheStats returns how many token verifications were answered from
// the token cache (hits, remembered failures included) and how many had to
// verify the token from scratch (misses), since the engine started. They
// feed the token cache hit-ratio metric: a falling ratio means tokens are
// re-verified (a cache too small, or a flood of distinct tokens).
func (e *Engine) TokenCacheStats() (hits, misses uint64) {
	// Read misses first: every miss was counted as a lookup before it was
	// counted as a miss, so hits never goes negative.
	misses = e.verifier.colds.Load()
	lookups := e.verifier.lookups.Load()
	if lookups < misses {
		return 0, misses
	}
	return lookups - misses, misses
}
