package decision

import "time"

// CheckRevoked runs only the revocation step for tok, so benchmarks can
// measure its cost apart from the rest of Decide.
func CheckRevoked(e *Engine, tok *Token) Code {
	code, _ := e.checkRevoked(e.policy.Load(), tok, e.clock())
	return code
}

// SetNegativeTTL sets how long e's token cache remembers a failure, so a
// test that fills the cache with failures more slowly than the 30 s
// default (under the race detector, say) measures entries that have not
// lapsed. Call it before e decides anything.
func SetNegativeTTL(e *Engine, d time.Duration) { e.verifier.cache.negativeTTL = d }
