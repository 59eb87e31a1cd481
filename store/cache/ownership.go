// Package cache wraps a store's read side with an in-memory cache and
// request coalescing, so that the decision engine's ownership checks cost a
// hash and a map read on a hit and at most one backend query per key at a
// time on a miss. It is a decorator rather than code in each backend, so
// every backend gets the same caching behaviour and the backends stay simple.
package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/scopegate/scopegate/decision"
)

// Defaults for Config fields left at zero.
const (
	DefaultMaxEntries  = 100_000
	DefaultTTL         = 30 * time.Second
	DefaultNegativeTTL = 5 * time.Second
)

// Config sizes the cache and says how long answers stay fresh. Ownership
// changes rarely but must not lag forever: TTL bounds how long a transfer of
// a resource takes to be seen; NegativeTTL is shorter, because a resource
// created a moment ago is usually used at once.
type Config struct {
	// MaxEntries bounds the number of cached answers. Zero means
	// DefaultMaxEntries.
	MaxEntries int64
	// TTL is how long a found answer is served from the cache. Zero means
	// DefaultTTL; negative disables caching found answers.
	TTL time.Duration
	// NegativeTTL is how long a not-found answer is served from the cache.
	// Zero means DefaultNegativeTTL; negative disables it.
	NegativeTTL time.Duration
	// Lookups overrides TTL and NegativeTTL per lookup name; a zero field
	// there takes the value above.
	Lookups map[string]TTLs
}

// TTLs is the pair of lifetimes for one lookup.
type TTLs struct {
	TTL, NegativeTTL time.Duration
}

// Validate reports the first unusable field, naming it.
func (c Config) Validate() error {
	if c.MaxEntries < 0 {
		return fmt.Errorf("cache: MaxEntries is %d: use a positive number, or 0 for the default %d", c.MaxEntries, DefaultMaxEntries)
	}
	for name := range c.Lookups {
		if name == "" {
			return errors.New("cache: Lookups has an empty lookup name: use the names the policy's owner rules give")
		}
	}
	return nil
}

// Stats are cumulative counters for metrics.
type Stats struct {
	Hits   uint64 // answered from the cache
	Misses uint64 // went to the backend (or joined a call already going)
	// Coalesced counts misses answered by a backend call that served more
	// than one caller (the first caller included).
	Coalesced uint64
	// Errors counts backend calls that failed; errors are never cached.
	Errors uint64
}

// Ownership is a caching decision.OwnershipStore. The owners slices it
// returns are shared between callers and must not be modified.
type Ownership struct {
	inner decision.OwnershipStore
	c     *ristretto.Cache[uint64, *entry]
	seed  maphash.Seed
	ttls  TTLs
	per   map[string]TTLs
	group singleflight.Group
	clock *coarseClock
	once  sync.Once

	hits      paddedCounter
	misses    paddedCounter
	coalesced atomic.Uint64
	errs      atomic.Uint64
}

var _ decision.OwnershipStore = (*Ownership)(nil)

// paddedCounter keeps the hot counters on their own cache lines so that
// cores counting hits do not contend with cores counting misses.
type paddedCounter struct {
	atomic.Uint64
	_ [56]byte
}

// entry is one cached answer. It carries its lookup and key so that a hit is
// verified: the cache is keyed by a 64-bit hash of (lookup, key) to avoid
// building a key string per request, and a hash collision must read as a
// miss, never as someone else's owners.
type entry struct {
	lookup, key string
	owners      []string
	found       bool
	expires     int64 // unix nanoseconds; checked against the coarse clock
}

