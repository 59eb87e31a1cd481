package decision

import (
	"encoding/json"
	"errors"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
)

// The verified-token cache is bounded in bytes. Every entry is charged what
// it keeps alive on the heap: ristretto's bookkeeping for the item, the
// entry's structs, the token string and the claims it holds, each rounded
// up to the Go allocator's size class. The figures below were measured
// (TestTokenCacheCostIsHonest, TestTokenCacheFloodStaysInBudget); change
// them only with a new measurement.

// DefaultTokenCacheBytes is the token cache's budget when none is given:
// 64 MiB, about 40,000 cached tokens of 1 KiB, well inside a 512 MiB
// container with the rest of the process.
const DefaultTokenCacheBytes int64 = 64 << 20

// minTokenCacheBytes is the smallest budget accepted: a few hundred tokens.
const minTokenCacheBytes int64 = 1 << 20

// itemOverhead is what ristretto keeps per item besides our value: its
// store slot (key hash, conflict hash, value, expiration) in a sharded map,
// the cost in its eviction policy's map, the key in its expiration bucket.
// Measured at 117 to 185 bytes per item depending on how full the maps
// are (Go maps grow by doubling); the top of that range is charged.
const itemOverhead = 192

// lazyTokenBytes is charged up front for what a cached token gains on its
// first decisions: its scope bitset view (one per policy in force), drift
// memo and revocation memo.
var lazyTokenBytes = allocSize(int64(unsafe.Sizeof(scopeView{}))) + allocSize(int64(unsafe.Sizeof(driftMemo{}))) + allocSize(int64(unsafe.Sizeof(revocationMemo{})))

// cacheValue is what the cache holds under a token: a verified token, or
// a remembered failure.
type cacheValue struct {
	vt  *verifiedToken
	neg *negativeEntry
}

// negativeEntry remembers that a token failed after its signature was
// checked (or its key looked up), for negativeTTL. It never holds the
// token: it is matched by a second keyed hash of it, so with the key hash
// 128 bits tell two tokens apart, and a collision could only repeat a
// deny.
type negativeEntry struct {
	digest      uint64
	gen         uint64
	until       int64 // Unix nanoseconds
	fingerprint uint64
	epoch       uint64
	issuer      string // the policy's own issuer name
	detail      string
	code        Code
	// cost is what the cache charges for the entry.
	cost int64
}

// failureMemoSize is the number of recent failures' digests remembered
// outside the cache (8 bytes each).
const failureMemoSize = 4096

// failureMemo admits a failure to the cache only when the same token
// failed before, recently: a client retrying a bad token is answered from
// the cache from its third try, while a flood of distinct bad tokens, each
// sent once, never enters it, so it neither evicts verified tokens nor
// wastes the budget on entries that are never hit. A slot holds the last
// digest that hashed to it; lock-free, a lost race costs one verification.
type failureMemo [failureMemoSize]atomic.Uint64

// seenBefore reports whether digest failed recently, and records it.
func (m *failureMemo) seenBefore(digest uint64) bool {
	slot := &m[digest%failureMemoSize]
	if slot.Load() == digest {
		return true
	}
	slot.Store(digest)
	return false
}

// tokenCacheConfig configures a tokenCache.
type tokenCacheConfig struct {
	// MaxBytes bounds the heap the cache's entries hold (default
	// DefaultTokenCacheBytes).
	MaxBytes int64
	// MaxEntries, when positive, also bounds the number of entries: each
	// is then charged at least MaxBytes/MaxEntries.
	MaxEntries int64
}

// tokenCache is the verified-token cache: ristretto under a byte budget.
type tokenCache struct {
	c        *ristretto.Cache[string, cacheValue]
	maxBytes int64
	minCost  int64
	// negativeTTL is how long a failure is remembered (the negativeTTL
	// constant; a test of the cache's accounting may lengthen it).
	negativeTTL time.Duration
	// evictions counts entries evicted to make room; expirations those
	// dropped at their TTL; rejections new entries the admission policy
	// refused (all since start).
	evictions, expirations, rejections atomic.Uint64
	failures                           failureMemo
	pending                            pendingSets
	// inflight is the bytes of the entries handed to ristretto and not
	// yet admitted or refused: ristretto queues up to 32,768 of them for
	// its admission goroutine, which falls behind when the cores are busy
	// with cold verifications (its buffer then held 48 MiB of tokens
	// beyond a 64 MiB budget). New entries are dropped, as ristretto drops
	// them when its buffer is full, while inflight is over maxInflight.
	inflight    atomic.Int64
	maxInflight int64
}

