// Package backoff computes the waits of the store's retry and refresh
// loops: JWKS refetches, the revocation resync and PostgreSQL LISTEN
// reconnects. One helper, so every loop backs off the same way, and with
// jitter, so replicas that failed together (an identity provider or a
// database restarting) do not retry together.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: Min after the first failure, doubling
// up to Max.
type Policy struct {
	Min, Max time.Duration
}

// Delay is the wait after failures consecutive failures (1 for the first):
// Min·2^(failures-1), at most Max, with "equal jitter": a uniformly random
// wait in the upper half of that value, so the mean stays close to the
// exponential curve while replicas spread out. It is never below Min/2 and
// never above Max.
func (p Policy) Delay(failures int) time.Duration {
	d := p.Min
	if d <= 0 {
		d = time.Second
	}
	hi := max(p.Max, d)
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + randN(d-d/2)
}

// Jitter returns d moved by a uniformly random amount of at most frac·d
// either way (frac in [0, 1]): for periodic work every replica does, such
// as a full resync, so that they do not all do it at the same instant.
func Jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 || frac <= 0 {
		return d
	}
	frac = min(frac, 1)
	spread := time.Duration(float64(d) * frac)
	return d - spread + randN(2*spread)
}

// randN returns a random duration in [0, n], 0 when n <= 0.
func randN(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(n) + 1))
}
