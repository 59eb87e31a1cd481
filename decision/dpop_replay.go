package decision

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// ReplayKey names one DPoP proof: SHA-256 of the proof key's thumbprint
// and the proof's jti, so a cache holds neither and one client cannot
// collide with another's jti.
type ReplayKey [32]byte

// replayKeyOf returns the ReplayKey of a proof with thumbprint jkt and jti.
func replayKeyOf(jkt, jti string) ReplayKey {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var k ReplayKey
	h.Sum(k[:0])
	return k
}

// ReplayCache remembers the DPoP proofs already used, until they could no
// longer be accepted anyway (their iat leaves the window). The engine asks
// it last, after every other check allowed. Implementations: MemReplayCache
// (one process), store/postgres (shared by the replicas of a deployment).
type ReplayCache interface {
	// Claim records key until expires and reports whether it was recorded
	// already (a replay). An error means the cache cannot answer: the
	// proof is denied with dpop_replay_unavailable, never accepted.
	Claim(ctx context.Context, key ReplayKey, expires time.Time) (replayed bool, err error)
}

// DefaultReplayCacheBytes bounds the in-process replay cache when the
// engine is given no bound.
const DefaultReplayCacheBytes = 16 << 20

// replayEntryBytes is what one remembered proof costs: its key and expiry
// in the map (with the map's overhead) and in the expiry queue.
const replayEntryBytes = 128

// ErrReplayCacheFull is the error of a MemReplayCache whose every entry is
// still inside the window: it refuses the proof rather than forget one
// that could still be replayed.
var ErrReplayCacheFull = errors.New("the DPoP replay cache is full of unexpired proofs; raise its byte bound")

// MemReplayCache is a ReplayCache in this process, bounded in bytes. When
// it is full of unexpired entries it fails closed (ErrReplayCacheFull)
// instead of evicting one: an evicted jti could be replayed.
type MemReplayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[ReplayKey]int64
	queue []replayEntry // in insertion order; head at queue[head]
	head  int
	now   func() time.Time
}

type replayEntry struct {
	key ReplayKey
	exp int64
}

// NewMemReplayCache returns a replay cache of at most maxBytes (default
// DefaultReplayCacheBytes when maxBytes <= 0). now is its clock (nil:
// time.Now).
func NewMemReplayCache(maxBytes int64, now func() time.Time) *MemReplayCache {
	if maxBytes <= 0 {
		maxBytes = DefaultReplayCacheBytes
	}
	if now == nil {
		now = time.Now
	}
	return &MemReplayCache{max: int(max(maxBytes/replayEntryBytes, 1)), seen: map[ReplayKey]int64{}, now: now}
}

// Claim implements ReplayCache.
func (c *MemReplayCache) Claim(_ context.Context, key ReplayKey, expires time.Time) (bool, error) {
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[key]; ok && exp > now {
		return true, nil
	}
	c.prune(now)
	if len(c.seen) >= c.max {
		return false, ErrReplayCacheFull
	}
	exp := expires.UnixNano()
	c.seen[key] = exp
	c.queue = append(c.queue, replayEntry{key: key, exp: exp})
	return false, nil
}

// prune drops the expired entries at the head of the queue. Entries expire
// nearly in insertion order (each lives one window from its iat), so the
// head is where the expired ones are.
func (c *MemReplayCache) prune(now int64) {
	for c.head < len(c.queue) {
		e := c.queue[c.head]
		if e.exp > now {
			break
		}
		if exp, ok := c.seen[e.key]; ok && exp == e.exp {
			delete(c.seen, e.key)
		}
		c.queue[c.head] = replayEntry{}
		c.head++
	}
	if c.head > 1024 && c.head*2 > len(c.queue) {
		n := copy(c.queue, c.queue[c.head:])
		c.queue = c.queue[:n]
		c.head = 0
	}
}

// Len returns how many proofs the cache remembers (tests, metrics).
func (c *MemReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// LayeredReplayCache puts a cache of this process in front of one shared
// by the replicas (store/postgres). A proof this replica has seen is a
// replay without a round trip; a new one is claimed in the shared cache as
// well, which alone can tell that another replica accepted it. The shared
// cache's answer decides: its error is the engine's
// dpop_replay_unavailable, never an allow.
type LayeredReplayCache struct {
	Local  *MemReplayCache
	Shared ReplayCache
}

// Claim implements ReplayCache. A full local cache is skipped, not an
// error: the shared cache still records every proof.
func (c *LayeredReplayCache) Claim(ctx context.Context, key ReplayKey, expires time.Time) (bool, error) {
	if replayed, err := c.Local.Claim(ctx, key, expires); err == nil && replayed {
		return true, nil
	}
	return c.Shared.Claim(ctx, key, expires)
}