// minInflightBytes is the smallest bound on the entries waiting for
// admission; the bound is otherwise a thirty-second of the budget (2 MiB
// of the default 64 MiB, over a thousand typical tokens: far more than
// ristretto holds while it keeps up).
const minInflightBytes = 1 << 20

// pendingBatch is how many new entries the cache gathers before handing
// them to ristretto together. Ristretto admits an entry on its own
// goroutine: each Set is a channel send that wakes that goroutine, about 2
// µs of a 30 µs cold decision when the sends come one by one. Handed over
// in a batch, the goroutine is woken once and finds the rest waiting.
const pendingBatch = 16

// pendingEntry is a new entry not yet handed to ristretto.
type pendingEntry struct {
	key string
	v   cacheValue
	// ttl is counted from the hand-over: an entry's TTL only frees its
	// room, since a hit checks the token's times itself.
	ttl time.Duration
}

// pendingSets are the new entries gathered for the next batch. A lookup
// that misses ristretto looks here too, and a pending entry found is
// handed over at once with the rest of the batch, since it is in use: an
// entry waits only while nobody asks for it.
type pendingSets struct {
	mu sync.Mutex
	n  int
	e  [pendingBatch]pendingEntry
}

// add gathers an entry; when the batch is full it returns it, to be handed
// over outside the lock.
func (p *pendingSets) add(e pendingEntry, out *[pendingBatch]pendingEntry) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.n {
		if p.e[i].key == e.key {
			p.e[i] = e // the newer verification of the same token
			return 0
		}
	}
	p.e[p.n] = e
	p.n++
	if p.n < pendingBatch {
		return 0
	}
	return p.take(out)
}

// find returns the pending entry of key, and the whole batch to hand over.
func (p *pendingSets) find(key string, out *[pendingBatch]pendingEntry) (cacheValue, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.n {
		if p.e[i].key == key {
			v := p.e[i].v
			return v, p.take(out)
		}
	}
	return cacheValue{}, 0
}

// take moves the batch to out and empties it; the caller holds mu.
func (p *pendingSets) take(out *[pendingBatch]pendingEntry) int {
	n := p.n
	copy(out[:n], p.e[:n])
	clear(p.e[:n])
	p.n = 0
	return n
}

// drain empties the batch into out.
func (p *pendingSets) drain(out *[pendingBatch]pendingEntry) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.take(out)
}

// Per-process keys of the two token hashes: nobody outside can craft
// tokens that collide.
var (
	tokenSeed  = maphash.MakeSeed()
	digestSeed = maphash.MakeSeed()
)

// tokenKeyHash hashes a token for the cache once, with the runtime's AES
// hash. Ristretto's default hashes a string key twice (memhash for the
// slot, xxhash to tell colliding keys apart): over an 850-byte token that
// second pass costs about 100 ns on every lookup. It is not needed here: a
// verified token is compared against the whole token, and a remembered
// failure against tokenDigest, which only a failure's lookup computes.
func tokenKeyHash(raw string) (uint64, uint64) { return maphash.String(tokenSeed, raw), 0 }

// tokenDigest is the second, independent keyed hash of a token that a
// negativeEntry is matched by.
func tokenDigest(raw string) uint64 { return maphash.String(digestSeed, raw) }