// NewOwnership wraps inner. Close the result to stop the cache's goroutines.
func NewOwnership(inner decision.OwnershipStore, cfg Config) (*Ownership, error) {
	if inner == nil {
		return nil, errors.New("cache: inner ownership store is nil: pass the store's Ownership()")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	maxEntries := cfg.MaxEntries
	if maxEntries == 0 {
		maxEntries = DefaultMaxEntries
	}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters: 10 * maxEntries, // ristretto's advice: 10x the entries
		MaxCost:     maxEntries,      // every entry costs 1
		BufferItems: 64,
		// Entries cost 1 each; counting ristretto's own overhead too would
		// make MaxCost mean something else than MaxEntries.
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	o := &Ownership{
		inner: inner,
		c:     c,
		seed:  maphash.MakeSeed(),
		clock: startClock(),
		ttls:  resolve(TTLs{cfg.TTL, cfg.NegativeTTL}, TTLs{DefaultTTL, DefaultNegativeTTL}),
	}
	if len(cfg.Lookups) > 0 {
		o.per = make(map[string]TTLs, len(cfg.Lookups))
		for name, t := range cfg.Lookups {
			o.per[name] = resolve(t, o.ttls)
		}
	}
	return o, nil
}

func resolve(t, def TTLs) TTLs {
	if t.TTL == 0 {
		t.TTL = def.TTL
	}
	if t.NegativeTTL == 0 {
		t.NegativeTTL = def.NegativeTTL
	}
	return t
}

// hashKey is what the cache hashes: the pair, not a concatenation, so no
// string is built per request and ("a", "b/c") differs from ("a/b", "c").
type hashKey struct{ lookup, key string }

func (o *Ownership) hash(lookup, key string) uint64 {
	return maphash.Comparable(o.seed, hashKey{lookup, key})
}

// Owners answers from the cache when it can. On a miss, concurrent callers
// for the same (lookup, key) share one backend call; each caller still
// returns as soon as its own ctx is done. The shared call runs until the
// first caller's deadline, but is not cut short when that caller alone is
// cancelled, so one disconnecting client does not fail the others.
func (o *Ownership) Owners(ctx context.Context, lookup, key string) ([]string, bool, error) {
	h := o.hash(lookup, key)
	if owners, found, hit := o.cached(h, lookup, key); hit {
		return owners, found, nil
	}
	o.misses.Add(1)
	return o.load(ctx, h, lookup, key)
}

// CachedOwners answers from the cache only, never blocking and never going
// to the backend; hit is false when the answer is not cached. The engine
// asks it first so that a cached answer costs no deadline context and no
// goroutine (decision.CachedOwnershipStore).
func (o *Ownership) CachedOwners(lookup, key string) (owners []string, found, hit bool) {
	return o.cached(o.hash(lookup, key), lookup, key)
}

func (o *Ownership) cached(h uint64, lookup, key string) ([]string, bool, bool) {
	if e, ok := o.c.Get(h); ok && e.lookup == lookup && e.key == key && o.clock.nanos() < e.expires {
		o.hits.Add(1)
		return e.owners, e.found, true
	}
	return nil, false, false
}

var _ decision.CachedOwnershipStore = (*Ownership)(nil)

func (o *Ownership) load(ctx context.Context, h uint64, lookup, key string) ([]string, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("ownership lookup %q: %w", lookup, err)
	}
	ch := o.group.DoChan(flightKey(lookup, key), func() (any, error) {
		callCtx, cancel := detach(ctx)
		defer cancel()
		owners, found, err := o.inner.Owners(callCtx, lookup, key)
		if err != nil {
			o.errs.Add(1)
			return nil, err
		}
		e := &entry{lookup: lookup, key: key, owners: owners, found: found}
		o.put(h, e)
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Shared {
			o.coalesced.Add(1)
		}
		if r.Err != nil {
			return nil, false, r.Err
		}
		e := r.Val.(*entry)
		return e.owners, e.found, nil
	case <-ctx.Done():
		return nil, false, fmt.Errorf("ownership lookup %q: %w", lookup, ctx.Err())
	}
}

func flightKey(lookup, key string) string { return lookup + "\x00" + key }

// detach keeps ctx's values and deadline but not its cancellation.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(base, dl)
	}
	return context.WithCancel(base)
}

func (o *Ownership) put(h uint64, e *entry) {
	t := o.ttls
	if o.per != nil {
		if pt, ok := o.per[e.lookup]; ok {
			t = pt
		}
	}
	ttl := t.TTL
	if !e.found {
		ttl = t.NegativeTTL
	}
	if ttl > 0 {
		// No ristretto TTL: see coarseClock. An expired entry is a miss and
		// is overwritten by the next answer or evicted like any other.
		e.expires = time.Now().Add(ttl).UnixNano()
		o.c.Set(h, e, 1)
	}
}

// Invalidate drops the cached answer for (lookup, key), so a write through
// this process is seen at once. A backend call already running when it is
// called may still cache the old answer, for at most one TTL.
func (o *Ownership) Invalidate(lookup, key string) {
	o.c.Del(o.hash(lookup, key))
	o.group.Forget(flightKey(lookup, key))
}

// Clear drops every cached answer, e.g. after a bulk import.
func (o *Ownership) Clear() { o.c.Clear() }

// Wait blocks until pending cache writes are applied. Writes are
// asynchronous in the underlying cache; tests call Wait before asserting a
// hit.
func (o *Ownership) Wait() { o.c.Wait() }

// Stats returns the counters.
func (o *Ownership) Stats() Stats {
	return Stats{
		Hits:      o.hits.Load(),
		Misses:    o.misses.Load(),
		Coalesced: o.coalesced.Load(),
		Errors:    o.errs.Load(),
	}
}

// Close stops the cache's goroutines. It does not close the inner store.
// Calling it again is a no-op.
func (o *Ownership) Close() {
	o.once.Do(func() {
		o.c.Close()
		o.clock.close()
	})
}