func newTokenCache(cfg tokenCacheConfig) (*tokenCache, error) {
	maxBytes := cfg.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultTokenCacheBytes
	}
	if maxBytes < minTokenCacheBytes {
		return nil, errors.New("token cache: a budget of " + formatBytes(maxBytes) + " is too small: give at least " + formatBytes(minTokenCacheBytes))
	}
	tc := &tokenCache{maxBytes: maxBytes, maxInflight: max(maxBytes/32, minInflightBytes), negativeTTL: negativeTTL}
	// Ristretto wants about ten admission counters per entry it will hold;
	// a typical cached token costs 1 KiB or more.
	items := maxBytes / 1024
	if cfg.MaxEntries > 0 {
		tc.minCost = maxBytes / cfg.MaxEntries
		if tc.minCost > math.MaxInt32 {
			// A verified token's cost is an int32 (it keeps the entry small).
			return nil, errors.New("token cache: " + strconv.FormatInt(cfg.MaxEntries, 10) + " entries in a budget of " + formatBytes(maxBytes) + " would charge each entry over 2 GiB: allow more entries or give a smaller budget")
		}
		items = min(items, cfg.MaxEntries)
	}
	c, err := ristretto.NewCache(&ristretto.Config[string, cacheValue]{
		NumCounters:        max(items, 1024) * 10,
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // itemOverhead counts it, measured
		// New entries are set with a cost of 0: ristretto then asks for
		// it when its goroutine takes the entry up (and only then), which
		// tells inflight the entry has left the queue.
		Cost: func(v cacheValue) int64 {
			c := v.charged()
			tc.inflight.Add(-c)
			return c
		},
		KeyToHash: tokenKeyHash,
		OnEvict: func(it *ristretto.Item[cacheValue]) {
			if it.Expiration.IsZero() {
				tc.evictions.Add(1)
			} else {
				tc.expirations.Add(1)
			}
		},
		OnReject: func(*ristretto.Item[cacheValue]) { tc.rejections.Add(1) },
	})
	if err != nil {
		return nil, errors.New("token cache: " + err.Error())
	}
	tc.c = c
	return tc, nil
}

// get returns the entry cached under raw: in ristretto, else among the
// entries pending admission.
func (tc *tokenCache) get(raw string) (cacheValue, bool) {
	if e, ok := tc.c.Get(raw); ok {
		return e, true
	}
	return tc.getPending(raw)
}

func (tc *tokenCache) getPending(raw string) (cacheValue, bool) {
	var batch [pendingBatch]pendingEntry
	e, n := tc.pending.find(raw, &batch)
	if n == 0 {
		return cacheValue{}, false
	}
	tc.hand(batch[:n])
	return e, true
}

// setPending adds a new entry to the next batch, handing the batch over
// when it is full.
func (tc *tokenCache) setPending(raw string, v cacheValue, ttl time.Duration) {
	var batch [pendingBatch]pendingEntry
	if n := tc.pending.add(pendingEntry{key: raw, v: v, ttl: ttl}, &batch); n > 0 {
		tc.hand(batch[:n])
	}
}

// hand gives a batch to ristretto, or drops it while ristretto is behind
// (inflight).
func (tc *tokenCache) hand(batch []pendingEntry) {
	if tc.inflight.Load() > tc.maxInflight {
		tc.rejections.Add(uint64(len(batch)))
		return
	}
	for i := range batch {
		tc.set(batch[i].key, batch[i].v, batch[i].ttl)
	}
}

// set gives ristretto an entry with a cost of 0, so that it asks for the
// cost when it takes the entry up, and counts it in inflight until then.
// Every entry is given this way: the queue then never holds more than
// inflight allows (a few thousand items, of the 32,768 it has room for),
// so a Set is never dropped uncounted, which would leave inflight high.
func (tc *tokenCache) set(key string, v cacheValue, ttl time.Duration) {
	if tc.c.SetWithTTL(key, v, 0, ttl) {
		tc.inflight.Add(v.charged())
	}
}

// charged is what the cache charges for v.
func (v cacheValue) charged() int64 {
	if v.vt != nil {
		return int64(v.vt.cost.Load())
	}
	return v.neg.cost
}

// flush hands over the pending entries now.
func (tc *tokenCache) flush() {
	var batch [pendingBatch]pendingEntry
	if n := tc.pending.drain(&batch); n > 0 {
		tc.hand(batch[:n])
	}
}

// charge is what an entry of cost bytes is charged: at least minCost when
// an entry bound is set.
func (tc *tokenCache) charge(bytes int64) int64 { return max(bytes, tc.minCost) }

// setVerified caches vt under its token until ttl.
func (tc *tokenCache) setVerified(vt *verifiedToken, pol *Policy, ttl time.Duration) {
	vt.cost.Store(int32(tc.charge(verifiedTokenBytes(vt, pol))))
	tc.setPending(vt.Token.raw, cacheValue{vt: vt}, ttl)
}

// setFailure remembers a failure of raw for negativeTTL, if raw failed
// recently before (failureMemo).
func (tc *tokenCache) setFailure(raw string, e *negativeEntry) {
	if !tc.failures.seenBefore(e.digest) {
		return
	}
	e.cost = tc.charge(itemOverhead + allocSize(int64(unsafe.Sizeof(negativeEntry{}))) + allocSize(int64(len(e.detail))))
	tc.setPending(raw, cacheValue{neg: e}, tc.negativeTTL)
}

// recharge adds the claims map a cached token built since it was cached
// (Token.Claims) to its entry's cost, once.
func (tc *tokenCache) recharge(vt *verifiedToken, c *claimsMemo, nowN int64) {
	if !c.charged.CompareAndSwap(false, true) {
		return
	}
	if ttl := time.Duration(vt.Token.exp.nanos(0) - nowN); ttl > 0 {
		vt.cost.Add(int32(c.bytes))
		tc.set(vt.Token.raw, cacheValue{vt: vt}, ttl)
	}
}

// TokenCacheUsage is the token cache's state, for metrics.
type TokenCacheUsage struct {
	// Bytes is the heap charged to the entries in the cache, MaxBytes the
	// budget.
	Bytes, MaxBytes int64
	// Evictions counts entries evicted to make room for others,
	// Expirations entries dropped at the end of their TTL, Rejections new
	// entries the admission policy kept out (since start).
	Evictions, Expirations, Rejections uint64
}

func (tc *tokenCache) usage() TokenCacheUsage {
	return TokenCacheUsage{
		Bytes:       tc.maxBytes - tc.c.RemainingCost(),
		MaxBytes:    tc.maxBytes,
		Evictions:   tc.evictions.Load(),
		Expirations: tc.expirations.Load(),
		Rejections:  tc.rejections.Load(),
	}
}

// entries counts the live entries by walking the cache: for tests and the
// bench harness, not for every scrape.
func (tc *tokenCache) entries() (n int) {
	tc.c.IterValues(func(cacheValue) bool { n++; return false })
	return n
}

// TokenCacheUsage returns the token cache's bytes in use, budget and
// eviction counts.
func (e *Engine) TokenCacheUsage() TokenCacheUsage { return e.verifier.cache.usage() }

// TokenCacheEntries counts the entries in the token cache. It walks the
// whole cache: call it from tests and benchmarks, not per request.
func (e *Engine) TokenCacheEntries() int { return e.verifier.cache.entries() }

// verifiedTokenBytes is the heap a cached verified token holds.
func verifiedTokenBytes(vt *verifiedToken, pol *Policy) int64 {
	t := &vt.Token
	n := itemOverhead + allocSize(int64(unsafe.Sizeof(verifiedToken{}))) + allocSize(int64(len(t.raw))) + int64(vt.claimBytes)
	words := int64(1)
	if pol != nil {
		words = max(int64(len(pol.scopeNames)+63)/64, 1)
	}
	return n + lazyTokenBytes + allocSize(8*words)
}

func sliceBytes(s []string) int64 {
	if cap(s) == 0 {
		return 0
	}
	return allocSize(int64(cap(s)) * int64(unsafe.Sizeof("")))
}

// mapBytes estimates the heap a decoded claims map holds (jsonAny's
// output): Go's map tables, boxed values, key and string bytes.
func mapBytes(m map[string]any) int64 {
	n := mapTableBytes(len(m), 16+16)
	for k, v := range m {
		n += allocSize(int64(len(k))) + anyBytes(v)
	}
	return n
}

func anyBytes(v any) int64 {
	switch x := v.(type) {
	case string:
		return allocSize(16) + allocSize(int64(len(x)))
	case json.Number:
		return allocSize(16) + allocSize(int64(len(x)))
	case []any:
		n := allocSize(24) + allocSize(int64(len(x))*16)
		for _, e := range x {
			n += anyBytes(e)
		}
		return n
	case map[string]any:
		return allocSize(8) + mapBytes(x)
	}
	return 0 // bool and null are not allocated
}

// mapTableBytes estimates a Go (Swiss table) map of n slots of slot bytes:
// the map header and groups of 8 slots and 8 control bytes, kept at most
// 7/8 full, in tables that double.
func mapTableBytes(n int, slot int64) int64 {
	const header = 48
	groups := int64(1)
	for groups*8*7/8 < int64(n) {
		groups *= 2
	}
	return header + allocSize(groups*(8+8*slot))
}

// sizeClasses are the Go allocator's small object size classes
// (runtime/sizeclasses.go).
var sizeClasses = [...]int64{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// allocSize is the heap an allocation of n bytes takes.
func allocSize(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if n > sizeClasses[len(sizeClasses)-1] {
		return (n + 8191) &^ 8191
	}
	lo, hi := 0, len(sizeClasses)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if sizeClasses[mid] < n {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return sizeClasses[lo]
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
